"""The page of examples/http_server.py served by gevent's StreamServer with
httptools: a greenlet per connection and the parser the pygmp example uses,
every request completed by one read answered by one write (as the example
does), TCP_NODELAY.  The like-for-like gevent peer of the example; pywsgi
(http_gevent.py) is gevent's stock WSGI server."""
import httptools

from _common import PAGE, serve_gevent

OK = (b"HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\n"
      b"content-length: %d\r\nserver: gevent\r\n\r\n" % len(PAGE)) + PAGE
NOT_FOUND = (b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\n"
             b"content-length: 10\r\n\r\nnot found\n")
BAD = (b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\n"
       b"content-length: 12\r\nconnection: close\r\n\r\nbad request\n")


class Requests:
    __slots__ = ("parser", "url", "done")

    def __init__(self):
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.done = []

    def on_message_begin(self):
        self.url = b""

    def on_url(self, part):
        self.url += part

    def on_message_complete(self):
        self.done.append((self.url, self.parser.should_keep_alive()))


def new_session():
    """One connection's state: ``process(data)`` -> (bytes to write, close?)."""
    reqs = Requests()

    def process(data):
        try:
            reqs.parser.feed_data(data)
        except httptools.HttpParserError:
            return BAD, True
        out = []
        keep = True
        for url, keep in reqs.done:
            out.append(OK if url.split(b"?", 1)[0] == b"/" else NOT_FOUND)
            if not keep:
                break
        reqs.done.clear()
        return b"".join(out), not keep
    return process


if __name__ == "__main__":
    serve_gevent(__doc__, new_session)

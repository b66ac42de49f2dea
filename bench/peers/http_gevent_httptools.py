"""The page of examples/http_server.py served by gevent's StreamServer with
httptools: a greenlet per connection and the parser the pygmp example uses,
every request completed by one read answered by one write (as the example
does), TCP_NODELAY.  The like-for-like gevent peer of the example; pywsgi
(http_gevent.py) is gevent's stock WSGI server."""
import socket

import httptools
from gevent.server import StreamServer

from _common import PAGE, announce, parse_args

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


def handle(sock, address):
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reqs = Requests()
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return
            try:
                reqs.parser.feed_data(data)
            except httptools.HttpParserError:
                sock.sendall(BAD)
                return
            if not reqs.done:
                continue
            out = []
            keep = True
            for url, keep in reqs.done:
                out.append(OK if url.split(b"?", 1)[0] == b"/" else NOT_FOUND)
                if not keep:
                    break
            reqs.done.clear()
            sock.sendall(b"".join(out))
            if not keep:
                return
    except OSError:
        pass
    finally:
        sock.close()


def main():
    args = parse_args(__doc__)
    srv = StreamServer((args.host, args.port), handle, backlog=4096)
    srv.start()
    announce(srv.address)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        srv.stop(timeout=0)


if __name__ == "__main__":
    main()

"""The page of examples/http_server.py served by uvloop + httptools
(an asyncio Protocol per connection, keep-alive, pipelined requests answered
in order)."""
import asyncio

import httptools
import uvloop

from _common import PAGE, announce, parse_args

OK = (b"HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\n"
      b"content-length: %d\r\nserver: uvloop\r\n\r\n" % len(PAGE)) + PAGE
NOT_FOUND = (b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\n"
             b"content-length: 10\r\n\r\nnot found\n")


class HttpProto(asyncio.Protocol):
    def connection_made(self, transport):
        self.t = transport
        self.parser = httptools.HttpRequestParser(self)
        self.url = None
        self.out = []

    def on_url(self, url):
        self.url = url

    def on_message_complete(self):
        resp = OK if self.url == b"/" else NOT_FOUND
        if not self.parser.should_keep_alive():
            self.out.append(resp)
            self.close_after = True
        else:
            self.out.append(resp)

    def data_received(self, data):
        self.close_after = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.t.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n"
                         b"connection: close\r\n\r\n")
            self.t.close()
            return
        if self.out:
            self.t.write(b"".join(self.out))
            self.out.clear()
        if self.close_after:
            self.t.close()

    def connection_lost(self, exc):
        pass


async def serve(args):
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(HttpProto, args.host, args.port, backlog=4096)
    announce(srv.sockets[0].getsockname())
    async with srv:
        await srv.serve_forever()


def main():
    args = parse_args(__doc__)
    uvloop.install()
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

"""The page of examples/http_server.py served by gevent's pywsgi (keep-alive)."""
import socket

from gevent.pywsgi import WSGIServer

from _common import PAGE, announce, parse_args

HEADERS = [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(PAGE)))]


def app(environ, start_response):
    if environ["PATH_INFO"] != "/":
        start_response("404 Not Found", [("Content-Type", "text/plain"),
                                         ("Content-Length", "10")])
        return [b"not found\n"]
    start_response("200 OK", HEADERS)
    return [PAGE]


class Server(WSGIServer):
    def handle(self, sock, address):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # as Go, asyncio, uvloop
        super().handle(sock, address)


def main():
    args = parse_args(__doc__)
    srv = Server((args.host, args.port), app, log=None, backlog=4096)
    srv.start()
    announce(srv.address)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        srv.stop(timeout=0)


if __name__ == "__main__":
    main()

"""Echo server on gevent's StreamServer (a greenlet per connection)."""
import socket

from gevent.server import StreamServer

from _common import announce, parse_args


def handle(sock, addr):
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # as Go, asyncio, uvloop
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return
            sock.sendall(data)
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

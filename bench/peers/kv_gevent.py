"""examples/kv_server.py's store and command set (examples/kv_store.py) on
gevent's StreamServer: a greenlet per connection."""
import socket

from gevent.server import StreamServer

from _common import NoLock, announce, kv_store, parse_args

kv = kv_store()
STORE = kv.Store(NoLock())


def handle(sock, addr):
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # as Go, asyncio, uvloop
    sess = kv.Session(STORE)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return
            out, close = sess.process(data)
            if out:
                sock.sendall(out)
            if close:
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

"""bench/peers/wsgi_app.py served by gevent's pywsgi (monkey-patched, so
redis-py cooperates; TCP_NODELAY on each connection as pygmp, asyncio and
uvloop set it).  Prints ``listening on HOST:PORT``."""
from gevent import monkey

monkey.patch_all()

import os          # noqa: E402
import socket      # noqa: E402
import sys         # noqa: E402

from gevent.pywsgi import WSGIServer   # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ["WSGI_BENCH_RUNTIME"] = "gevent"
from wsgi_app import app   # noqa: E402


class Server(WSGIServer):
    def handle(self, sock, address):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().handle(sock, address)


def main():
    host, _, port = (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:0").rpartition(":")
    srv = Server((host or "127.0.0.1", int(port)), app, log=None, backlog=1024)
    srv.start()
    print("listening on %s:%d" % srv.address[:2], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        srv.stop(timeout=0)


if __name__ == "__main__":
    main()

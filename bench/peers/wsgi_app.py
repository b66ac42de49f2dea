"""The Flask application bench/wsgi.py serves, with one wait primitive per
runtime (``WSGI_BENCH_RUNTIME``: ``pygmp``, ``gevent`` or ``threads``):

    /        Flask hello world
    /sleep   a 5 ms wait: pygmp.time.sleep, gevent.sleep or time.sleep
    /redis   a redis round trip that takes 5 ms: BLPOP on an empty key with a
             5 ms timeout (blocks this client only, not redis), through redis-py
             (on pygmp: redis-py over a pygmp.net connection, see below)

``WSGI_BENCH_REDIS``: ``host:port`` of the redis-server (no /redis otherwise).
"""
import os

from flask import Flask

RUNTIME = os.environ.get("WSGI_BENCH_RUNTIME", "threads")
REDIS = os.environ.get("WSGI_BENCH_REDIS")
WAIT = 0.005
KEY = "pygmp-bench-empty-list"

if RUNTIME == "pygmp":
    from pygmp.time import sleep
elif RUNTIME == "gevent":
    from gevent import sleep
else:
    from time import sleep

app = Flask(__name__)


@app.route("/")
def hello():
    return "Hello, World!"


@app.route("/sleep")
def wait():
    sleep(WAIT)
    return "slept"


MAX_CONNS = 10_000


def _redis_client():
    import redis
    host, _, port = REDIS.rpartition(":")
    # redis-py 6+ caps a pool at 100 connections by default: fewer than the
    # requests in flight here (wrk's plus its warm-up's), so lift the cap
    # for every runtime alike
    if RUNTIME != "pygmp":
        return redis.Redis(host=host, port=int(port), max_connections=MAX_CONNS)
    # redis-py on a goroutine-aware socket: pygmp.net.Conn has the socket
    # methods redis-py calls (recv_into, sendall, ...); until pygmp.monkey
    # exists this small transport stands in for the patched socket module.
    from pygmp import net

    class _Sock:
        # settimeout(0) is redis-py asking "is there data already?" when it
        # takes a connection from its pool; in request/response use there
        # never is, so that answer is "would block" without a syscall.
        def __init__(self, conn):
            self.c = conn
            self.nb = False

        def settimeout(self, t):
            self.nb = t == 0

        def setsockopt(self, *a):
            pass

        def fileno(self):           # hiredis' parser polls it with timeout 0
            return self.c.fileno()

        def recv(self, n, *flags):
            if self.nb:
                raise BlockingIOError()
            return self.c.recv(n)

        def recv_into(self, buf, n=0, *flags):
            if self.nb:
                raise BlockingIOError()
            return self.c.recv_into(buf, n)

        def sendall(self, data, *flags):
            self.c.sendall(data)

        def shutdown(self, how):
            pass

        def close(self):
            self.c.close()

    class Connection(redis.Connection):
        def _connect(self):
            return _Sock(net.dial("tcp", "%s:%d" % (self.host, self.port)))

    pool = redis.ConnectionPool(connection_class=Connection, host=host, port=int(port),
                                max_connections=MAX_CONNS)
    return redis.Redis(connection_pool=pool)


if REDIS:
    _r = _redis_client()

    @app.route("/redis")
    def redis_wait():
        _r.blpop(KEY, timeout=WAIT)
        return "waited on redis"

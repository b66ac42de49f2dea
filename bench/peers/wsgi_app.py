"""The Flask application bench/wsgi.py serves, with one wait primitive per
runtime (``WSGI_BENCH_RUNTIME``: ``pygmp``, ``gevent`` or ``threads``):

    /        Flask hello world
    /sleep   a 5 ms wait: pygmp.time.sleep, gevent.sleep or time.sleep
    /redis   a redis round trip that takes 5 ms: BLPOP on an empty key with a
             5 ms timeout (blocks this client only, not redis), through redis-py
             (on pygmp and gevent: the standard library patched first)

``WSGI_BENCH_REDIS``: ``host:port`` of the redis-server (no /redis otherwise).
"""
import os

if os.environ.get("WSGI_BENCH_RUNTIME") == "pygmp":
    import pygmp.monkey             # before Flask and redis-py, as gevent's peers patch
    pygmp.monkey.patch_all()

from flask import Flask  # noqa: E402

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
    # pygmp: the standard library was patched above (pygmp.monkey), so
    # redis-py's sockets park goroutines, as gevent's patched ones do
    return redis.Redis(host=host, port=int(port), max_connections=MAX_CONNS)


if REDIS:
    _r = _redis_client()

    @app.route("/redis")
    def redis_wait():
        _r.blpop(KEY, timeout=WAIT)
        return "waited on redis"

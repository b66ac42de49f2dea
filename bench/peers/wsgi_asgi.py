"""The ASGI equivalent of bench/peers/wsgi_app.py for uvicorn (a bare ASGI
app: uvicorn has no WSGI path that is not a thread-pool adapter):
``/`` hello world, ``/sleep`` asyncio.sleep(0.005), ``/redis`` BLPOP with a
5 ms timeout through redis.asyncio (``WSGI_BENCH_REDIS``: ``host:port``)."""
import asyncio
import os

REDIS = os.environ.get("WSGI_BENCH_REDIS")
_r = None


def _headers(body):
    return [(b"content-type", b"text/html; charset=utf-8"),
            (b"content-length", str(len(body)).encode())]


async def app(scope, receive, send):
    global _r
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if path == "/":
        body = b"Hello, World!"
    elif path == "/sleep":
        await asyncio.sleep(0.005)
        body = b"slept"
    elif path == "/redis" and REDIS:
        if _r is None:
            import redis.asyncio
            host, _, port = REDIS.rpartition(":")
            _r = redis.asyncio.Redis(host=host, port=int(port), max_connections=10_000)
        await _r.blpop("pygmp-bench-empty-list", timeout=0.005)
        body = b"waited on redis"
    else:
        await send({"type": "http.response.start", "status": 404, "headers": _headers(b"")})
        await send({"type": "http.response.body", "body": b""})
        return
    await send({"type": "http.response.start", "status": 200, "headers": _headers(body)})
    await send({"type": "http.response.body", "body": body})

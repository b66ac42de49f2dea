"""Real libraries from PyPI under pygmp.monkey: requests, urllib3 and redis-py
used from 200 goroutines at once, with the process's OS thread count sampled
throughout (it stays at GOMAXPROCS plus a few: no goroutine holds a thread
while it waits on the network)."""
import shutil
import socket
import subprocess
import sys
import time

import pytest

from _helpers import _env, free_port
from _monkey_helpers import run_patched

pytestmark = pytest.mark.timeout(180)

GOMAXPROCS = 2
# main, the workers, sysmon, the sampler, and a helper or two (a handoff
# thread for a name lookup, the signal relay)
MAX_THREADS = GOMAXPROCS + 5

HTTP_SERVER = r'''
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = ("hello " + self.path).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer.request_queue_size = 1024
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
s.daemon_threads = True
print(s.server_address[1], flush=True)
s.serve_forever()
'''


@pytest.fixture
def http_server():
    p = subprocess.Popen([sys.executable, "-c", HTTP_SERVER], stdout=subprocess.PIPE,
                         text=True, env=_env())
    try:
        port = int(p.stdout.readline())
        yield port
    finally:
        p.kill()
        p.wait(10)


@pytest.fixture
def redis_server():
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server binary not found (install Debian's redis-server)")
    port = free_port()
    p = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--maxclients", "2000"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or p.poll() is not None:
                    pytest.fail("redis-server did not start on port %d" % port)
                time.sleep(0.05)
        yield port
    finally:
        p.terminate()
        p.wait(10)


def test_requests_from_200_goroutines(http_server):
    pytest.importorskip("requests")
    r, out = run_patched('''
        import requests
        PORT = %d
        N = 200
        done = chan(N)
        def get(i):
            try:
                with requests.Session() as s:
                    resp = s.get("http://127.0.0.1:%%d/item/%%d" %% (PORT, i), timeout=30)
                    ok = resp.status_code == 200 and resp.text == "hello /item/%%d" %% i
            except Exception as e:
                ok = repr(e)
            done.send(ok)
        sampler = ThreadSampler()
        t = time.monotonic()
        for i in range(N):
            go(get, i)
        res = [done.recv() for _ in range(N)]
        emit(ok=res.count(True), errs=[x for x in res if x is not True][:3],
             secs=time.monotonic() - t, max_threads=sampler.done())
    ''' % http_server, gomaxprocs=GOMAXPROCS, timeout=150)
    assert out["ok"] == 200, out
    assert out["max_threads"] <= MAX_THREADS, out


def test_urllib3_poolmanager_200_goroutines(http_server):
    pytest.importorskip("urllib3")
    r, out = run_patched('''
        import urllib3
        PORT = %d
        N = 200
        pm = urllib3.PoolManager(maxsize=50, block=False)
        done = chan(N)
        def get(i):
            try:
                resp = pm.request("GET", "http://127.0.0.1:%%d/u/%%d" %% (PORT, i),
                                  timeout=urllib3.Timeout(connect=30, read=30), retries=False)
                ok = resp.status == 200 and resp.data == b"hello /u/%%d" %% i
            except Exception as e:
                ok = repr(e)
            done.send(ok)
        sampler = ThreadSampler()
        for i in range(N):
            go(get, i)
        res = [done.recv() for _ in range(N)]
        # the pooled connections are reused by a second wave
        for i in range(N):
            go(get, i)
        res += [done.recv() for _ in range(N)]
        emit(ok=res.count(True), errs=[x for x in res if x is not True][:3],
             max_threads=sampler.done())
    ''' % http_server, gomaxprocs=GOMAXPROCS, timeout=150)
    assert out["ok"] == 400, out
    assert out["max_threads"] <= MAX_THREADS, out


def test_redis_from_200_goroutines(redis_server):
    pytest.importorskip("redis")
    r, out = run_patched('''
        import redis
        PORT = %d
        N = 200
        client = redis.Redis(host="127.0.0.1", port=PORT, socket_timeout=30,
                             max_connections=N)
        done = chan(N)
        def work(i):
            try:
                for j in range(5):
                    client.set("k%%d" %% i, "v%%d-%%d" %% (i, j))
                    v = client.get("k%%d" %% i)
                    assert v == b"v%%d-%%d" %% (i, j), v
                ok = client.incr("counter") > 0
            except Exception as e:
                ok = repr(e)
            done.send(ok)
        sampler = ThreadSampler()
        for i in range(N):
            go(work, i)
        res = [done.recv() for _ in range(N)]
        # blocking commands park too: BLPOP in goroutines, then pushes
        popped = chan(10)
        def bl(i):
            c = redis.Redis(host="127.0.0.1", port=PORT, socket_timeout=30)
            popped.send(c.blpop("q%%d" %% i, timeout=20))
        for i in range(10):
            go(bl, i)
        def pusher():                 # a goroutine: it runs only if the BLPOPs left the workers
            time.sleep(0.2)
            for i in range(10):
                client.rpush("q%%d" %% i, "x")
        go(pusher)
        got = sorted(popped.recv()[0].decode() for _ in range(10))
        emit(ok=res.count(True), errs=[x for x in res if x is not True][:3],
             counter=int(client.get("counter")), got=got, max_threads=sampler.done())
    ''' % redis_server, gomaxprocs=GOMAXPROCS, timeout=150)
    assert out["ok"] == 200, out
    assert out["counter"] == 200
    assert out["got"] == sorted("q%d" % i for i in range(10))
    assert out["max_threads"] <= MAX_THREADS, out

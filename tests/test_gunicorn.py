"""``gunicorn -k pygmp.gunicorn.Worker``: real gunicorn in a subprocess, and
gunicorn's worker contract: heartbeat and ``--timeout``, ``--graceful-timeout``,
``--worker-connections``, ``--max-requests``, SIGHUP reload, SIGTERM graceful
stop with requests in flight finished, several workers with ``--reuse-port``.

Every wait is bounded; each test starts its own gunicorn on a free port.
"""
import json
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from _helpers import _env, free_port

gunicorn = pytest.importorskip("gunicorn", reason="gunicorn is in the test extra: "
                                                  "pip install '.[test]'")

T = 5.0

APP = '''
import json, os, time
from pygmp import sync
from pygmp import time as gtime

mu = sync.Mutex()
state = {"now": 0, "max": 0}

def app(environ, start_response):
    path = environ["PATH_INFO"]
    q = environ["QUERY_STRING"]
    if path == "/sleep":            # parks the goroutine only
        gtime.sleep(float(q or 1))
    elif path == "/block":          # holds the worker thread (not handed off):
        from pygmp.monkey import get_original   # the worker patched time.sleep
        get_original("time", "sleep")(float(q or 1))
    elif path == "/patched":
        from pygmp.monkey import is_module_patched
        body = json.dumps({"patched": [is_module_patched(m) for m in
                                       ("socket", "threading", "time")]}).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    elif path == "/plain_sleep":    # time.sleep: patched by the worker, parks
        time.sleep(0.5)
    elif path == "/boom":
        raise RuntimeError("gunicorn boom")
    elif path == "/conc":
        with mu:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        gtime.sleep(0.3)
        with mu:
            state["now"] -= 1
    body = json.dumps({"pid": os.getpid(), "path": path, "max": state["max"],
                       "scheme": environ["wsgi.url_scheme"],
                       "multiprocess": environ["wsgi.multiprocess"],
                       "multithread": environ["wsgi.multithread"]}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''


def _gunicorn_flags():
    from gunicorn import config
    names = {s.name for s in config.KNOWN_SETTINGS}
    # gunicorn 25+ opens a control socket under $HOME by default: not for tests
    return ["--no-control-socket"] if "control_socket_disable" in names else []


class Gunicorn:
    def __init__(self, tmp_path, *args, env=None, port=None):
        (tmp_path / "gapp.py").write_text(textwrap.dedent(APP))
        self.port = port or 0
        cmd = [sys.executable, "-m", "gunicorn", "-k", "pygmp.gunicorn.Worker",
               "-b", "127.0.0.1:%d" % self.port, "--chdir", str(tmp_path),
               "--log-level", "info", *_gunicorn_flags(), *args, "gapp:app"]
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, env=_env(env), cwd=str(tmp_path))
        self.lines = []
        self._t = threading.Thread(target=self._drain, daemon=True)
        self._t.start()
        if port:            # --reuse-port: the workers open their sockets, the master none
            self.wait_log(r"Booting worker", 20)
        else:
            m = self.wait_log(r"Listening at: https?://127\.0\.0\.1:(\d+)", 20)
            self.port = int(m.group(1))

    def _drain(self):
        for line in self.p.stdout:
            self.lines.append(line)

    def log(self):
        return "".join(self.lines)

    def wait_log(self, pattern, timeout=T, count=1):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            ms = list(re.finditer(pattern, self.log()))
            if len(ms) >= count:
                return ms[count - 1]
            if self.p.poll() is not None:
                time.sleep(0.1)
                ms = list(re.finditer(pattern, self.log()))
                if len(ms) >= count:
                    return ms[count - 1]
                break
            time.sleep(0.05)
        raise AssertionError("gunicorn log never matched %r:\n%s" % (pattern, self.log()))

    def conn(self):
        return Conn(self.port)

    def get(self, path="/", headers=()):
        c = self.conn()
        try:
            return c.get(path, headers, close=True)
        finally:
            c.close()

    def ready(self, timeout=20):
        """Poll until a worker answers: its JSON."""
        end = time.monotonic() + timeout
        err = None
        while time.monotonic() < end:
            try:
                status, _, body = self.get("/")
                if status == 200:
                    return json.loads(body)
            except OSError as e:
                err = e
            time.sleep(0.1)
        raise AssertionError("no worker answered (%s):\n%s" % (err, self.log()))

    def signal(self, sig):
        self.p.send_signal(sig)

    def wait(self, timeout=15):
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(T)
            raise AssertionError("gunicorn did not exit:\n" + self.log())

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(T)
        self._t.join(T)


@pytest.fixture
def start(tmp_path):
    procs = []

    def run(*args, **kw):
        g = Gunicorn(tmp_path, *args, **kw)
        procs.append(g)
        return g
    yield run
    for g in procs:
        g.stop()


class Conn:
    """A keep-alive HTTP/1.1 connection on a plain socket."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=T)
        self.buf = b""

    def send(self, path, headers=(), close=False):
        h = "".join("%s: %s\r\n" % kv for kv in headers)
        if close:
            h += "Connection: close\r\n"
        self.s.sendall(("GET %s HTTP/1.1\r\nHost: t\r\n%s\r\n" % (path, h)).encode())

    def recv(self, timeout=T):
        """(status, headers dict, body) of the next response."""
        self.s.settimeout(timeout)
        while b"\r\n\r\n" not in self.buf:
            b = self.s.recv(65536)
            if not b:
                raise EOFError("closed before a response")
            self.buf += b
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0"))
        while len(rest) < n:
            b = self.s.recv(65536)
            if not b:
                raise EOFError("closed in a body")
            rest += b
        self.buf = rest[n:]
        return status, headers, rest[:n]

    def get(self, path="/", headers=(), close=False):
        self.send(path, headers, close)
        return self.recv()

    def closed(self, timeout=T):
        self.s.settimeout(timeout)
        try:
            return self.s.recv(65536) == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self):
        self.s.close()


def _pid(resp):
    status, _, body = resp
    assert status == 200, resp
    return json.loads(body)["pid"]


def test_serves_errors_heartbeat_and_graceful_sigterm(start):
    g = start("--timeout", "2", "--keep-alive", "5", "--access-logfile", "-")
    info = g.ready()
    pid = info["pid"]
    assert info["multithread"] is True and info["multiprocess"] is False
    c = g.conn()
    assert _pid(c.get("/a")) == pid
    assert _pid(c.get("/b")) == pid                       # keep-alive
    status, headers, body = g.get("/boom")
    assert status == 500
    assert g.wait_log(r"RuntimeError: gunicorn boom")
    assert "Error handling request /boom" in g.log()
    assert _pid(c.get("/c")) == pid                       # the other connection lives on
    # secure_scheme_headers from a forwarded_allow_ips peer (127.0.0.1)
    _, _, body = c.get("/s", headers=[("X-Forwarded-Proto", "https")])
    assert json.loads(body)["scheme"] == "https"
    assert g.wait_log(r'"GET /a HTTP/1.1" 200')         # the access log
    # idle for longer than --timeout: the heartbeat keeps the worker alive
    time.sleep(2.5)
    assert _pid(c.get("/d")) == pid
    assert "WORKER TIMEOUT" not in g.log()
    # SIGTERM with a request in flight: it finishes, then everything exits 0
    busy = g.conn()
    busy.send("/sleep?1")
    busy2 = g.conn()
    busy2.send("/sleep?1.2")
    time.sleep(0.3)
    g.signal(signal.SIGTERM)
    status, headers, body = busy2.recv()
    assert status == 200 and json.loads(body)["path"] == "/sleep"
    assert headers.get("connection") == "close"
    assert busy.recv()[0] == 200
    assert c.closed()                                     # the idle one was closed
    assert g.wait() == 0
    assert "Worker exiting (pid: %d)" % pid in g.log()


def test_max_requests_restarts_the_worker(start):
    g = start("--max-requests", "3", "--max-requests-jitter", "0")
    first = g.ready()["pid"]                               # request 1
    assert _pid(g.get("/2")) == first
    c = g.conn()
    status, headers, _ = c.get("/3")                       # the last one it serves
    assert status == 200 and headers.get("connection") == "close"
    assert g.wait_log(r"Autorestarting worker after current request")
    end = time.monotonic() + 15
    pids = set()
    while time.monotonic() < end:
        try:
            pids.add(_pid(g.get("/after")))
        except OSError:
            pass
        if pids - {first}:
            break
        time.sleep(0.1)
    assert pids - {first}, "no new worker:\n" + g.log()
    assert g.wait_log(r"Worker exiting \(pid: %d\)" % first)


def test_worker_connections_limits_open_connections(start):
    g = start("--worker-connections", "2", "--keep-alive", "0")
    g.ready()
    out = []

    def one():
        out.append(g.get("/conc"))
    ts = [threading.Thread(target=one) for _ in range(5)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(10)
    assert [r[0] for r in out] == [200] * 5
    assert max(json.loads(r[2])["max"] for r in out) == 2


def test_timeout_kills_a_worker_whose_goroutines_cannot_run(start):
    """GOMAXPROCS=1 and a handler that holds the worker thread in a plain
    time.sleep: no heartbeat, so the master kills it after --timeout and
    boots another."""
    g = start("--timeout", "2", "--graceful-timeout", "1", env={"GOMAXPROCS": "1"})
    pid = g.ready()["pid"]
    c = g.conn()
    c.send("/block?30")
    g.wait_log(r"WORKER TIMEOUT \(pid:%d\)" % pid, timeout=15)
    assert c.closed(timeout=10)
    end = time.monotonic() + 20
    new = None
    while time.monotonic() < end:
        try:
            new = _pid(g.get("/"))
            if new != pid:
                break
        except OSError:
            pass
        time.sleep(0.1)
    assert new is not None and new != pid, g.log()


def test_sighup_reload_finishes_requests_in_flight(start):
    g = start("--graceful-timeout", "10")
    old = g.ready()["pid"]
    busy = g.conn()
    busy.send("/sleep?1.0")
    time.sleep(0.3)
    g.signal(signal.SIGHUP)
    status, headers, body = busy.recv()
    assert status == 200 and json.loads(body)["pid"] == old
    assert g.wait_log(r"Worker exiting \(pid: %d\)" % old, timeout=10)
    end = time.monotonic() + 15
    new = old
    while new == old and time.monotonic() < end:
        try:
            new = _pid(g.get("/"))
        except OSError:
            time.sleep(0.1)
    assert new != old
    assert g.p.poll() is None


def test_graceful_timeout_cuts_long_requests(start):
    g = start("--graceful-timeout", "1")
    g.ready()
    c = g.conn()
    c.send("/sleep?30")
    time.sleep(0.3)
    t0 = time.monotonic()
    g.signal(signal.SIGTERM)
    assert c.closed(timeout=10)
    assert g.wait(15) == 0
    assert time.monotonic() - t0 < 6


def test_several_workers_reuse_port(start):
    g = start("-w", "2", "--reuse-port", port=free_port())
    g.wait_log(r"Booting worker with pid", count=2, timeout=20)
    assert g.ready()["multiprocess"] is True
    pids = set()
    end = time.monotonic() + 20
    while len(pids) < 2 and time.monotonic() < end:
        try:
            pids.add(_pid(g.get("/")))
        except OSError:
            time.sleep(0.05)
    assert len(pids) == 2, g.log()
    g.signal(signal.SIGINT)                 # quick stop
    assert g.wait(15) == 0


def test_tls_certfile_serves_https(start, tmp_path):
    import shutil
    import ssl
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (needed to make a test certificate)")
    crt, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", crt], check=True, capture_output=True, timeout=60)
    g = start("--certfile", crt, "--keyfile", key)
    ctx = ssl.create_default_context(cafile=crt)
    results = []

    def client():
        c = g.conn()
        c.s = ctx.wrap_socket(c.s, server_hostname="127.0.0.1")
        try:
            for _ in range(3):              # keep-alive over one TLS session
                status, _, body = c.get("/")
                results.append((status, json.loads(body)["scheme"]))
        finally:
            c.close()
    deadline = time.monotonic() + 20
    while True:                             # the worker may still be booting
        try:
            client()
            break
        except (OSError, EOFError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    ts = [threading.Thread(target=client) for _ in range(10)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(T * 3)
    assert results == [(200, "https")] * 33, results


def test_worker_patches_the_standard_library(start):
    """As -k gevent: blocking-style code in the app parks its goroutine."""
    g = start("--timeout", "5")
    g.ready()
    status, _, body = g.get("/patched")
    assert status == 200 and json.loads(body)["patched"] == [True, True, True]
    # 20 requests that each time.sleep(0.5) finish together: they park
    t0 = time.monotonic()
    out = []

    def one():
        out.append(g.get("/plain_sleep"))
    ts = [threading.Thread(target=one) for _ in range(20)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(T * 3)
    assert [r[0] for r in out] == [200] * 20
    assert time.monotonic() - t0 < 5, time.monotonic() - t0

"""End-to-end tests of examples/: each server runs in a subprocess on
127.0.0.1 with a free port (the ``server`` fixture, conftest.py) and is driven
by real clients over loopback (raw sockets, http.client + h11, redis-py, and
redis-cli / redis-benchmark where installed); then SIGINT or SIGTERM must
stop it cleanly (status 0, no traceback, one line naming the signal).
Every wait is bounded.  Faults (bad input, resets, fd exhaustion, slow
clients) are in test_faults.py."""
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from _helpers import REPO, _env

pytest.importorskip("pygmp.net")
pytestmark = pytest.mark.timeout(120)

EXAMPLES = os.path.join(REPO, "examples")


def recv_exactly(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise AssertionError("EOF after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def in_threads(fn, n, timeout=60):
    errs, ts = [], []

    def body(i):
        try:
            fn(i)
        except BaseException as e:  # noqa: BLE001
            errs.append(e)

    for i in range(n):
        t = threading.Thread(target=body, args=(i,), daemon=True)
        t.start()
        ts.append(t)
    deadline = time.monotonic() + timeout
    for t in ts:
        t.join(max(0.0, deadline - time.monotonic()))
        assert not t.is_alive(), "client thread still running after %s s" % timeout
    if errs:
        raise errs[0]


# -- echo -------------------------------------------------------------------

@pytest.mark.parametrize("procs", [1, 2])
def test_echo_server(server, procs):
    srv = server("echo_server.py", procs)
    with srv.connect() as s:
        for msg in (b"x", b"hello world\n", os.urandom(64)):
            s.sendall(msg)
            assert recv_exactly(s, len(msg)) == msg

    def client(i):
        with srv.connect() as s:
            for j in range(50):
                msg = b"%d:%d:" % (i, j) + b"z" * 57
                s.sendall(msg)
                assert recv_exactly(s, len(msg)) == msg

    in_threads(client, 40)

    # A large payload written by one thread while another reads (the server
    # must keep echoing while the client is not reading yet).
    big = os.urandom(4 << 20)
    with srv.connect(timeout=30) as s:
        got = []
        rd = threading.Thread(target=lambda: got.append(recv_exactly(s, len(big))), daemon=True)
        rd.start()
        s.sendall(big)
        rd.join(60)
        assert got and got[0] == big

    # Half-close: the server sees EOF, finishes echoing and closes.
    with srv.connect() as s:
        s.sendall(b"last words")
        s.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        assert data == b"last words"
    srv.stop()


def test_echo_server_sigint_with_open_connections(server):
    srv = server("echo_server.py", 2)
    socks = [srv.connect() for _ in range(20)]
    for s in socks:
        s.sendall(b"ping")
        assert recv_exactly(s, 4) == b"ping"
    srv.stop()
    for s in socks:
        s.close()


def test_echo_server_client_vanishes(server):
    """Clients that reset mid-stream do not disturb the server."""
    srv = server("echo_server.py", 1)
    for _ in range(20):
        s = srv.connect()
        s.sendall(b"a" * 100_000)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()                       # RST
    with srv.connect() as s:
        s.sendall(b"still here")
        assert recv_exactly(s, 10) == b"still here"
    srv.stop()


# -- http -------------------------------------------------------------------

@pytest.mark.parametrize("procs", [1, 2])
def test_http_server_keepalive_and_stats(server, procs):
    import http.client
    srv = server("http_server.py", procs)
    c = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
    c.request("GET", "/")
    r = c.getresponse()
    body = r.read()
    assert r.status == 200
    assert r.getheader("content-type").startswith("text/html")
    assert b"pygmp" in body
    sock = c.sock
    for _ in range(20):                 # keep-alive: the same connection
        c.request("GET", "/")
        r = c.getresponse()
        assert r.status == 200 and r.read() == body
        assert c.sock is sock
    c.request("GET", "/stats")
    r = c.getresponse()
    assert r.status == 200
    assert r.getheader("content-type") == "application/json"
    st = json.loads(r.read())
    assert c.sock is sock
    assert st["gomaxprocs"] == procs
    assert st["goroutines"] >= 3        # main, the accept loop, this conn
    assert 1 <= st["threads"] <= procs + 8
    c.request("GET", "/nope")
    r = c.getresponse()
    assert r.status == 404
    r.read()
    c.request("HEAD", "/")
    r = c.getresponse()
    assert r.status == 200 and r.read() == b""
    assert int(r.getheader("content-length")) == len(body)
    c.request("POST", "/", body=b"x" * 1000)
    r = c.getresponse()
    assert r.status == 405
    r.read()
    c.request("GET", "/")               # still alive after a request body
    r = c.getresponse()
    assert r.status == 200 and r.read() == body
    c.close()

    # many concurrent keep-alive clients; /stats sees their goroutines
    def client(i):
        cc = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
        for _ in range(10):
            cc.request("GET", "/")
            rr = cc.getresponse()
            assert rr.status == 200 and rr.read() == body
        cc.close()

    in_threads(client, 30)
    srv.stop()


def _h11_read_responses(s, h, n):
    import h11
    out = []
    cur = None
    while len(out) < n:
        ev = h.next_event()
        if ev is h11.NEED_DATA:
            h.receive_data(s.recv(65536))
        elif isinstance(ev, h11.Response):
            cur = [ev, b""]
        elif isinstance(ev, h11.Data):
            cur[1] += ev.data
        elif isinstance(ev, h11.EndOfMessage):
            out.append(cur)
            if len(out) < n:
                h.start_next_cycle()
        elif isinstance(ev, h11.ConnectionClosed):
            break
    return out


def test_http_server_pipelined_h11(server):
    import h11
    srv = server("http_server.py", 2)
    with srv.connect() as s:
        # 10 pipelined requests in one write, the last asks to close
        reqs = []
        for i in range(10):
            hc = h11.Connection(h11.CLIENT)
            hdrs = [("host", "x"), ("x-i", str(i))]
            if i == 9:
                hdrs.append(("connection", "close"))
            path = "/stats" if i == 5 else "/"
            reqs.append(hc.send(h11.Request(method="GET", target=path, headers=hdrs)))
            reqs.append(hc.send(h11.EndOfMessage()))
        s.sendall(b"".join(reqs))
        h = h11.Connection(h11.CLIENT)
        # h11 as a client needs to have "sent" each request to parse the replies
        got = []
        for i in range(10):
            hdrs = [("host", "x")] + ([("connection", "close")] if i == 9 else [])
            h.send(h11.Request(method="GET", target="/", headers=hdrs))
            h.send(h11.EndOfMessage())
            got += _h11_read_responses(s, h, 1)
            if i < 9:
                h.start_next_cycle()
        assert [r.status_code for r, _ in got] == [200] * 10
        assert json.loads(got[5][1])["gomaxprocs"] == 2
        assert s.recv(100) == b""       # closed after Connection: close
    srv.stop()


def test_http_server_bad_request(server):
    srv = server("http_server.py", 1)
    with srv.connect() as s:
        s.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        assert data.startswith(b"HTTP/1.1 400"), data
    with srv.connect() as s:        # HTTP/1.0 without keep-alive: closes
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        assert data.startswith(b"HTTP/1.1 200") and b"pygmp" in data
    srv.stop()


# -- kv (RESP) --------------------------------------------------------------

@pytest.fixture
def redis_mod():
    return pytest.importorskip("redis")


@pytest.mark.parametrize("procs", [1, 2])
def test_kv_server_commands(server, redis_mod, procs):
    srv = server("kv_server.py", procs)
    r = redis_mod.Redis(host=srv.host, port=srv.port, socket_timeout=10, protocol=2)
    assert r.ping() is True
    assert r.echo("hello") == b"hello"
    assert r.get("missing") is None
    assert r.set("a", "1") is True
    assert r.get("a") == b"1"
    assert r.set("a", "2", nx=True) is None
    assert r.set("b", "x", xx=True) is None
    assert r.set("a", "3", xx=True) is True
    assert r.get("a") == b"3"
    assert r.execute_command("INCR", "a") == 4
    assert r.execute_command("INCR", "counter") == 1
    assert r.incr("counter") == 2               # redis-py sends INCRBY
    assert r.incr("counter", 10) == 12
    assert r.decr("counter", 2) == 10
    r.set("max", str(2**63 - 1))
    with pytest.raises(redis_mod.ResponseError, match="overflow"):
        r.execute_command("INCR", "max")
    r.delete("max")
    r.set("s", "abc")
    with pytest.raises(redis_mod.ResponseError, match="not an integer"):
        r.incr("s")
    assert r.exists("a", "s", "nope", "a") == 3
    assert r.mset({"k1": "v1", "k2": "v2", "k3": b"\x00\r\nbin"}) is True
    assert r.mget("k1", "nope", "k3") == [b"v1", None, b"\x00\r\nbin"]
    assert r.dbsize() == 6
    assert r.delete("k1", "k2", "nope") == 2
    assert r.dbsize() == 4
    big = os.urandom(1 << 20)
    r.set("big", big)
    assert r.get("big") == big
    assert r.flushall() is True
    assert r.dbsize() == 0
    with pytest.raises(redis_mod.ResponseError, match="unknown command"):
        r.execute_command("NOSUCHCMD", "x")
    with pytest.raises(redis_mod.ResponseError, match="wrong number of arguments"):
        r.execute_command("GET")
    with pytest.raises(redis_mod.ResponseError, match="syntax error"):
        r.execute_command("SET", "a", "b", "BOGUS")
    with pytest.raises(redis_mod.ResponseError, match="invalid expire"):
        r.execute_command("SET", "a", "b", "EX", "0")
    assert r.ping() is True             # the connection survives errors
    assert "proto" in repr(r.execute_command("HELLO", "2"))
    with pytest.raises(redis_mod.ResponseError, match="NOPROTO"):
        r.execute_command("HELLO", "3")     # RESP2 only
    r.close()
    srv.stop()


def test_kv_server_expiry(server, redis_mod):
    srv = server("kv_server.py", 2)
    r = redis_mod.Redis(host=srv.host, port=srv.port, socket_timeout=10, protocol=2)
    assert r.set("px", "v", px=150)
    assert r.set("ex", "v", ex=1)
    assert r.set("keep", "v")
    assert r.get("px") == b"v"
    assert r.dbsize() == 3
    time.sleep(0.3)
    assert r.get("px") is None
    assert r.exists("px") == 0
    assert r.get("ex") == b"v"
    assert r.dbsize() == 2
    time.sleep(0.9)
    assert r.dbsize() == 1              # expired keys are not counted
    assert r.get("ex") is None
    # SET without EX clears a TTL; INCR keeps it
    r.set("t", "1", px=200)
    r.set("t", "1")
    r.set("n", "1", px=200)
    assert r.execute_command("INCR", "n") == 2
    time.sleep(0.35)
    assert r.get("t") == b"1"
    assert r.get("n") is None
    assert r.delete("n") == 0
    r.close()
    srv.stop()


def test_kv_server_pipelining(server, redis_mod):
    srv = server("kv_server.py", 2)
    r = redis_mod.Redis(host=srv.host, port=srv.port, socket_timeout=20, protocol=2)
    p = r.pipeline(transaction=False)
    for i in range(2000):
        p.set("key:%d" % i, i)
        p.execute_command("INCR", "ctr")
        p.get("key:%d" % i)
    res = p.execute()
    assert res[0::3] == [True] * 2000
    assert res[1::3] == list(range(1, 2001))
    assert res[2::3] == [b"%d" % i for i in range(2000)]
    # raw: many commands in one write, all replies come back, in order
    with srv.connect() as s:
        cmds = b"".join(b"*2\r\n$4\r\nECHO\r\n$%d\r\n%s\r\n" % (len(b"%d" % i), b"%d" % i)
                        for i in range(500))
        s.sendall(cmds + b"*1\r\n$4\r\nPING\r\n")
        want = b"".join(b"$%d\r\n%d\r\n" % (len(b"%d" % i), i) for i in range(500)) + b"+PONG\r\n"
        assert recv_exactly(s, len(want)) == want
        # inline commands (redis-benchmark's PING_INLINE), pipelined too
        s.sendall(b"PING\r\nECHO hi\r\nSET ik iv\r\nGET ik\r\n")
        want = b"+PONG\r\n$2\r\nhi\r\n+OK\r\n$2\r\niv\r\n"
        assert recv_exactly(s, len(want)) == want
        # a command split across writes
        s.sendall(b"*2\r\n$4\r\nEC")
        time.sleep(0.05)
        s.sendall(b"HO\r\n$2\r\nok\r\n")
        assert recv_exactly(s, 8) == b"$2\r\nok\r\n"
    r.close()
    srv.stop()


def test_kv_server_malformed_input(server):
    srv = server("kv_server.py", 1)
    for bad in (b"*1\r\n$4\r\nPING\r\n*x\r\n",     # bad multibulk length
                b"*1\r\n$4\r\nPING\r\n*1\r\n$zz\r\n",   # bad bulk length
                b"*2\r\n:1\r\n:2\r\n"):              # not bulk strings
        with srv.connect() as s:
            s.sendall(bad)
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            assert b"-ERR Protocol error" in data, (bad, data)
            if bad.startswith(b"*1\r\n$4\r\nPING"):
                assert data.startswith(b"+PONG\r\n")
    # the server is still fine
    with srv.connect() as s:
        s.sendall(b"*1\r\n$4\r\nPING\r\n")
        assert recv_exactly(s, 7) == b"+PONG\r\n"
    srv.stop()


def test_kv_server_concurrent_incr(server, redis_mod):
    """The shared dict is guarded across Ps: no lost updates."""
    srv = server("kv_server.py", 2)

    def client(i):
        r = redis_mod.Redis(host=srv.host, port=srv.port, socket_timeout=20, protocol=2)
        for _ in range(200):
            r.execute_command("INCR", "shared")
        p = r.pipeline(transaction=False)
        for _ in range(300):
            p.execute_command("INCR", "shared")
        p.execute()
        r.close()

    in_threads(client, 16)
    r = redis_mod.Redis(host=srv.host, port=srv.port, socket_timeout=10, protocol=2)
    assert int(r.get("shared")) == 16 * 500
    r.close()
    srv.stop()


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli not installed")
def test_kv_server_redis_cli(server):
    srv = server("kv_server.py", 2)
    cli = ["redis-cli", "-h", srv.host, "-p", str(srv.port)]

    def run(*a):
        return subprocess.run(cli + list(a), capture_output=True, text=True, timeout=20)

    assert run("PING").stdout.strip() == "PONG"
    assert run("SET", "k", "v").stdout.strip() == "OK"
    assert run("GET", "k").stdout.strip() == "v"
    assert "unknown command" in run("FOO").stdout
    srv.stop()


@pytest.mark.skipif(shutil.which("redis-benchmark") is None, reason="redis-benchmark not installed")
@pytest.mark.parametrize("pipeline", ["1", "16"])
def test_kv_server_redis_benchmark(server, pipeline):
    srv = server("kv_server.py", 2)
    p = subprocess.run(["redis-benchmark", "-h", srv.host, "-p", str(srv.port), "-q",
                        "-t", "ping,set,get", "-n", "5000", "-c", "20", "-P", pipeline],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    out = p.stdout.replace("\r", "\n")
    for t in ("PING_INLINE", "PING_MBULK", "SET", "GET"):
        assert "%s: " % t in out and "requests per second" in out, out
    srv.stop()


# -- thread_count -----------------------------------------------------------

@pytest.mark.parametrize("procs", [1, 2])
def test_thread_count(procs):
    p = subprocess.run([sys.executable, os.path.join(EXAMPLES, "thread_count.py"),
                        "--gomaxprocs", str(procs), "--seconds", "1", "--interval", "0.25",
                        "--check", "--slack", "3"],
                       capture_output=True, text=True, timeout=90, env=_env(), cwd=REPO)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "goroutines= 10001" in p.stdout
    assert "all done: goroutines=1" in p.stdout


@pytest.mark.stress
@pytest.mark.timeout(300)
def test_thread_count_100k_goroutines():
    """100,000 goroutines, half blocked on a channel, half sleeping in a loop:
    the OS thread count stays at GOMAXPROCS + 2 (slack 1)."""
    p = subprocess.run([sys.executable, os.path.join(EXAMPLES, "thread_count.py"),
                        "--gomaxprocs", "2", "-n", "100000", "--seconds", "10",
                        "--interval", "1", "--check", "--slack", "3"],
                       capture_output=True, text=True, timeout=280, env=_env(), cwd=REPO)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "goroutines=100001" in p.stdout
    assert "all done: goroutines=1" in p.stdout


# -- every server: signals, --help, reason phrases ------------------------------

SERVERS = ["echo_server.py", "http_server.py", "kv_server.py"]


@pytest.mark.parametrize("script", SERVERS)
def test_server_stops_on_sigterm(server, script):
    srv = server(script, 2)
    with srv.connect():             # an idle open connection does not hold it up
        srv.probe()
        srv.stop(signal.SIGTERM)


@pytest.mark.parametrize("script,load", [("echo_server.py", "bench/echo_client.c"),
                                         ("http_server.py", "wrk "),
                                         ("kv_server.py", "redis-benchmark ")])
def test_server_help_says_how_to_run_and_load_it(script, load):
    p = subprocess.run([sys.executable, os.path.join(EXAMPLES, script), "--help"],
                       capture_output=True, text=True, timeout=60, env=_env(), cwd=REPO)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert out.startswith("usage: %s [-h] [--gomaxprocs N]" % script), out
    assert out.split("\n", 1)[0].endswith("[address]"), out
    for word in ("--gomaxprocs", "SIGTERM", "listening on HOST:PORT", load):
        assert word in out, (word, out)


def test_http_server_reason_phrases(server):
    srv = server("http_server.py", 1)
    for request, status in [
            (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"200 OK"),
            (b"HEAD /stats HTTP/1.1\r\nHost: x\r\n\r\n", b"200 OK"),
            (b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", b"404 Not Found"),
            (b"DELETE / HTTP/1.1\r\nHost: x\r\n\r\n", b"405 Method Not Allowed"),
            (b"NOT HTTP AT ALL\r\n\r\n", b"400 Bad Request"),
            (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",
             b"431 Request Header Fields Too Large")]:
        got = srv.exchange(request)
        assert got.startswith(b"HTTP/1.1 " + status + b"\r\n"), (request[:40], got[:100])
        if status.startswith(b"405"):
            assert b"\r\nallow: GET, HEAD\r\n" in got
    srv.stop()


def test_http_server_debug_endpoint(server):
    srv = server("http_server.py", 2, "--debug", "127.0.0.1:0")
    line = srv.lines.get(timeout=30)
    assert line.startswith("debug on 127.0.0.1:"), line
    port = int(line.rsplit(":", 1)[1])
    srv.probe()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.") and b" 200 " in data.split(b"\r\n", 1)[0], data[:200]
    assert b"pygmp_sched_goroutines_goroutines" in data
    srv.stop()


# -- the load generators the README names --------------------------------------

@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed")
def test_http_server_under_wrk(server):
    srv = server("http_server.py", 2)
    p = subprocess.run(["wrk", "-t1", "-c20", "-d1s", "--latency",
                        "http://%s:%d/" % (srv.host, srv.port)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "Requests/sec:" in p.stdout, p.stdout
    assert "Non-2xx" not in p.stdout and "Socket errors" not in p.stdout, p.stdout
    srv.stop()


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_echo_server_under_echo_client(server, tmp_path):
    exe = str(tmp_path / "echo_client")
    subprocess.run(["cc", "-O2", "-o", exe, os.path.join(REPO, "bench", "echo_client.c")],
                   check=True, timeout=120)
    srv = server("echo_server.py", 2)
    p = subprocess.run([exe, "load", srv.host, str(srv.port), "20", "1", "0.2"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert " errors=0" in p.stdout and "requests=" in p.stdout, p.stdout
    assert int(p.stdout.split("requests=")[1].split()[0]) > 0, p.stdout
    srv.stop()

"""The example servers survive their clients.

Each server runs as a subprocess on a free port of 127.0.0.1 (the ``server``
fixture, conftest.py) and gets what real networks send: malformed and fuzzed
input (hypothesis), abrupt resets (SO_LINGER 0), file-descriptor exhaustion
under a lowered RLIMIT_NOFILE, and slow clients beside a normal one.  After
each, the server must still be alive, answer a normal request, log no
traceback, and hold no more file descriptors than before (/proc/PID/fd).
Every blocking step is bounded by a timeout.

Also here: the RESP parser of examples/kv_store.py in-process, against
hypothesis (the same replies however the input is split; no exception but
``-ERR Protocol error`` whatever the bytes), and, marked ``stress``, 10,000
idle connections and a soak of all three servers.
"""
import os
import random
import resource
import socket
import struct
import sys
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _helpers import REPO

pytest.importorskip("pygmp.net")
pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not sys.platform.startswith("linux"),
                       reason="counts the server's fds in /proc"),
]

SERVERS = ["echo_server.py", "http_server.py", "kv_server.py"]
LINGER_RST = struct.pack("ii", 1, 0)        # SO_LINGER on, 0 s: close() sends RST
FUZZ = settings(max_examples=40, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))


def warm(srv):
    """Two normal requests (whatever the runtime sets up lazily is then set
    up); the server's fd count afterwards."""
    srv.probe()
    srv.probe()
    return srv.fds()


def assert_healthy(srv, fds_before):
    """Alive, answers a normal request, no traceback, no fd leaked."""
    assert srv.alive(), "server died (status %s): %s" % (srv.p.returncode, srv.stderr())
    srv.probe()
    srv.wait_fds(fds_before)
    err = srv.stderr()
    assert "Traceback" not in err and "panic" not in err, err


def rst(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
    s.close()


# -- malformed and fuzzed input -----------------------------------------------

def cmd(*args):
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


_binary = st.binary(max_size=300)
_resp_tokens = st.sampled_from([
    b"*", b"$", b"%", b"~", b">", b"#", b"_", b",", b"(", b"!", b"=", b"|", b":", b"+",
    b"-", b"\r\n", b"\r", b"\n", b"0", b"1", b"2", b"-1", b"3", b"4294967295",
    b"1048577", b"536870913", b"PING", b"SET", b"GET", b"QUIT", b"k", b" ", b'"'])
_resp = st.one_of(
    _binary,
    st.lists(_resp_tokens, max_size=40).map(b"".join),
    st.lists(st.lists(_binary, min_size=1, max_size=4).map(lambda a: cmd(*a)),
             min_size=1, max_size=4).map(b"".join),
    st.tuples(st.lists(_binary, min_size=1, max_size=4).map(lambda a: cmd(*a)),
              st.integers(0, 200), st.binary(max_size=20)).map(
                  lambda t: t[0][:t[1]] + t[2] + t[0][t[1]:]),
)
_http_tokens = st.sampled_from([
    b"GET", b"POST", b"HEAD", b"PRI", b" ", b"/", b"*", b"/stats", b"HTTP/1.1",
    b"HTTP/1.0", b"HTTP/2.0", b"\r\n", b"\n", b"Host: x", b"Content-Length: ",
    b"Transfer-Encoding: chunked", b"Connection: close", b"Expect: 100-continue",
    b"0", b"5", b"-1", b"ffffffffffffffffff", b"hello", b":", b"\x00", b"\xff"])
_http = st.one_of(
    _binary,
    st.lists(_http_tokens, max_size=40).map(b"".join),
    st.tuples(st.integers(0, 60), st.binary(max_size=20)).map(
        lambda t: (lambda r: r[:t[0]] + t[1] + r[t[0]:])(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")),
)
STRATEGY = {"echo_server.py": _binary, "http_server.py": _http, "kv_server.py": _resp}


@pytest.mark.parametrize("script", SERVERS)
def test_fuzzed_input_gets_an_answer_or_a_close(server, script):
    """Whatever bytes a client sends, then EOF: the server answers and/or
    closes that connection, and stays up for everyone else."""
    srv = server(script, 2)
    before = warm(srv)

    sent = []

    @FUZZ
    @given(data=STRATEGY[script])
    def one(data):
        srv.exchange(data, timeout=5)
        assert srv.alive(), srv.stderr()
        sent.append(data)

    one()
    assert len(sent) >= 20, "hypothesis ran only %d examples" % len(sent)
    assert_healthy(srv, before)


def _protocol_error(srv, data, message, timeout=10):
    got = srv.exchange(data, timeout)
    assert got.endswith(b"-ERR Protocol error: " + message + b"\r\n"), (data[:60], got[-200:])


def test_kv_server_rejects_what_redis_rejects(server):
    srv = server("kv_server.py", 2)
    before = warm(srv)
    rss0 = srv.rss()
    # a RESP3 map keyed by an array: not a command (it crashed the server once)
    _protocol_error(srv, b"*1\r\n%1\r\n*1\r\n$1\r\na\r\n$1\r\nb\r\n", b"expected '$', got '%'")
    _protocol_error(srv, b"*2\r\n:1\r\n:2\r\n", b"expected '$', got ':'")
    _protocol_error(srv, b"*4294967295\r\n", b"invalid multibulk length")
    _protocol_error(srv, b"*1048577\r\n", b"invalid multibulk length")
    _protocol_error(srv, b"*x\r\n", b"invalid multibulk length")
    _protocol_error(srv, b"*1\r\n$-1\r\n", b"invalid bulk length")
    _protocol_error(srv, b"*1\r\n$536870913\r\n", b"invalid bulk length")
    # a bulk of 2^40 bytes announced and 4 MiB sent: refused at the header, not buffered
    _protocol_error(srv, b"*1\r\n$1099511627776\r\n" + b"x" * (4 << 20), b"invalid bulk length")
    _protocol_error(srv, b"*1\r\n$3\r\nabcd\r\n", b"expected CRLF after a bulk string")
    _protocol_error(srv, b"PING" + b" " * (70 << 10), b"too big inline request")
    _protocol_error(srv, b"*1\r\n$" + b"1" * (70 << 10), b"too big bulk count string")
    # replies to the complete commands before the bad one come first
    got = srv.exchange(cmd(b"PING") + cmd(b"ECHO", b"hi") + b"*1\r\n$zz\r\n")
    assert got == b"+PONG\r\n$2\r\nhi\r\n-ERR Protocol error: invalid bulk length\r\n", got
    assert srv.rss() - rss0 < (32 << 20), "the server buffered a refused bulk"
    assert_healthy(srv, before)


def test_kv_server_long_header_line_does_not_stall_others(server):
    """``*`` and then megabytes with no CRLF: refused after 64 KiB (Redis's
    limit) with no rescan of the buffer, while another client keeps getting
    prompt answers."""
    srv = server("kv_server.py", 1)
    before = warm(srv)
    lat, stop = [], threading.Event()

    def pinger():
        with srv.connect() as s:
            while not stop.is_set():
                t = time.monotonic()
                s.sendall(cmd(b"PING"))
                got = b""
                while len(got) < 7:
                    chunk = s.recv(7 - len(got))
                    assert chunk, "EOF"
                    got += chunk
                assert got == b"+PONG\r\n"
                lat.append(time.monotonic() - t)
                time.sleep(0.01)

    t = threading.Thread(target=pinger, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 20          # the pinger is connected and answered
        while not lat and t.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert lat, "the pinger got no answer before the long line"
        n0 = len(lat)
        _protocol_error(srv, b"*" + b"1" * (8 << 20), b"too big mbulk count string", 20)
        deadline = time.monotonic() + 20          # and answers after it
        while len(lat) == n0 and t.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        t.join(10)
    assert len(lat) > n0, "no PING answered after the long line"
    assert max(lat) < 5.0, "a PING waited %.2f s" % max(lat)
    assert_healthy(srv, before)


def test_http_server_answers_bad_requests_and_closes(server):
    srv = server("http_server.py", 2)
    before = warm(srv)
    for data in [
            b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * (1 << 20),    # endless header
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"GET / HTTP/1.1\r\nHost: \x00\r\n\r\n",
            b"GET /\xff HTTP/1.1\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"\r\n" * 1000]:
        got = srv.exchange(data)
        if got:
            assert got.startswith((b"HTTP/1.1 4", b"HTTP/1.1 5")), (data[:60], got[:100])
    assert_healthy(srv, before)


# -- abrupt resets ---------------------------------------------------------------

RESET_LOADS = {
    "echo_server.py": [b"x" * (1 << 20), b"partial"],
    "http_server.py": [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 500, b"GET / HTTP/1.1\r\nHo"],
    "kv_server.py": [cmd(b"PING") * 5000, cmd(b"SET", b"k", b"v" * 100_000), b"*3\r\n$3\r\nSE"],
}


@pytest.mark.parametrize("script", SERVERS)
def test_abrupt_resets(server, script):
    """Clients that reset mid-request, or with replies still to come."""
    srv = server(script, 2)
    before = warm(srv)
    for i in range(30):
        s = srv.connect()
        try:
            s.sendall(RESET_LOADS[script][i % len(RESET_LOADS[script])])
        except OSError:
            pass
        if i % 3 == 0:
            time.sleep(0.005)       # sometimes after the server started answering
        rst(s)
    assert_healthy(srv, before)


# -- file-descriptor exhaustion -----------------------------------------------------

@pytest.mark.skipif(not hasattr(resource, "prlimit"), reason="needs resource.prlimit")
@pytest.mark.parametrize("script", ["echo_server.py", "kv_server.py"])
def test_fd_exhaustion_is_logged_once_and_recovers(server, script):
    """With RLIMIT_NOFILE lowered to 64, 100 clients: accept() backs off (the
    waiting connections stay in the kernel's backlog), the server logs it once
    for the burst, serves the connections it holds, and recovers when they
    close."""
    srv = server(script, 2)
    before = warm(srv)
    limit = 64
    hard = resource.prlimit(srv.p.pid, resource.RLIMIT_NOFILE)[1]
    resource.prlimit(srv.p.pid, resource.RLIMIT_NOFILE, (limit, hard))
    socks = []
    try:
        for _ in range(100):
            socks.append(srv.connect(timeout=5))
        srv.wait_stderr("accept: Too many open files")
        # the connections the server holds are served meanwhile
        request, want = (b"ping", b"ping") if script == "echo_server.py" else \
            (cmd(b"PING"), b"+PONG\r\n")
        s = socks[0]
        s.sendall(request)
        assert s.recv(64) == want
        time.sleep(2.5)             # back-offs go on: 5 ms doubling to 1 s
        assert srv.stderr().count("accept:") == 1, srv.stderr()
    finally:
        for s in socks:
            s.close()
    srv.wait_stderr("file descriptors available again", timeout=15)
    assert srv.stderr().count("accept:") == 2, srv.stderr()
    assert "(open files limit 64)" in srv.stderr()
    assert_healthy(srv, before)


# -- slow clients ---------------------------------------------------------------------

SLOW = {
    "echo_server.py": b"slowly but surely, one byte at a time",
    "http_server.py": b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200,
    "kv_server.py": cmd(b"SET", b"slow", b"s" * 200),
}


@pytest.mark.parametrize("script", SERVERS)
def test_slowloris_beside_a_normal_client(server, script):
    """30 connections that trickle a request one byte per 50 ms do not slow
    down a normal client."""
    srv = server(script, 2)
    before = warm(srv)
    slow = [srv.connect() for _ in range(30)]
    stop = threading.Event()
    errors = []

    def trickle():
        try:
            for i in range(len(SLOW[script])):
                if stop.is_set():
                    return
                for s in slow:
                    s.sendall(SLOW[script][i:i + 1])
                time.sleep(0.05)
        except OSError as e:        # the server must not drop them either
            errors.append(e)

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    lat = []
    try:
        end = time.monotonic() + 2.0
        while time.monotonic() < end or len(lat) < 5:
            t0 = time.monotonic()
            srv.probe(timeout=10)
            lat.append(time.monotonic() - t0)
            time.sleep(0.02)
    finally:
        stop.set()
        t.join(10)
        for s in slow:
            rst(s)
    assert not errors, errors
    assert max(lat) < 5.0, lat
    assert_healthy(srv, before)


# -- an unexpected exception in one connection ----------------------------------------

BOOM = '''
import sys
sys.path.insert(0, %r)
from _serve import parser, serve

def handle(conn):
    while True:
        data = conn.read(100)
        if not data:
            return
        if data.startswith(b"boom"):
            raise ValueError("boom on request")
        conn.write(data)

sys.exit(serve("boom_server", parser("boom", "127.0.0.1:0", "").parse_args(), handle))
'''


def test_unexpected_exception_is_logged_once_and_closes_only_its_connection(server, tmp_path):
    path = tmp_path / "boom_server.py"
    path.write_text(BOOM % os.path.join(REPO, "examples"))
    srv = server(str(path), 2)
    other = srv.connect()
    other.sendall(b"hello")
    assert other.recv(5) == b"hello"
    assert srv.exchange(b"boom") == b""                 # closed, nothing sent
    other.sendall(b"still here")                        # another connection is fine
    assert other.recv(10) == b"still here"
    with srv.connect() as s:                            # and new ones too
        s.sendall(b"new")
        assert s.recv(3) == b"new"
    other.close()
    err = srv.wait_stderr("ValueError: boom on request")
    assert err.count("Traceback") == 1, err
    assert "boom_server: connection from 127.0.0.1:" in err
    assert "ValueError: boom on request" in err
    srv.stop(tracebacks=1)


# -- the RESP parser in-process ------------------------------------------------------------

sys.path.insert(0, os.path.join(REPO, "examples"))
import kv_store  # noqa: E402  (examples/kv_store.py: no pygmp in it)


class _NoLock:
    def lock(self):
        pass

    def unlock(self):
        pass


def _feed(chunks):
    sess = kv_store.Session(kv_store.Store(_NoLock()))
    out = []
    for c in chunks:
        o, close = sess.process(c)
        out.append(o)
        if close:
            return b"".join(out), True
    return b"".join(out), False


_arg = st.one_of(st.binary(max_size=40), st.binary(min_size=1020, max_size=1100),
                 st.sampled_from([b"k", b"v", b"\r\n", b"1", b"-1", b"EX", b"NX"]))
_command = st.one_of(
    st.lists(_arg, max_size=4).map(lambda a: cmd(b"SET", b"k%d" % len(a), *a[:1])),
    st.sampled_from([cmd(b"GET", b"k1"), cmd(b"INCR", b"n"), cmd(b"DEL", b"k0"),
                     b"PING\r\n", b"ECHO hi\n", b"\r\n", cmd(b"MGET", b"k0", b"k1"),
                     b"*0\r\n", cmd(b"NOSUCH", b"x")]),
    st.lists(_arg, min_size=1, max_size=70).map(lambda a: cmd(b"ECHO", *a[:1]) if len(a) < 3
                                                  else cmd(b"DEL", *a)))


@settings(max_examples=300, deadline=None, database=None)
@given(cmds=st.lists(_command, max_size=12), cuts=st.lists(st.integers(0, 5000), max_size=8))
def test_resp_parser_same_replies_however_the_input_is_split(cmds, cuts):
    data = b"".join(cmds)
    whole = _feed([data])
    cuts = sorted(set(c % (len(data) + 1) for c in cuts))
    pieces = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
    assert _feed(pieces) == whole
    if len(data) < 4000:
        assert _feed([data[i:i + 1] for i in range(len(data))]) == whole
    assert whole[1] is False


@settings(max_examples=300, deadline=None, database=None)
@given(data=st.one_of(_resp, st.lists(_resp, max_size=5).map(b"".join)),
       cut=st.integers(0, 400))
def test_resp_parser_never_raises(data, cut):
    out, close = _feed([data[:cut], data[cut:]])
    assert isinstance(out, bytes)
    if close and not out.endswith(b"+OK\r\n"):
        assert out.endswith(b"\r\n") and b"-ERR Protocol error: " in out, out


# -- long runs (pytest -m stress) ---------------------------------------------------------

def _threads(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise AssertionError("no Threads: line")


@pytest.mark.stress
@pytest.mark.timeout(300)
def test_10000_idle_connections(server):
    n = 10_000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < n + 200:
        pytest.skip("RLIMIT_NOFILE hard limit %d < %d" % (hard, n + 200))
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, n + 200), hard))
    srv = server("echo_server.py", 2)
    before = warm(srv)
    threads0 = _threads(srv.p.pid)
    socks = []
    try:
        for _ in range(n):
            socks.append(srv.connect(timeout=30))
        for s in random.Random(1).sample(socks, 200):   # they are all served
            s.sendall(b"x")
            assert s.recv(1) == b"x"
        srv.wait_fds(before + n, timeout=60)
        assert srv.fds() >= before + n - 1
        assert _threads(srv.p.pid) == threads0, "idle connections cost OS threads"
    finally:
        for s in socks:
            s.close()
    assert_healthy(srv, before)
    srv.stop(timeout=60)


@pytest.mark.stress
@pytest.mark.timeout(400)
def test_soak_all_servers(server):
    """SOAK_SECONDS (default 60) of normal clients, junk and resets against
    all three servers at once: no death, no traceback, no fd leak, RSS growth
    bounded."""
    seconds = float(os.environ.get("SOAK_SECONDS", "60"))
    srvs = [server(s, 2) for s in SERVERS]
    before = [warm(s) for s in srvs]
    rss0 = [s.rss() for s in srvs]
    rnd = random.Random(7)
    end = time.monotonic() + seconds
    errors = []

    def client(k):
        r = random.Random(k)
        try:
            while time.monotonic() < end:
                srv = r.choice(srvs)
                x = r.random()
                if x < 0.6:
                    srv.probe()
                elif x < 0.8:
                    loads = RESET_LOADS[srv.script]
                    s = srv.connect()
                    try:
                        s.sendall(r.choice(loads))
                    except OSError:
                        pass
                    rst(s)
                else:
                    junk = bytes(r.getrandbits(8) for _ in range(r.randint(0, 500)))
                    srv.exchange(junk, timeout=10)
        except BaseException as e:      # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=client, args=(k + rnd.random(),), daemon=True)
          for k in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(seconds + 60)
        assert not t.is_alive(), "a soak client hung"
    assert not errors, errors[:3]
    for s, b, r0 in zip(srvs, before, rss0):
        assert_healthy(s, b)
        assert s.rss() - r0 < (64 << 20), "%s grew by %d MiB" % (
            s.script, (s.rss() - r0) >> 20)
    for s in srvs:
        s.stop(timeout=30)

"""pygmp.wsgi: the WSGI server (PEP 3333, checked with wsgiref.validate),
HTTP/1.1 framing, limits and timeouts, errors, graceful shutdown, and
``python -m pygmp.wsgi`` in a subprocess.

Servers run in this process (goroutines; the test thread is a plain thread
using blocking sockets with timeouts), except the command line, which runs in
a child.  Every wait is bounded.
"""
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import wsgiref.validate

import httptools
import pytest

from _helpers import _env, recv_timeout

from pygmp import wsgi

T = 5.0     # seconds: the bound on any single wait


# -- a small HTTP client on plain sockets --------------------------------------

class Resp:
    def __init__(self):
        self.status = None
        self.headers = {}
        self.raw_headers = []
        self.body = b""
        self.chunked = False
        self.done = False

    def header(self, name):
        return self.headers.get(name.lower())


class Client:
    """One connection; ``response()`` parses the next response (httptools)."""

    def __init__(self, addr, timeout=T):
        host, port = str(addr).rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock.settimeout(timeout)
        self._done = []
        self._cur = None
        self._parser = httptools.HttpResponseParser(self)
        self.eof = False

    # httptools callbacks
    def on_message_begin(self):
        self._cur = Resp()

    def on_header(self, name, value):
        n, v = name.decode().lower(), value.decode("latin-1")
        self._cur.raw_headers.append((n, v))
        self._cur.headers[n] = v

    def on_headers_complete(self):
        self._cur.status = self._parser.get_status_code()
        self._cur.chunked = self._cur.header("transfer-encoding") == "chunked"

    def on_body(self, b):
        self._cur.body += b

    def on_message_complete(self):
        self._cur.done = True
        self._done.append(self._cur)

    def send(self, data):
        self.sock.sendall(data)

    def request(self, method="GET", path="/", headers=(), body=None, version="1.1"):
        h = ["%s %s HTTP/%s" % (method, path, version), "Host: test"]
        h += ["%s: %s" % kv for kv in headers]
        if body is not None and not any(k.lower() in ("content-length", "transfer-encoding")
                                         for k, _ in headers):
            h.append("Content-Length: %d" % len(body))
        self.send(("\r\n".join(h) + "\r\n\r\n").encode("latin-1") + (body or b""))

    def response(self):
        while not self._done:
            data = self.sock.recv(65536)
            if not data:
                self.eof = True
                cur = self._cur
                if (cur is not None and not cur.done and cur.status is not None
                        and not cur.chunked and cur.header("content-length") is None):
                    cur.done = True             # a body delimited by the close
                    return cur
                raise EOFError("connection closed before a complete response")
            self._parser.feed_data(data)
        return self._done.pop(0)

    def get(self, path="/", **kw):
        self.request("GET", path, **kw)
        return self.response()

    def closed(self, timeout=T):
        """True if the server closes the connection within ``timeout`` (any
        data still arriving is read and dropped)."""
        end = time.monotonic() + timeout
        try:
            while time.monotonic() < end:
                self.sock.settimeout(max(0.01, end - time.monotonic()))
                if not self.sock.recv(65536):
                    return True
        except socket.timeout:
            return False
        except OSError:
            return True                 # reset
        return False

    def close(self):
        self.sock.close()


def raw_exchange(addr, data, timeout=T):
    """Send ``data``, read until the server closes: the bytes received."""
    host, port = str(addr).rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                b = s.recv(65536)
            except ConnectionResetError:
                break
            if not b:
                break
            out += b
        return out
    finally:
        s.close()


# -- applications ---------------------------------------------------------------

ENV_KEYS = ["REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "CONTENT_TYPE",
            "CONTENT_LENGTH", "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "REMOTE_ADDR",
            "REMOTE_PORT", "RAW_URI", "HTTP_HOST", "HTTP_X_TWICE", "HTTP_COOKIE",
            "HTTP_X_UNDER_SCORE", "wsgi.url_scheme", "wsgi.multithread", "wsgi.multiprocess",
            "wsgi.run_once", "wsgi.input_terminated"]


def read_all(inp):
    """The body to its end, with read(n) only (wsgiref.validate forbids read())."""
    out = b""
    while True:
        b = inp.read(65536)
        if not b:
            return out
        out += b


def echo_app(environ, start_response):
    """JSON: the environ keys above and the body (read to the end)."""
    body = read_all(environ["wsgi.input"])
    out = {k: environ.get(k) for k in ENV_KEYS}
    out["body"] = body.decode("latin-1")
    out["version"] = list(environ["wsgi.version"])
    data = json.dumps(out).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(data)))])
    return [data]


def hello_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello " + environ["PATH_INFO"].encode("latin-1")]


def stream_app(environ, start_response):
    """No Content-Length: chunked for HTTP/1.1, close-delimited for 1.0."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    n = int(environ["QUERY_STRING"] or "3")

    def gen():
        for i in range(n):
            yield b"part%d;" % i
        yield b""                       # empty chunks are skipped, not a terminator
    return gen()


@pytest.fixture
def serve():
    servers = []

    def start(app, validate=True, **kw):
        srv = wsgi.Server(wsgiref.validate.validator(app) if validate else app,
                          "127.0.0.1:0", **kw)
        srv.start()
        servers.append(srv)
        return srv
    yield start
    for s in servers:
        s.close()


# -- PEP 3333 and the environ ---------------------------------------------------

def test_environ_validated(serve):
    srv = serve(echo_app)
    c = Client(srv.addr)
    c.request("POST", "/a%20b/%C3%A9?x=1&y=%20", body=b"payload",
              headers=[("Content-Type", "text/plain"), ("X-Twice", "1"), ("X-Twice", "2"),
                       ("Cookie", "a=1"), ("Cookie", "b=2"), ("X_Under_Score", "dropped")])
    r = c.response()
    assert r.status == 200, r.body
    env = json.loads(r.body)
    assert env["REQUEST_METHOD"] == "POST"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/a b/\xc3\xa9"          # bytes as latin-1 (PEP 3333)
    assert env["QUERY_STRING"] == "x=1&y=%20"
    assert env["RAW_URI"] == "/a%20b/%C3%A9?x=1&y=%20"
    assert env["CONTENT_TYPE"] == "text/plain"
    assert env["CONTENT_LENGTH"] == "7"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["SERVER_NAME"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(srv.addr.port)
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == str(c.sock.getsockname()[1])
    assert env["HTTP_HOST"] == "test"
    assert env["HTTP_X_TWICE"] == "1,2"
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["HTTP_X_UNDER_SCORE"] is None             # "_" names could alias "-" ones
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.multithread"] is True
    assert env["wsgi.multiprocess"] is False
    assert env["wsgi.run_once"] is False
    assert env["wsgi.input_terminated"] is True
    assert env["version"] == [1, 0]
    assert env["body"] == "payload"
    assert r.header("content-length") == str(len(r.body))
    assert r.header("date")
    c.close()


def test_input_api(serve):
    """read(n), readline(), readlines(), iteration, on a chunked body."""
    def app(environ, start_response):
        inp = environ["wsgi.input"]
        first = inp.read(3)
        line = inp.readline()
        short = inp.readline(2)
        rest_lines = inp.readlines()
        out = json.dumps([first.decode(), line.decode(), short.decode(),
                          [x.decode() for x in rest_lines], inp.read().decode(),
                          inp.read(5).decode(), inp.readline().decode()]).encode()
        start_response("200 OK", [("Content-Length", str(len(out)))])
        return [out]
    srv = serve(app, validate=False)        # read() with no size is not WSGI 1.0
    c = Client(srv.addr)
    body = b"abcdef\nghij\nkl\nmn"
    chunks = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(body[i:i + 4]), body[i:i + 4])
                      for i in range(0, len(body), 4)) + b"0\r\n\r\n"
    c.request("POST", "/", headers=[("Transfer-Encoding", "chunked")], body=chunks)
    r = c.response()
    assert r.status == 200, r.body
    assert json.loads(r.body) == ["abc", "def\n", "gh", ["ij\n", "kl\n", "mn"], "", "", ""]

    def iter_app(environ, start_response):
        lines = list(environ["wsgi.input"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"|".join(lines)]
    srv2 = serve(iter_app)
    c2 = Client(srv2.addr)
    c2.request("PUT", "/", body=b"1\n22\n333")
    assert c2.response().body == b"1\n|22\n|333"


def test_large_body_streamed_in_both_directions(serve):
    """5 MB up (chunked, read in 64 KiB pieces) and 5 MB down (a generator)."""
    def app(environ, start_response):
        h = hashlib.sha256()
        n = 0
        inp = environ["wsgi.input"]
        while True:
            b = inp.read(65536)
            if not b:
                break
            h.update(b)
            n += len(b)
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("X-Sha", h.hexdigest()), ("X-Len", str(n))])
        return (bytes([i % 256]) * 100_000 for i in range(50))
    srv = serve(app)
    c = Client(srv.addr, timeout=20)
    payload = os.urandom(5 << 20)
    head = b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    t = threading.Thread(target=lambda: c.send(head + b"".join(
        b"%x\r\n%s\r\n" % (len(payload[i:i + 300_000]), payload[i:i + 300_000])
        for i in range(0, len(payload), 300_000)) + b"0\r\n\r\n"))
    t.start()
    r = c.response()
    t.join(T)
    assert r.status == 200
    assert r.header("x-len") == str(len(payload))
    assert r.header("x-sha") == hashlib.sha256(payload).hexdigest()
    assert r.chunked
    assert r.body == b"".join(bytes([i % 256]) * 100_000 for i in range(50))


# -- HTTP/1.1 framing ------------------------------------------------------------

def test_keepalive_and_pipelining(serve):
    srv = serve(hello_app)
    c = Client(srv.addr)
    port = c.sock.getsockname()[1]
    for i in range(3):
        r = c.get("/k%d" % i)
        assert (r.status, r.body) == (200, b"hello /k%d" % i)
        assert r.header("connection") is None
    # three requests in one write: three responses, in order, on the same connection
    c.send(b"".join(b"GET /p%d HTTP/1.1\r\nHost: t\r\n\r\n" % i for i in range(3)))
    assert [c.response().body for _ in range(3)] == [b"hello /p0", b"hello /p1", b"hello /p2"]
    assert c.sock.getsockname()[1] == port
    # Connection: close is honoured
    r = c.get("/last", headers=[("Connection", "close")])
    assert r.header("connection") == "close"
    assert c.closed()


def test_http10(serve):
    srv = serve(hello_app, validate=False)   # a list of one: Content-Length is known
    c = Client(srv.addr)
    r = c.get("/a", version="1.0")
    assert r.body == b"hello /a" and r.header("connection") == "close"
    assert c.closed()
    c = Client(srv.addr)
    r = c.get("/b", version="1.0", headers=[("Connection", "keep-alive")])
    assert r.header("connection") == "keep-alive"
    assert c.get("/c", version="1.0", headers=[("Connection", "keep-alive")]).body == b"hello /c"
    # no Content-Length and HTTP/1.0: the body ends when the connection closes
    srv2 = serve(stream_app)
    out = raw_exchange(srv2.addr, b"GET /?2 HTTP/1.0\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower()
    assert body == b"part0;part1;"


def test_chunked_response(serve):
    srv = serve(stream_app)
    c = Client(srv.addr)
    r = c.get("/?3")
    assert r.chunked and r.body == b"part0;part1;part2;"
    r = c.get("/?0")                    # nothing but empty chunks: an empty chunked body
    assert r.status == 200 and r.body == b""
    r = c.get("/?1")                    # and the connection is still good
    assert r.body == b"part0;"


def test_head_and_bodiless_statuses(serve):
    def app(environ, start_response):
        code = environ["PATH_INFO"][1:]
        if code == "204":
            start_response("204 No Content", [])
            return []
        if code == "304":
            start_response("304 Not Modified", [("ETag", '"x"')])
            return [b""]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"twelve bytes"]
    srv = serve(app)
    out = raw_exchange(srv.addr, b"HEAD /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"content-length: 12" in head.lower() and body == b""
    c = Client(srv.addr)
    for code in (204, 304):
        c.request("GET", "/%d" % code)
        r = c.response()
        assert r.status == code and r.body == b""
        assert r.header("content-length") is None and not r.chunked
    assert c.get("/x").body == b"twelve bytes"


def test_expect_100_continue(serve):
    srv = serve(echo_app)
    c = Client(srv.addr)
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    got = c.sock.recv(100)              # the app read wsgi.input: 100 Continue first
    assert got == b"HTTP/1.1 100 Continue\r\n\r\n"
    c.send(b"hello")
    r = c.response()
    assert r.status == 200 and json.loads(r.body)["body"] == "hello"
    assert c.get("/again").status == 200          # keep-alive after 100-continue

    # an app that never reads the body: no 100, the answer, and the connection closes
    srv2 = serve(hello_app)
    c = Client(srv2.addr)
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    r = c.response()
    assert r.status == 200 and r.header("connection") == "close"
    assert c.closed()

    # an expectation the server cannot meet: 417
    out = raw_exchange(srv2.addr, b"GET / HTTP/1.1\r\nHost: t\r\nExpect: teapot\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 417 ")


def test_unread_body_drained_or_closed(serve):
    srv = serve(hello_app)
    c = Client(srv.addr)
    c.request("POST", "/small", body=b"x" * 10_000)
    assert c.response().body == b"hello /small"
    assert c.get("/next").body == b"hello /next"      # the 10 kB were dropped, not parsed
    c.request("POST", "/big", body=b"y" * (2 << 20))  # far more than the server drains
    r = c.response()
    assert r.status == 200
    assert c.closed(timeout=T)


# -- errors -----------------------------------------------------------------------

def test_bad_requests_get_400_and_close(serve):
    srv = serve(hello_app)
    for raw in (b"GARBAGE\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
                b"GET / HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n",
                b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                b"GET / HTTP/9.9\r\n\r\n"):
        out = raw_exchange(srv.addr, raw)
        assert out.startswith(b"HTTP/1.1 400 "), (raw, out)
        assert b"connection: close" in out.lower()
    # a bad chunk while the application reads the body: 400 too
    srv2 = serve(echo_app)
    out = raw_exchange(srv2.addr, b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked"
                                  b"\r\n\r\n3\r\nabc\r\nXYZ\r\n")
    assert out.startswith(b"HTTP/1.1 400 "), out
    assert Client(srv.addr).get("/still").body == b"hello /still"


def test_limits_431_without_unbounded_memory(serve):
    srv = serve(hello_app)
    # a 1 MB request line
    out = raw_exchange(srv.addr, b"GET /" + b"a" * (1 << 20) + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 431 "), out[:100]
    # 10,000 headers
    out = raw_exchange(srv.addr, b"GET / HTTP/1.1\r\n" + b"".join(
        b"X-H%d: v\r\n" % i for i in range(10_000)) + b"\r\n")
    assert out.startswith(b"HTTP/1.1 431 "), out[:100]
    # one 1 MB header value
    out = raw_exchange(srv.addr, b"GET / HTTP/1.1\r\nX-Big: " + b"v" * (1 << 20) + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 431 "), out[:100]
    # a head that never ends, in small pieces: cut off at max_head_bytes
    srv2 = serve(hello_app, max_head_bytes=4096, max_header_size=100_000)
    out = raw_exchange(srv2.addr, b"GET / HTTP/1.1\r\nX-Long: " + b"v" * 50_000)
    assert out.startswith(b"HTTP/1.1 431 "), out[:100]
    # a chunked body whose trailer never ends (httptools would buffer it all)
    srv3 = serve(echo_app)
    c = Client(srv3.addr)
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"3\r\nabc\r\n0\r\nX-Trailer: ")
    try:
        for _ in range(40):
            c.send(b"t" * 8192)
    except OSError:
        pass
    r = c.response()
    assert r.status == 431, r.body
    assert Client(srv.addr).get("/ok").status == 200


def test_app_exception_500_logged_and_connection_closed(serve, capsys):
    calls = []

    def app(environ, start_response):
        calls.append(environ["PATH_INFO"])
        if environ["PATH_INFO"] == "/boom":
            raise RuntimeError("boom from the app")
        if environ["PATH_INFO"] == "/late":
            start_response("200 OK", [])

            def gen():
                yield b"first;"
                raise ValueError("late failure")
            return gen()
        if environ["PATH_INFO"] == "/inject":
            start_response("200 OK", [("X-Evil", "a\r\nSet-Cookie: x=1")])
            return [b""]
        return hello_app(environ, start_response)
    srv = serve(app, validate=False)
    other = Client(srv.addr)                        # another client, kept alive meanwhile
    assert other.get("/before").status == 200
    c = Client(srv.addr)
    r = c.get("/boom")
    assert r.status == 500 and r.header("connection") == "close"
    assert c.closed()
    err = capsys.readouterr().err
    assert "RuntimeError: boom from the app" in err and "Traceback" in err
    assert "GET /boom" in err
    # an exception after the response started: the connection is cut (no terminating chunk)
    c = Client(srv.addr)
    c.request("GET", "/late")
    with pytest.raises(EOFError):
        c.response()
    assert "ValueError: late failure" in capsys.readouterr().err
    # header injection is refused (500), not sent
    c = Client(srv.addr)
    r = c.get("/inject")
    assert r.status == 500 and "set-cookie" not in r.headers
    # the process and the other connection are fine
    assert other.get("/after").body == b"hello /after"


def test_start_response_misuse(serve, capsys):
    def app(environ, start_response):
        p = environ["PATH_INFO"]
        if p == "/twice":
            start_response("200 OK", [])
            start_response("200 OK", [])
        if p == "/nostart":
            return [b"x"]
        if p == "/str":
            start_response("200 OK", [])
            return ["text"]
        if p == "/status":
            start_response("OK", [])
        if p == "/excinfo":
            try:
                raise KeyError("x")
            except KeyError:
                start_response("200 OK", [])
                start_response("503 Busy", [("Content-Length", "4")], sys.exc_info())
            return [b"busy"]
        return [b""]
    srv = serve(app, validate=False)
    for p in ("/twice", "/nostart", "/str", "/status"):
        r = Client(srv.addr).get(p)
        assert r.status == 500, p
    r = Client(srv.addr).get("/excinfo")
    assert (r.status, r.body) == (503, b"busy")
    capsys.readouterr()


def test_content_length_mismatch(serve):
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/short":
            start_response("200 OK", [("Content-Length", "10")])
            return iter([b"12345"])
        start_response("200 OK", [("Content-Length", "3")])
        return iter([b"12345"])
    srv = serve(app, validate=False)
    c = Client(srv.addr)
    c.request("GET", "/long")
    assert c.response().body == b"123"              # never more than Content-Length
    c.request("GET", "/short")
    assert c.closed()                               # fewer: the connection must close


# -- timeouts, slow clients, limits on connections ------------------------------

def test_idle_keepalive_timeout(serve):
    srv = serve(hello_app, keepalive_timeout=0.3)
    c = Client(srv.addr)
    assert c.get("/").status == 200
    t0 = time.monotonic()
    assert c.closed(timeout=3)
    assert 0.25 < time.monotonic() - t0 < 2.0
    srv2 = serve(hello_app, keepalive_timeout=0)    # 0: no keep-alive at all
    c = Client(srv2.addr)
    assert c.get("/").header("connection") == "close"
    assert c.closed()


def test_slowloris_cut_off_and_others_served(serve):
    """200 clients dribbling a request head are closed after header_timeout;
    a normal client is served meanwhile, while they are all still connected."""
    srv = serve(hello_app, header_timeout=2.0)
    slow = []
    for _ in range(200):
        s = socket.create_connection(("127.0.0.1", srv.addr.port), timeout=T)
        s.sendall(b"GET / HTTP/1.1\r\n")
        slow.append(s)
    t0 = time.monotonic()
    open_ = set(range(200))
    served = None
    while open_ and time.monotonic() - t0 < 10:
        for i in list(open_):
            try:
                slow[i].sendall(b"X")           # one byte at a time
            except OSError:
                open_.discard(i)
        if served is None:
            ts = time.monotonic()
            fast = Client(srv.addr)
            assert fast.get("/fast").status == 200
            served = time.monotonic() - ts
            slow_then = srv.connections() - 1
            fast.close()
        time.sleep(0.2)
    elapsed = time.monotonic() - t0
    for s in slow:
        s.settimeout(0.5)
        try:
            assert s.recv(100) == b""
        except ConnectionResetError:
            pass
        s.close()
    assert not open_, "%d slow clients still connected after %.1fs" % (len(open_), elapsed)
    # served while (nearly) all the slow clients were still connected: not starved
    assert slow_then >= 150, (served, slow_then)
    deadline = time.monotonic() + T
    while srv.connections() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.connections() == 0


def test_slow_reader_write_timeout(serve):
    """A client that never reads a large response is dropped after
    write_timeout; others are served meanwhile."""
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/big":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return (b"z" * 65536 for _ in range(1000))     # 64 MB, never read
        return hello_app(environ, start_response)
    srv = serve(app, write_timeout=0.5)
    slow = Client(srv.addr)
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.request("GET", "/big")
    time.sleep(0.2)
    other = Client(srv.addr)
    assert other.get("/x").body == b"hello /x"
    other.close()
    deadline = time.monotonic() + T
    while srv.connections() > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.connections() == 0
    slow.close()


def test_max_connections(serve):
    from pygmp import sync
    from pygmp import time as gtime
    state = {"now": 0, "max": 0}
    lock = sync.Mutex()     # goroutines: never a threading.Lock (it would hold the thread)

    def app(environ, start_response):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        gtime.sleep(0.4)
        with lock:
            state["now"] -= 1
        start_response("200 OK", [("Connection", "close")])
        return [b"ok"]
    srv = serve(app, validate=False, max_connections=2)
    results = []

    def one():
        results.append(Client(srv.addr).get("/").status)
    ts = [threading.Thread(target=one) for _ in range(5)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(T)
    assert results == [200] * 5
    assert state["max"] == 2


# -- shutdown -------------------------------------------------------------------

def test_graceful_shutdown(serve):
    from pygmp import chan, go
    from pygmp import time as gtime
    started = chan(1)

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            started.send(None)
            gtime.sleep(0.5)
        start_response("200 OK", [])
        return [b"done " + environ["PATH_INFO"].encode()]
    srv = serve(app, validate=False)
    idle = Client(srv.addr)
    assert idle.get("/idle").status == 200
    busy = Client(srv.addr)
    busy.request("GET", "/slow")
    recv_timeout(started, T, "the slow request")
    res = chan(1)
    go(lambda: res.send(srv.shutdown(timeout=5)))
    assert idle.closed(timeout=2)                   # idle keep-alive: closed at once
    r = busy.response()                             # in flight: finished
    assert (r.status, r.body) == (200, b"done /slow")
    assert r.header("connection") == "close"
    assert busy.closed()
    assert recv_timeout(res, T, "shutdown") is True
    with pytest.raises(OSError):
        Client(srv.addr, timeout=1).get("/")        # no longer listening

    # a request that outlives the timeout is cut
    srv2 = serve(app, validate=False)
    c = Client(srv2.addr)
    c.request("GET", "/slow")
    recv_timeout(started, T, "the slow request")
    assert srv2.shutdown(timeout=0.1) is False
    assert c.closed()


def test_serve_blocks_until_closed():
    from pygmp import go
    srv = wsgi.Server(hello_app, "127.0.0.1:0")
    done = threading.Event()

    def run():
        srv.serve()
        done.set()
    threading.Thread(target=run, daemon=True).start()
    assert Client(srv.addr).get("/s").body == b"hello /s"
    assert not done.is_set()
    go(srv.close)
    assert done.wait(T)


def test_serve_in_a_goroutine_on_a_listener():
    from pygmp import chan, go, net
    ln = net.listen("tcp", "127.0.0.1:0")
    done = chan(1)
    go(lambda: (wsgi.serve(hello_app, ln), done.send("returned")))
    c = Client(ln.addr())
    assert c.get("/g").body == b"hello /g"
    ln.close()                  # serve() returns, as Go's Serve; the connection goes on
    assert recv_timeout(done, T, "serve() to return") == "returned"
    assert c.get("/h").body == b"hello /h"
    c.close()


def test_bad_arguments():
    with pytest.raises(TypeError):
        wsgi.serve("not callable", "127.0.0.1:0")
    with pytest.raises(TypeError):
        wsgi.Server(hello_app, 8080)
    with pytest.raises(ValueError):
        wsgi.Server(hello_app, "127.0.0.1")                    # no port
    with pytest.raises(ValueError):
        wsgi.Server(hello_app, "127.0.0.1:0", max_connections=0)
    with pytest.raises(ValueError):
        wsgi.Server(hello_app, "127.0.0.1:0", header_timeout=-1)
    with pytest.raises(ValueError):
        wsgi.Server(hello_app, "127.0.0.1:0", backlog=0)


def test_unix_socket(tmp_path):
    path = str(tmp_path / "w.sock")
    srv = wsgi.Server(echo_app, "unix:" + path)
    srv.start()
    try:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(T)
        s.connect(path)
        s.sendall(b"GET /u HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
        env = json.loads(out.partition(b"\r\n\r\n")[2])
        assert env["PATH_INFO"] == "/u" and env["SERVER_PORT"] == ""
    finally:
        srv.close()


# -- python -m pygmp.wsgi -------------------------------------------------------

CLI_APP = '''
import os, sys
from pygmp.runtime import gomaxprocs
from pygmp import time as gtime

def app(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        gtime.sleep(0.5)
    if environ["PATH_INFO"] == "/boom":
        raise RuntimeError("cli boom")
    body = ("%s %d %d" % (environ["PATH_INFO"], gomaxprocs(), os.getpid())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]

def factory():
    return app
'''


def start_cli(tmp_path, *args):
    (tmp_path / "cliapp.py").write_text(textwrap.dedent(CLI_APP))
    p = subprocess.Popen([sys.executable, "-m", "pygmp.wsgi", *args], cwd=str(tmp_path),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    line = ""
    box = []
    t = threading.Thread(target=lambda: box.append(p.stdout.readline()), daemon=True)
    t.start()
    t.join(20)
    line = box[0] if box else ""
    if not line.startswith("listening on "):
        p.kill()
        out, err = p.communicate(timeout=T)
        raise AssertionError("no 'listening on' line: %r %r" % (line, err))
    return p, line.split()[-1]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cli_serves_and_stops_with_status_0(tmp_path, sig):
    p, addr = start_cli(tmp_path, "cliapp:app", "--bind", "127.0.0.1:0", "--gomaxprocs", "1")
    try:
        r = Client(addr).get("/x")
        path, procs, pid = r.body.decode().split()
        assert (r.status, path, procs, int(pid)) == (200, "/x", "1", p.pid)
        r = Client(addr).get("/boom")
        assert r.status == 500
        busy = Client(addr)
        busy.request("GET", "/slow")
        time.sleep(0.2)
        p.send_signal(sig)
        r = busy.response()                     # the request in flight finishes
        assert r.status == 200
        out, err = p.communicate(timeout=15)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err
    assert "RuntimeError: cli boom" in err


def test_cli_factory_and_errors(tmp_path):
    p, addr = start_cli(tmp_path, "cliapp:factory()", "-b", "127.0.0.1:0")
    try:
        assert Client(addr).get("/f").status == 200
    finally:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=15)
    assert p.returncode == 0
    for spec, msg in (("nosuchmodule:app", "No module named"),
                      ("cliapp:nope", "has no attribute 'nope'")):
        r = subprocess.run([sys.executable, "-m", "pygmp.wsgi", spec, "--bind", "127.0.0.1:0"],
                           cwd=str(tmp_path), capture_output=True, text=True, timeout=30,
                           env=_env())
        assert r.returncode == 1 and msg in r.stderr, r.stderr
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        r = subprocess.run([sys.executable, "-m", "pygmp.wsgi", "cliapp:app", "--bind",
                            "127.0.0.1:%d" % busy.getsockname()[1]], cwd=str(tmp_path),
                           capture_output=True, text=True, timeout=30, env=_env())
    finally:
        busy.close()
    assert r.returncode == 1 and "in use" in r.stderr, r.stderr


# -- TLS (ssl_context; the gunicorn worker's --certfile) ------------------------

@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1: (certfile, keyfile)."""
    import shutil
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (needed to make a test certificate)")
    d = tmp_path_factory.mktemp("tls")
    crt, key = str(d / "cert.pem"), str(d / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", crt], check=True, capture_output=True, timeout=60)
    return crt, key


def _server_ctx(cert):
    import ssl
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*cert)
    return ctx


def _tls_client(addr, cert):
    import ssl
    c = Client(addr)
    ctx = ssl.create_default_context(cafile=cert[0])
    c.sock = ctx.wrap_socket(c.sock, server_hostname="127.0.0.1")
    return c


def test_tls_keepalive_chunked_and_scheme(serve, cert):
    srv = serve(echo_app, ssl_context=_server_ctx(cert))
    c = _tls_client(srv.addr, cert)
    try:
        for i in range(3):                      # keep-alive over one TLS session
            r = c.get("/env")
            assert r.status == 200
            assert json.loads(r.body)["wsgi.url_scheme"] == "https"
        body = bytes(range(256)) * 1200         # records across many reads
        c.request("POST", "/echo", body=body)
        r = c.response()
        assert r.status == 200 and json.loads(r.body)["body"].encode("latin-1") == body
    finally:
        c.close()
    srv2 = serve(stream_app, ssl_context=_server_ctx(cert))
    c = _tls_client(srv2.addr, cert)
    try:
        r = c.get("/")
        assert r.status == 200 and r.chunked and r.body == b"part0;part1;part2;"
    finally:
        c.close()


def test_tls_client_that_never_handshakes_is_cut_off(serve, cert):
    srv = serve(hello_app, ssl_context=_server_ctx(cert), keepalive_timeout=0.3)
    host, port = str(srv.addr).rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=T) as s:
        s.sendall(b"\x16\x03\x01")              # the start of a ClientHello, then nothing
        s.settimeout(T)
        t0 = time.monotonic()
        try:
            assert s.recv(100) == b""
        except ConnectionResetError:
            pass
        assert time.monotonic() - t0 < 3
    c = _tls_client(srv.addr, cert)             # the server still serves
    try:
        assert c.get("/env").status == 200
    finally:
        c.close()


def test_tls_plain_http_client_gets_closed(serve, cert):
    srv = serve(hello_app, ssl_context=_server_ctx(cert))
    out = raw_exchange(srv.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert not out.startswith(b"HTTP/1.1 200")
    c = _tls_client(srv.addr, cert)
    try:
        assert c.get("/env").status == 200
    finally:
        c.close()


def test_cli_certfile_serves_https(tmp_path, cert):
    p, addr = start_cli(tmp_path, "cliapp:app", "-b", "127.0.0.1:0", "--certfile", cert[0],
                        "--keyfile", cert[1])
    try:
        c = _tls_client(addr, cert)
        try:
            r = c.get("/x")
            assert r.status == 200 and r.body.startswith(b"/x ")
        finally:
            c.close()
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(T * 2) == 0
    r = subprocess.run([sys.executable, "-m", "pygmp.wsgi", "cliapp:app", "--certfile",
                        str(tmp_path / "missing.pem")], cwd=str(tmp_path), capture_output=True,
                       text=True, timeout=60, env=_env())
    assert r.returncode == 1 and "certificate" in r.stderr, r.stderr


def test_ssl_context_must_be_an_sslcontext():
    with pytest.raises(TypeError, match="ssl_context"):
        wsgi.Server(hello_app, "127.0.0.1:0", ssl_context="cert.pem")

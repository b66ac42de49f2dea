"""pygmp.wsgi: a WSGI server (PEP 3333) with a goroutine per connection.

    from pygmp import wsgi
    wsgi.serve(app, "127.0.0.1:8000")          # blocks while it serves

    python -m pygmp.wsgi MODULE:APP --bind HOST:PORT [--gomaxprocs N]

HTTP/1.1 with keep-alive and pipelining, chunked request and response bodies,
``Expect: 100-continue`` (the ``100 Continue`` goes out when the application
first reads ``wsgi.input``), ``wsgi.multithread`` true: requests run in
goroutines on GOMAXPROCS worker threads.  Requests are parsed by httptools
(llhttp, Node.js's parser), never by hand.

Errors.  A malformed request is answered ``400`` and its connection closed; a
request line or header section over the limits gets ``431`` (never unbounded
memory: at most one 64 KiB read past a limit is buffered).  An exception raised
by the application is logged with its traceback to stderr and answered
``500`` (if the response had not started), and that connection is closed; the
server and every other connection carry on.  Timeouts bound what a client can
hold: the request head must arrive within ``header_timeout`` seconds of its
first byte, an idle keep-alive connection is closed after
``keepalive_timeout``, each read of a request body and each write of a response
must progress within ``read_timeout`` / ``write_timeout`` (slowloris clients
are cut off; a slow client only ever parks its own goroutine).  The time an
application spends computing a response is not limited.

Addresses: ``"host:port"`` (Go style; ``":8000"`` is every interface, port 0
picks a free one), ``"unix:/path"``, a ``pygmp.net.Listener``, or a list of
those.  ``Server`` gives the bound addresses and a graceful ``shutdown``.

Goroutines are not threads: ``threading.local`` is shared by the goroutines
of one worker thread, and a blocking call that pygmp does not hand off
(``time.sleep``, a C library's own socket) holds up the other goroutines of
its worker thread.  Use ``pygmp.time.sleep``, ``pygmp.net`` and
``pygmp.syscall.call``, or contextvars, which are per goroutine.
"""

import errno as _errno
import os as _os
import socket as _socket
import sys as _sys
import time as _time
import traceback as _traceback
from collections import deque as _deque
from email.utils import formatdate as _formatdate
from urllib.parse import unquote_to_bytes as _unquote_to_bytes

import httptools as _httptools

from . import chan as _chan, go as _go, select as _select
from . import net as _net
from . import sync as _sync
from . import time as _gtime

__all__ = ["serve", "Server", "FileWrapper", "ClientDisconnected", "BadRequest"]

SERVER_SOFTWARE = "pygmp"
READ_SIZE = 65536           # one read from a connection
DRAIN_LIMIT = 256 * 1024    # unread request body read and dropped to keep a connection
LINGER_TIME = 2.0           # after an error response: seconds spent draining input
LINGER_BYTES = 4 << 20      # ... and at most this many bytes

DEFAULTS = {
    "header_timeout": 10.0,     # request head complete within this long of its first byte
    "keepalive_timeout": 5.0,   # idle keep-alive connection closed after this long (0: no keep-alive)
    "read_timeout": 60.0,       # each read of a request body
    "write_timeout": 60.0,      # each write of a response
    "max_request_line": 8190,   # bytes of the request target
    "max_headers": 100,         # header fields
    "max_header_size": 8190,    # bytes of one header field (name + value)
    "max_head_bytes": 65536,    # bytes of the whole request head
}

_mono = _time.monotonic


class BadRequest(ValueError):
    """The request body is malformed (raised by ``wsgi.input``).  If the
    application lets it escape, the client gets ``400``."""

    status = 400
    reason = "Bad Request"


class _HeadError(BadRequest):
    def __init__(self, status, reason, msg):
        super().__init__(msg)
        self.status = status
        self.reason = reason


class ClientDisconnected(OSError):
    """The client went away (or stopped sending within ``read_timeout``)
    while the application read the request body."""


class _ClientGone(Exception):
    """A write to the client failed: the connection is dead."""


# -- small caches ---------------------------------------------------------------

_date_cache = (0, b"")


def _date():
    """The Date header line, formatted once a second."""
    global _date_cache
    now = _time.time()
    sec = int(now)
    c = _date_cache
    if c[0] != sec:
        d = ("Date: %s\r\n" % _formatdate(now, usegmt=True)).encode("ascii")
        _date_cache = (sec, d)
        return d
    return c[1]


_METHODS = {m.encode(): m for m in
            ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT")}
_PROTOCOLS = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0", "0.9": "HTTP/0.9"}

_HKEYS = {}
_HKEYS_MAX = 2048


def _hkey(name):
    """The environ key for a header name (bytes), or None to drop it (names
    with ``_``, which would alias ``-`` after the CGI mapping)."""
    key = _HKEYS.get(name)
    if key is None:
        s = name.decode("latin-1")
        if "_" in s:
            key = ""
        else:
            u = s.upper().replace("-", "_")
            key = u if u in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + u
        if len(_HKEYS) < _HKEYS_MAX:
            _HKEYS[name] = key
    return key or None


_REASONS = {400: "Bad Request", 408: "Request Timeout", 413: "Content Too Large",
            417: "Expectation Failed", 431: "Request Header Fields Too Large",
            500: "Internal Server Error", 503: "Service Unavailable"}


def _error_bytes(status, msg, reason=None):
    body = (msg.rstrip("\n") + "\n").encode("utf-8", "replace")
    return (b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n%s\r\n%s"
            % (status, (reason or _REASONS.get(status, "Error")).encode("latin-1"),
               len(body), _date(), body))


# -- wsgi.input, wsgi.file_wrapper ----------------------------------------------

class _Request:
    __slots__ = ("url", "headers", "method", "version", "keep_alive", "buf", "complete",
                 "discard", "discarded", "expect", "overhead")

    def __init__(self):
        self.url = b""
        self.headers = []
        self.method = b""
        self.version = "1.1"
        self.keep_alive = True
        self.buf = bytearray()
        self.complete = False
        self.discard = False
        self.discarded = 0
        self.expect = False
        self.overhead = 0           # bytes read for the body that were not body (trailers...)


class _Input:
    """``wsgi.input``: the request body, read from the connection on demand
    (de-chunked; ``read()`` with no size reads to the end of the body, also
    for chunked requests: ``wsgi.input_terminated`` is true)."""

    __slots__ = ("_c", "_r")

    def __init__(self, c, r):
        self._c = c
        self._r = r

    def _fill(self):
        r = self._r
        if r.complete:
            return False
        c = self._c
        if c.req is not r:          # kept after its response: nothing more to read
            return False
        return c._read_body(r)

    def read(self, size=-1):
        r = self._r
        buf = r.buf
        if size is None or size < 0:
            while self._fill():
                pass
            out = bytes(buf)
            buf.clear()
            return out
        while len(buf) < size and self._fill():
            pass
        out = bytes(buf[:size])
        del buf[:size]
        return out

    def readline(self, size=-1):
        r = self._r
        buf = r.buf
        if size is None:
            size = -1
        start = 0
        while True:
            i = buf.find(b"\n", start)
            if i >= 0:
                n = i + 1
                break
            if 0 <= size <= len(buf):
                n = size
                break
            start = len(buf)
            if not self._fill():
                n = len(buf)
                break
        if 0 <= size < n:
            n = size
        out = bytes(buf[:n])
        del buf[:n]
        return out

    def readlines(self, hint=-1):
        lines = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self):
        while True:
            line = self.readline()
            if not line:
                return
            yield line


class FileWrapper:
    """``wsgi.file_wrapper``: iterate a file-like object in blocks."""

    def __init__(self, filelike, blksize=65536):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        read = self.filelike.read
        n = self.blksize
        while True:
            data = read(n)
            if not data:
                return
            yield data


# -- one connection -------------------------------------------------------------

class _Connection:
    """The state of one connection and the httptools callbacks that fill it.
    Runs in the connection's goroutine only (the janitor reads ``deadline``
    and ``idle`` and may close ``conn``)."""

    __slots__ = (
        "server", "conn", "env0", "env", "parser", "ready", "cur", "req", "deadline", "idle",
        "upgraded",
        # the response in progress
        "status", "rheaders", "clen", "app_close", "app_te", "app_date", "sent", "written",
        "chunked", "head_only", "close", "__weakref__",
    )

    def __init__(self, server, conn, env0):
        self.server = server
        self.conn = conn
        self.env0 = env0
        self.parser = _httptools.HttpRequestParser(self)
        self.ready = _deque()
        self.cur = None
        self.req = None
        self.deadline = 0.0
        self.idle = True
        self.upgraded = False
        self.status = None
        self.rheaders = None
        self.sent = False
        self.env = None

    # -- httptools callbacks (inside feed_data) --

    def on_message_begin(self):
        self.cur = _Request()
        self.idle = False

    def on_url(self, frag):
        r = self.cur
        r.url += frag
        if len(r.url) > self.server.max_request_line:
            raise _HeadError(431, None, "request line too long (limit %d bytes)"
                             % self.server.max_request_line)

    def on_header(self, name, value):
        r = self.cur
        h = r.headers
        h.append((name, value))
        srv = self.server
        if len(h) > srv.max_headers:
            raise _HeadError(431, None, "too many header fields (limit %d)" % srv.max_headers)
        if len(name) + len(value) > srv.max_header_size:
            raise _HeadError(431, None, "header field too large (limit %d bytes)"
                             % srv.max_header_size)

    def on_headers_complete(self):
        r = self.cur
        p = self.parser
        r.method = p.get_method()
        r.version = p.get_http_version()
        r.keep_alive = p.should_keep_alive()
        self.ready.append(r)

    def on_body(self, data):
        r = self.cur
        if r.discard:
            r.discarded += len(data)
        else:
            r.buf += data

    def on_message_complete(self):
        self.cur.complete = True

    def _feed(self, data):
        try:
            self.parser.feed_data(data)
        except _httptools.HttpParserUpgrade:
            # Connection: upgrade / CONNECT: WSGI cannot switch protocols; the
            # request is served as a plain one and the connection closed after.
            self.upgraded = True
            if self.cur is not None:
                self.cur.complete = True
        except _httptools.HttpParserCallbackError as e:
            ctx = e.__context__
            if isinstance(ctx, BadRequest):
                raise ctx from None
            raise BadRequest("malformed request: %s" % e) from None
        except _httptools.HttpParserError as e:
            raise BadRequest("malformed request: %s" % (e or type(e).__name__)) from None

    # -- the connection's loop --

    def run(self):
        hook = self.server._on_request
        while True:
            req = self._next_request()
            if req is None:
                return
            self.req = req
            if hook is None:
                keep = self._handle(req)
            else:
                t0 = _mono()
                self.env = None
                keep = self._handle(req)
                hook(self.env or {}, self.status or "500 Internal Server Error",
                     self.rheaders if self.sent and self.rheaders else [], self.written,
                     _mono() - t0)
            self.req = None
            if not keep:
                return

    def _next_request(self):
        """The next request head (parsed already, or read now), or None when
        the connection is done (EOF, timeout, shutdown, or a bad request
        that was answered)."""
        ready = self.ready
        if ready:
            return ready.popleft()
        if self.upgraded:
            return None
        srv = self.server
        cur = self.cur
        self.idle = idle = cur is None or cur.complete
        if srv._stopping and idle:
            return None
        self.deadline = _mono() + (srv.keepalive_timeout if idle else srv.header_timeout)
        conn = self.conn
        fed = 0
        while True:
            try:
                data = conn.read(READ_SIZE)
            except OSError:             # closed by the janitor or shutdown, reset
                return None
            if not data:
                return None
            self.idle = False
            fed += len(data)
            try:
                self._feed(data)
            except BadRequest as e:
                self._error(e.status, str(e), getattr(e, "reason", None))
                return None
            if ready:
                return ready.popleft()
            if self.upgraded:
                return None
            if fed > srv.max_head_bytes:
                self._error(431, "request head too large (limit %d bytes)" % srv.max_head_bytes)
                return None
            if fed == len(data):    # the head started: it has header_timeout to finish
                self.deadline = _mono() + srv.header_timeout

    def _read_body(self, r):
        """Read more of request ``r``'s body into ``r.buf`` (wsgi.input)."""
        srv = self.server
        if r.expect:
            r.expect = False
            if not self.sent:
                self._write(b"HTTP/1.1 100 Continue\r\n\r\n", ClientDisconnected)
        self.deadline = _mono() + srv.read_timeout
        try:
            data = self.conn.read(READ_SIZE)
        except OSError as e:
            raise ClientDisconnected("reading the request body: %s" % (
                "timed out" if isinstance(e, _net.ErrClosed) else e)) from None
        finally:
            self.deadline = 0.0
        if not data:
            raise ClientDisconnected("the client closed the connection before the end "
                                     "of the request body")
        self._feed_body(r, data)
        return True

    def _feed_body(self, r, data):
        """Feed body bytes; bytes that bring no body (chunk trailers, which
        httptools accumulates) count against max_head_bytes."""
        before = len(r.buf) + r.discarded
        self._feed(data)
        if not r.complete and len(r.buf) + r.discarded == before:
            r.overhead += len(data)
            if r.overhead > self.server.max_head_bytes:
                raise _HeadError(431, None, "request trailers too large")

    def _write(self, data, exc=_ClientGone):
        self.deadline = _mono() + self.server.write_timeout
        try:
            self.conn.write(data)
        except OSError as e:
            raise exc("writing the response: %s" % e) from None
        finally:
            self.deadline = 0.0

    def _error(self, status, msg, reason=None):
        """Answer an error and close the connection (after draining a little
        of what the client still sends, so it reads the answer, not a reset)."""
        self.status = "%d %s" % (status, reason or _REASONS.get(status, "Error"))
        try:
            self._write(_error_bytes(status, msg, reason))
        except _ClientGone:
            return
        self._linger()

    def _linger(self):
        conn = self.conn
        try:
            conn.close_write()
        except (OSError, AttributeError):
            return
        self.deadline = _mono() + LINGER_TIME
        n = 0
        try:
            while n < LINGER_BYTES:
                data = conn.read(READ_SIZE)
                if not data:
                    return
                n += len(data)
        except OSError:
            return

    # -- one request --

    def _environ(self, req):
        env = self.env0.copy()
        m = req.method
        env["REQUEST_METHOD"] = _METHODS.get(m) or m.decode("latin-1")
        url = req.url
        if url[:1] != b"/":
            if b"://" in url:               # absolute-form
                try:
                    u = _httptools.parse_url(url)
                except _httptools.HttpParserInvalidURLError:
                    raise BadRequest("malformed request target") from None
                path = u.path or b"/"
                url_q = u.query
                query = url_q if url_q is not None else b""
            else:                           # "*" or authority-form (CONNECT)
                path, query = url, b""
        else:
            path, _, query = url.partition(b"?")
            if b"#" in url:
                if b"#" in path:
                    path = path.partition(b"#")[0]
                query = query.partition(b"#")[0]
        if b"%" in path:
            path = _unquote_to_bytes(path)
        env["PATH_INFO"] = path.decode("latin-1")
        env["QUERY_STRING"] = query.decode("latin-1")
        env["RAW_URI"] = env["REQUEST_URI"] = url.decode("latin-1")
        v = req.version
        env["SERVER_PROTOCOL"] = _PROTOCOLS.get(v) or "HTTP/" + v
        for name, value in req.headers:
            key = _HKEYS.get(name)
            if key is None:
                key = _hkey(name)
                if key is None:
                    continue
            elif not key:
                continue
            val = value.decode("latin-1")
            if key in env:
                val = env[key] + ("; " if key == "HTTP_COOKIE" else ",") + val
            env[key] = val
        env["wsgi.input"] = _Input(self, req)
        return env

    def start_response(self, status, headers, exc_info=None):
        if exc_info is not None:
            try:
                if self.sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response called a second time without exc_info")
        if type(status) is not str:
            raise TypeError("start_response: status must be a str, not %s"
                            % type(status).__name__)
        if (len(status) < 4 or status[3] != " " or not status[:3].isdigit()
                or "\n" in status or "\r" in status):
            raise ValueError("start_response: bad status %r (want e.g. '200 OK')" % status)
        clen = None
        close = te = date = False
        for item in headers:
            name, value = item
            if type(name) is not str or type(value) is not str:
                raise TypeError("start_response: header names and values must be str: %r"
                                % (item,))
            if "\n" in value or "\r" in value or "\n" in name or "\r" in name or ":" in name:
                raise ValueError("start_response: invalid header %r" % (item,))
            ln = name.lower()
            if ln == "content-length":
                try:
                    clen = int(value)
                except ValueError:
                    raise ValueError("start_response: bad Content-Length %r" % value) from None
                if clen < 0:
                    raise ValueError("start_response: bad Content-Length %r" % value)
            elif ln == "connection":
                close = True            # the app's own Connection header goes out as is
                if "close" not in value.lower():
                    close = None
            elif ln == "transfer-encoding":
                te = True
            elif ln == "date":
                date = True
        self.status = status
        self.rheaders = headers
        self.clen = clen
        self.app_close = close
        self.app_te = te
        self.app_date = date
        return self.write

    def write(self, data):
        """The legacy ``write`` callable start_response returns."""
        if self.status is None:
            raise AssertionError("write() before start_response")
        if data:
            self._body(data)

    def _head(self, total):
        """Response head bytes; ``total``: the body's length when known."""
        req = self.req
        status = self.status
        code = status[:3]
        keep = self.close is False
        lines = ["HTTP/1.1 ", status, "\r\n"]
        for name, value in self.rheaders:
            lines.append("%s: %s\r\n" % (name, value))
        nobody = code[0] == "1" or code == "204" or code == "304"
        if self.clen is not None or nobody or self.app_te:
            if self.app_te:
                keep = False
        elif total is not None:
            lines.append("Content-Length: %d\r\n" % total)
            self.clen = total
        elif not self.head_only:
            if req.version == "1.1":
                lines.append("Transfer-Encoding: chunked\r\n")
                self.chunked = True
            else:
                keep = False                # HTTP/1.0: the body ends at close
        if req.expect or self.server._stopping:
            keep = False        # (a client may still send a body it was never asked for)
        if self.app_close:
            keep = False
        if not keep:
            self.close = True
            if self.app_close is False:
                lines.append("Connection: close\r\n")
        elif req.version != "1.1":
            lines.append("Connection: keep-alive\r\n")
        head = "".join(lines).encode("latin-1")
        return head + _date() + b"\r\n" if not self.app_date else head + b"\r\n"

    def _body(self, data):
        """Send a non-empty body chunk (with the head, the first time)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError("a WSGI application must yield bytes, not %s" % type(data).__name__)
        if self.head_only:          # nothing is sent: count it for Content-Length
            self.written += len(data)
            return
        if self.clen is not None and self.written + len(data) > self.clen:
            data = data[:self.clen - self.written]     # never send past Content-Length
            if not data:
                return
        self.written += len(data)
        if not self.sent:
            head = self._head(None)         # decides self.chunked
            self.sent = True
            if self.chunked:
                data = b"%x\r\n%s\r\n" % (len(data), data)
            self._write(head + data)
        else:
            if self.chunked:
                data = b"%x\r\n%s\r\n" % (len(data), data)
            self._write(data)

    def _finish(self):
        """The application's iterable is exhausted: end the response."""
        if self.status is None:
            raise AssertionError("the application returned without calling start_response")
        if not self.sent:
            out = self._head(self.written)      # 0, or what a HEAD response counted
            self.sent = True
            self._write(out)
        elif self.chunked:
            self._write(b"0\r\n\r\n")
        if self.clen is not None and self.written < self.clen and not self.head_only:
            code = self.status[:3]
            if not (code[0] == "1" or code == "204" or code == "304"):
                self.close = True   # the client still waits for bytes that never come

    def _handle(self, req):
        """Run the application for ``req`` and send its response.  True if
        the connection may serve another request."""
        srv = self.server
        self.deadline = 0.0
        self.status = None
        self.sent = False
        self.written = 0
        self.chunked = False
        self.head_only = req.method == b"HEAD"
        # close after this response?  (decided before the head goes out)
        self.close = (not req.keep_alive or self.upgraded or srv._stopping
                      or not srv.keepalive_timeout)
        try:
            env = self._environ(req)
        except BadRequest as e:
            self._error(e.status, str(e))
            return False
        self.env = env
        if srv._environ_hook is not None:
            srv._environ_hook(env)
        expect = env.get("HTTP_EXPECT")
        if expect is not None:
            if expect.lower() != "100-continue":
                self._error(417, "unsupported Expect: %s" % expect)
                return False
            if req.version == "1.1" and not req.complete:
                req.expect = True
        result = None
        try:
            result = srv.app(env, self.start_response)
            if type(result) is list and len(result) == 1 and not self.sent:
                body = result[0]
                if self.status is None:
                    raise AssertionError("the application returned without calling "
                                         "start_response")
                if not isinstance(body, (bytes, bytearray, memoryview)):
                    raise TypeError("a WSGI application must yield bytes, not %s"
                                    % type(body).__name__)
                if self.clen is not None and self.clen < len(body):
                    body = body[:self.clen]
                head = self._head(len(body))
                self.sent = True
                self.written = len(body)
                if self.head_only or not body:
                    self._write(head)
                else:
                    self._write(head + body if len(body) < 65536 else head)
                    if len(body) >= 65536:
                        self._write(body)
                self._finish_len()
            else:
                for data in result:
                    if data:
                        self._body(data)
                self._finish()
        except _ClientGone:
            self._close_result(result, env)
            return False
        except BadRequest as e:            # from wsgi.input, escaped the application
            self._close_result(result, env)
            if not self.sent:
                self._error(e.status, str(e), getattr(e, "reason", None))
            return False
        except ClientDisconnected:
            self._close_result(result, env)
            return False
        except Exception:
            srv._log_exception(env, _sys.exc_info())
            self._close_result(result, env)
            if not self.sent:
                self.status = "500 Internal Server Error"
                self.rheaders = None
                try:
                    self._write(_error_bytes(500, "Internal Server Error"))
                except _ClientGone:
                    pass
            return False
        if not self._close_result(result, env):
            return False
        if self.close or srv._stopping:
            return False
        if not req.complete:
            return self._drain(req)
        return True

    def _finish_len(self):
        if self.clen is not None and self.written < self.clen and not self.head_only:
            code = self.status[:3]
            if not (code[0] == "1" or code == "204" or code == "304"):
                self.close = True

    def _close_result(self, result, env):
        close = getattr(result, "close", None)
        if close is None:
            return True
        try:
            close()
        except Exception:
            self.server._log_exception(env, _sys.exc_info())
            return False
        return True

    def _drain(self, req):
        """The application did not read the whole body: read and drop up to
        DRAIN_LIMIT bytes of it so the connection can serve the next request."""
        req.discard = True
        req.discarded = len(req.buf)
        req.buf = bytearray()
        srv = self.server
        conn = self.conn
        while not req.complete:
            if req.discarded > DRAIN_LIMIT:
                return False
            self.deadline = _mono() + srv.read_timeout
            try:
                data = conn.read(READ_SIZE)
            except OSError:
                return False
            if not data:
                return False
            try:
                self._feed_body(req, data)
            except BadRequest:
                return False
        return True


# -- the server -----------------------------------------------------------------

def _listener_from_socket(sock):
    """A pygmp.net.Listener around an already listening socket (gunicorn's)."""
    fl = getattr(_net, "file_listener", None)
    if fl is not None:
        return fl(sock)
    from .runtime import netfd
    network = "unix" if sock.family == getattr(_socket, "AF_UNIX", None) else "tcp"
    return _net.Listener(netfd.FD(sock), network)


def _listen(address, backlog):
    if isinstance(address, _net.Listener):
        return address
    if isinstance(address, _socket.socket):
        return _listener_from_socket(address)
    if not isinstance(address, str):
        raise TypeError("address must be a 'host:port' or 'unix:PATH' str, a "
                        "pygmp.net.Listener, or a list of them, not %s" % type(address).__name__)
    if address.startswith("unix:"):
        ln = _net.listen("unix", address[5:])
    else:
        ln = _net.listen("tcp", address)
    if backlog is not None:
        s = _socket.fromfd(ln.fileno(), _socket.AF_INET if ln.addr().port is not None
                           else _socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            s.listen(backlog)           # same socket, another fd: sets its backlog
        finally:
            s.close()
    return ln


def _check_timeout(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
        raise ValueError("%s must be a number of seconds >= 0, not %r" % (name, v))
    return float(v)


def _check_limit(name, v):
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError("%s must be an int >= 1, not %r" % (name, v))
    return v


def _default_log_exception(environ, exc_info):
    try:
        where = "%s %s" % (environ.get("REQUEST_METHOD"), environ.get("RAW_URI"))
        peer = environ.get("REMOTE_ADDR", "")
        text = "pygmp.wsgi: error handling %s (client %s):\n%s" % (
            where, peer, "".join(_traceback.format_exception(*exc_info)))
        err = _sys.stderr
        err.write(text)
        err.flush()
    except Exception:   # noqa: BLE001 - logging must never take the connection down
        pass


class Server:
    """A WSGI server on one or more listeners.

    ``Server(app, address, ...)`` listens at once (errors binding raise
    here); ``serve()`` serves until ``shutdown()``/``close()`` (blocking;
    ``start()`` serves in goroutines and returns).  ``addrs`` are the bound
    addresses (``pygmp.net.Addr``), ``addr`` the first one.

    Keywords: ``backlog`` (listen queue), ``max_connections`` (open
    connections at most; further clients wait in the listen queue),
    the timeouts and limits of ``DEFAULTS``, ``environ`` (extra keys for
    every request's environ), ``multiprocess`` (``wsgi.multiprocess``),
    ``log_exception(environ, exc_info)`` (default: the traceback to stderr),
    ``on_request(environ, status, headers, bytes_sent, seconds)`` (called
    after each response, in its goroutine), ``environ_hook(environ)`` (may
    edit each environ before the application sees it).
    """

    def __init__(self, app, address, *, backlog=1024, max_connections=None,
                 header_timeout=DEFAULTS["header_timeout"],
                 keepalive_timeout=DEFAULTS["keepalive_timeout"],
                 read_timeout=DEFAULTS["read_timeout"],
                 write_timeout=DEFAULTS["write_timeout"],
                 max_request_line=DEFAULTS["max_request_line"],
                 max_headers=DEFAULTS["max_headers"],
                 max_header_size=DEFAULTS["max_header_size"],
                 max_head_bytes=DEFAULTS["max_head_bytes"],
                 environ=None, multiprocess=False, log_exception=None, on_request=None,
                 environ_hook=None):
        if not callable(app):
            raise TypeError("app must be a WSGI callable, not %s" % type(app).__name__)
        if backlog is not None and (isinstance(backlog, bool) or not isinstance(backlog, int)
                                    or backlog < 1):
            raise ValueError("backlog must be an int >= 1, not %r" % (backlog,))
        if max_connections is not None:
            _check_limit("max_connections", max_connections)
        self.app = app
        self.header_timeout = _check_timeout("header_timeout", header_timeout)
        self.keepalive_timeout = _check_timeout("keepalive_timeout", keepalive_timeout)
        self.read_timeout = _check_timeout("read_timeout", read_timeout)
        self.write_timeout = _check_timeout("write_timeout", write_timeout)
        for t in ("header_timeout", "read_timeout", "write_timeout"):
            if getattr(self, t) <= 0:
                raise ValueError("%s must be > 0" % t)
        self.max_request_line = _check_limit("max_request_line", max_request_line)
        self.max_headers = _check_limit("max_headers", max_headers)
        self.max_header_size = _check_limit("max_header_size", max_header_size)
        self.max_head_bytes = _check_limit("max_head_bytes", max_head_bytes)
        self.max_connections = max_connections
        self._log_exception = log_exception or _default_log_exception
        self._on_request = on_request
        self._environ_hook = environ_hook
        addrs = address if isinstance(address, (list, tuple)) else [address]
        if not addrs:
            raise ValueError("no address to listen on")
        self.listeners = []
        try:
            for a in addrs:
                self.listeners.append(_listen(a, backlog))
        except BaseException:
            for ln in self.listeners:
                if ln is not address and ln not in addrs:
                    ln.close()
            raise
        self._environ = dict(environ or {})
        self._multiprocess = bool(multiprocess)
        self._mu = _sync.Mutex()
        self._conns = set()
        self._slots = _sync.Semaphore(max_connections) if max_connections else None
        self._stopping = False
        self._closed = False
        self._started = False
        self._quit = _chan()            # closed by shutdown/close: the janitor ends
        self._done = _chan()            # closed by close(): serving is over
        self._accepting = 0             # accept loops still running
        self._accept_done = _chan()     # closed when the last accept loop ends
        self._empty = None              # closed when the last connection ends after stopping
        self._tick = min(1.0, max(0.05, min(x for x in (
            self.header_timeout, self.keepalive_timeout or 1.0, self.read_timeout,
            self.write_timeout)) / 4))

    @property
    def addrs(self):
        return [ln.addr() for ln in self.listeners]

    @property
    def addr(self):
        return self.listeners[0].addr()

    def _env0(self, ln):
        a = ln.addr()
        env = {
            "SERVER_NAME": a.host if a.port is not None else str(a),
            "SERVER_PORT": str(a.port) if a.port is not None else "",
            "SCRIPT_NAME": "",
            "SERVER_SOFTWARE": SERVER_SOFTWARE,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.errors": _sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": self._multiprocess,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "wsgi.file_wrapper": FileWrapper,
        }
        env.update(self._environ)
        return env

    def start(self):
        """Serve in goroutines and return at once."""
        if self._started:
            return
        if self._closed:
            raise RuntimeError("the server was shut down")
        self._started = True
        self._accepting = len(self.listeners)
        for ln in self.listeners:
            _go(self._accept_loop, ln, self._env0(ln))
        _go(self._janitor)

    def serve(self):
        """Serve until the listeners close (``shutdown()`` or ``close()``
        from another goroutine, or closed by their owner; connections in
        flight go on, as Go's ``Serve`` returns) or, in the main thread,
        Ctrl-C (KeyboardInterrupt: everything is closed, then it propagates)."""
        self.start()
        try:
            _select(self._done.recv, self._accept_done.recv)
        except BaseException:
            self.close()
            raise

    # -- accepting --

    def _accept_loop(self, ln, env0):
        try:
            self._accept(ln, env0)
        finally:
            mu = self._mu
            mu.lock()
            self._accepting -= 1
            last = self._accepting == 0
            mu.unlock()
            if last:
                self._accept_done.close()

    def _accept(self, ln, env0):
        slots = self._slots
        backoff = 0.005
        while True:
            if slots is not None:
                slots.acquire()
            if self._stopping:
                if slots is not None:
                    slots.release()
                return
            try:
                conn = ln.accept()
            except _net.ErrClosed:
                if slots is not None:
                    slots.release()
                return
            except OSError as e:
                if slots is not None:
                    slots.release()
                if self._stopping:
                    return
                if e.errno not in (_errno.ECONNABORTED, _errno.EPROTO, _errno.EINTR):
                    _sys.stderr.write("pygmp.wsgi: accept: %s\n" % e)
                _gtime.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            backoff = 0.005
            _go(self._serve_conn, conn, env0)

    def _serve_conn(self, conn, env0):
        env = env0.copy()
        try:
            ra = conn.remote_addr()
        except OSError:
            ra = None
        if ra is not None and ra.port is not None:
            env["REMOTE_ADDR"] = ra.host
            env["REMOTE_PORT"] = str(ra.port)
        else:
            env["REMOTE_ADDR"] = ""
            env["REMOTE_PORT"] = ""
        c = _Connection(self, conn, env)
        mu = self._mu
        mu.lock()
        self._conns.add(c)
        mu.unlock()
        try:
            if not self._stopping:
                c.run()
        except Exception:   # noqa: BLE001 - a bug here must not end the process
            _sys.stderr.write("pygmp.wsgi: internal error on a connection:\n%s"
                              % _traceback.format_exc())
        finally:
            conn.close()
            mu.lock()
            self._conns.discard(c)
            last = not self._conns
            empty = self._empty
            mu.unlock()
            if self._slots is not None:
                self._slots.release()
            if last and empty is not None:
                try:
                    empty.close()
                except Exception:   # noqa: BLE001 - closed already
                    pass

    def _janitor(self):
        """Close connections whose deadline passed (idle keep-alive, slow
        request heads, stalled body reads and response writes)."""
        tk = _gtime.Ticker(self._tick)
        try:
            while True:
                i, _ = _select(tk.c.recv, self._quit.recv)
                if i == 1:
                    return
                now = _mono()
                mu = self._mu
                mu.lock()
                conns = list(self._conns)
                mu.unlock()
                for c in conns:
                    d = c.deadline
                    if d and d < now:
                        c.conn.close()
        finally:
            tk.stop()

    # -- stopping --

    def connections(self):
        """How many connections are open now."""
        return len(self._conns)

    def stop_accepting(self):
        """Begin a graceful stop and return at once: close the listeners and
        the idle connections; requests in flight go on, and their responses
        say ``Connection: close``.  (``shutdown`` then waits for them.)"""
        mu = self._mu
        mu.lock()
        first = not self._stopping
        self._stopping = True
        if self._empty is None:
            self._empty = _chan()
        conns = list(self._conns)
        mu.unlock()
        if first:
            for ln in self.listeners:
                ln.close()
        for c in conns:
            if c.idle:
                c.conn.close()
        return conns

    def shutdown(self, timeout=None):
        """Graceful stop: stop accepting, close idle connections, let requests
        in flight finish (their responses say ``Connection: close``), for at
        most ``timeout`` seconds (None: no limit); then close what is left.
        Returns True if every connection ended by itself."""
        if timeout is not None:
            timeout = _check_timeout("timeout", timeout)
        conns = self.stop_accepting()
        empty = self._empty
        mu = self._mu
        if conns:
            mu.lock()
            left = bool(self._conns)
            mu.unlock()
            if left:
                if timeout is None:
                    empty.recv()
                else:
                    _select(empty.recv, _gtime.after(timeout).recv)
        mu.lock()
        clean = not self._conns
        mu.unlock()
        self.close()
        return clean

    def close(self):
        """Stop at once: close the listeners and every connection."""
        mu = self._mu
        mu.lock()
        self._stopping = True
        was = self._closed
        self._closed = True
        conns = list(self._conns)
        mu.unlock()
        for ln in self.listeners:
            ln.close()
        for c in conns:
            c.conn.close()
        if not was:
            self._quit.close()
            self._done.close()


def serve(app, address, *, backlog=1024, max_connections=None, **options):
    """Serve the WSGI ``app`` on ``address`` (``"host:port"``,
    ``"unix:PATH"``, a ``pygmp.net.Listener`` or a list of them) with a
    goroutine per connection; blocks while it serves (run it with
    ``pygmp.go`` to do more).  ``options``: see ``Server``."""
    Server(app, address, backlog=backlog, max_connections=max_connections,
           **options).serve()


# -- python -m pygmp.wsgi -------------------------------------------------------

def load_app(spec):
    """``MODULE:APP`` (APP an attribute path, or ``NAME()`` to call a
    factory; ``MODULE`` alone means ``MODULE:application``) -> the callable."""
    import importlib
    if not isinstance(spec, str) or not spec:
        raise ValueError("the application must be given as MODULE:APP")
    mod, _, attr = spec.partition(":")
    attr = attr or "application"
    if not mod:
        raise ValueError("%r: missing the module in MODULE:APP" % spec)
    if "" not in _sys.path and _os.getcwd() not in _sys.path:
        _sys.path.insert(0, _os.getcwd())
    m = importlib.import_module(mod)
    call = attr.endswith("()")
    if call:
        attr = attr[:-2]
    obj = m
    for part in attr.split("."):
        if not part.isidentifier():
            raise ValueError("%r: %r is not an attribute name" % (spec, attr))
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError("%r: module %r has no attribute %r" % (spec, mod, attr)) from None
    if call:
        obj = obj()
    if not callable(obj):
        raise ValueError("%r: %r is not callable" % (spec, obj))
    return obj


def main(argv=None):
    import argparse
    import signal
    from . import signal as gsignal
    from .runtime import gomaxprocs

    ap = argparse.ArgumentParser(
        prog="python -m pygmp.wsgi",
        description="Serve a WSGI application with pygmp: a goroutine per connection.")
    ap.add_argument("app", metavar="MODULE:APP", help="the WSGI application, e.g. myapp:app")
    ap.add_argument("-b", "--bind", action="append", metavar="ADDRESS",
                    help="HOST:PORT or unix:PATH to listen on (repeatable; default "
                         "127.0.0.1:8000)")
    ap.add_argument("--gomaxprocs", type=int, default=0, metavar="N",
                    help="number of Ps (worker threads running goroutines); default: "
                         "$GOMAXPROCS or the CPUs available")
    ap.add_argument("--backlog", type=int, default=1024, help="listen queue length")
    ap.add_argument("--max-connections", type=int, default=None, metavar="N",
                    help="open connections at most (default: no limit)")
    ap.add_argument("--keepalive-timeout", type=float, default=DEFAULTS["keepalive_timeout"],
                    metavar="S", help="close idle keep-alive connections after S seconds "
                                      "(0: no keep-alive)")
    ap.add_argument("--header-timeout", type=float, default=DEFAULTS["header_timeout"],
                    metavar="S", help="a request head must arrive within S seconds")
    ap.add_argument("--read-timeout", type=float, default=DEFAULTS["read_timeout"],
                    metavar="S", help="each read of a request body within S seconds")
    ap.add_argument("--write-timeout", type=float, default=DEFAULTS["write_timeout"],
                    metavar="S", help="each write of a response within S seconds")
    ap.add_argument("--graceful-timeout", type=float, default=10.0, metavar="S",
                    help="on SIGTERM/Ctrl-C, let requests in flight finish for at most "
                         "S seconds (a second signal stops at once)")
    args = ap.parse_args(argv)
    if args.gomaxprocs < 0:
        ap.error("--gomaxprocs must be >= 1")
    try:
        app = load_app(args.app)
    except (ValueError, ImportError) as e:
        print("pygmp.wsgi: cannot load %s: %s" % (args.app, e), file=_sys.stderr)
        return 1
    if args.gomaxprocs:
        gomaxprocs(args.gomaxprocs)
    sigs = _chan(4)
    gsignal.notify(sigs, signal.SIGINT, signal.SIGTERM)
    try:
        srv = Server(app, args.bind or ["127.0.0.1:8000"], backlog=args.backlog,
                     max_connections=args.max_connections,
                     keepalive_timeout=args.keepalive_timeout,
                     header_timeout=args.header_timeout, read_timeout=args.read_timeout,
                     write_timeout=args.write_timeout)
    except (OSError, ValueError, TypeError) as e:
        print("pygmp.wsgi: %s" % e, file=_sys.stderr)
        return 1
    srv.start()
    for a in srv.addrs:
        print("listening on %s" % a, flush=True)
    sig = sigs.recv()
    print("pygmp.wsgi: %s: stopping (requests in flight have %gs to finish)"
          % (signal.Signals(sig).name, args.graceful_timeout), file=_sys.stderr, flush=True)
    done = _chan()
    _go(lambda: (srv.shutdown(args.graceful_timeout), done.close()))
    _select(done.recv, sigs.recv)
    srv.close()
    return 0


if __name__ == "__main__":
    from pygmp.wsgi import main as _main
    _sys.exit(_main())

"""One WSGI connection for pygmp.wsgi: read and parse requests with
httptools, build each environ, run the application, write its response
(``start_response``, chunked output, ``FileWrapper``), and keep limits and
timeouts against slow or hostile clients.  ``pygmp.wsgi.Server`` owns the
listeners and runs one ``_Connection`` per accepted conn in its goroutine.
"""

import sys as _sys
from collections import deque as _deque
from urllib.parse import unquote_to_bytes as _unquote_to_bytes

import httptools as _httptools

from . import net as _net

from ._wsgibody import (DRAIN_LIMIT, LINGER_BYTES, LINGER_TIME, READ_SIZE, BadRequest,
                        ClientDisconnected, _ClientGone, _HeadError, _HKEYS, _Input,
                        _METHODS, _PROTOCOLS, _REASONS, _Request, _date, _error_bytes,
                        _hkey, _mono)


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


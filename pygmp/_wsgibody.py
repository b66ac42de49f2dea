"""The HTTP parts of pygmp.wsgi that are not the connection's loop: limits and
timeouts (``DEFAULTS``), the errors, the parsed request, ``wsgi.input`` (a
request body: content-length or chunked, ``100-continue``, the read timeout)
and ``FileWrapper``.  The connection (``_wsgiconn.py``) drives them.
"""

import time as _time
from email.utils import formatdate as _formatdate


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


"""pygmp.debug: an HTTP debug endpoint, as Go's net/http/pprof.

    addr = pygmp.debug.serve("127.0.0.1:6060")   # returns "127.0.0.1:6060"
    # curl http://127.0.0.1:6060/metrics           (Prometheus text format)
    # curl http://127.0.0.1:6060/debug/goroutines  (every goroutine's stack)

The endpoint runs in goroutines of this process (one per connection) and
answers each request with ``Connection: close``: it is for people and
scrapers, not for load.  Bind it to a loopback address unless you mean to
expose stacks and metrics to the network.
"""

import time as _time

from . import metrics as _metrics
from . import net as _net
from .runtime import proc as _proc
from .runtime.proc import go as _go
from .runtime.stack import format_all as _format_all

__all__ = ["serve"]

MAX_REQUEST = 8192          # request line and headers, bytes
READ_TIMEOUT = 5.0          # seconds for a client to send its request

_INDEX = (b"pygmp debug endpoint\n\n"
          b"/metrics            every runtime metric, Prometheus text format\n"
          b"/debug/goroutines   every goroutine's stack, Go's format\n")


def serve(address="127.0.0.1:0"):
    """Listen on TCP ``address`` (``"host:port"``; port 0 picks a free one),
    serve ``/metrics`` and ``/debug/goroutines`` from goroutines, and return the
    bound ``"host:port"``.  Errors binding raise ``OSError`` at once."""
    if not isinstance(address, str):
        raise TypeError("debug.serve: address must be a str, not %s" % type(address).__name__)
    ln = _net.listen("tcp", address)
    _go(_accept_loop, ln)
    return str(ln.addr())


def _accept_loop(ln):
    while True:
        try:
            c = ln.accept()
        except _net.ErrClosed:
            return
        except OSError:
            _time.sleep(0.005)   # transient (EMFILE is backed off inside accept)
            continue
        _go(_handle, c)


def _handle(c):
    try:
        c.set_read_deadline(_time.time() + READ_TIMEOUT)
        req = b""
        while b"\r\n\r\n" not in req and b"\n\n" not in req:
            if len(req) > MAX_REQUEST:
                _reply(c, 431, "Request Header Fields Too Large", b"request too large\n")
                return
            data = c.read(4096)
            if not data:
                return
            req += data
        line = req.split(b"\n", 1)[0].rstrip(b"\r").split()
        if len(line) != 3 or not line[2].startswith(b"HTTP/"):
            _reply(c, 400, "Bad Request", b"bad request line\n")
            return
        method, target = line[0], line[1].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            _reply(c, 405, "Method Not Allowed", b"GET or HEAD only\n", head=False,
                   extra=b"Allow: GET, HEAD\r\n")
            return
        head = method == b"HEAD"
        if target == b"/metrics":
            body = _metrics.prometheus_text().encode()
            _reply(c, 200, "OK", body, head, ctype=b"text/plain; version=0.0.4; charset=utf-8")
        elif target == b"/debug/goroutines":
            body = _format_all(_proc._sched, 2).encode("utf-8", "replace") + b"\n"
            _reply(c, 200, "OK", body, head)
        elif target == b"/":
            _reply(c, 200, "OK", _INDEX, head)
        else:
            _reply(c, 404, "Not Found", b"not found\n", head)
    except (OSError, _net.TimeoutError):
        pass                     # the client went away or was too slow
    finally:
        c.close()


def _reply(c, status, reason, body, head=False, ctype=b"text/plain; charset=utf-8", extra=b""):
    hdr = (b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
           b"Connection: close\r\n%s\r\n" % (status, reason.encode(), ctype, len(body), extra))
    c.write(hdr if head else hdr + body)

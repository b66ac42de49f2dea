"""An HTTP/1.1 server with keep-alive: one goroutine per connection, parsing
with h11 (no hand-written HTTP parser).

    python examples/http_server.py [--gomaxprocs N] [ADDRESS]

``GET /`` answers a small fixed page; ``GET /stats`` answers JSON with
GOMAXPROCS, the number of goroutines and the process's OS threads (psutil).
ADDRESS is HOST:PORT (default 127.0.0.1:8080; port 0 picks a free one).  The
first line on stdout is ``listening on HOST:PORT``.  Ctrl-C (SIGINT) or
SIGTERM closes the listener and exits with status 0.

Responses to pipelined requests are batched: they are written when the
parser needs more input, so a burst of requests costs one write.  A request
h11 cannot parse gets a 400 (or 431 for oversized headers) and the
connection is closed.
"""

import json
import sys
from http import HTTPStatus

import h11
import psutil

from pygmp.runtime import gomaxprocs, num_goroutine

from _serve import parser, serve

LOAD = """
Try it:
  curl -i http://127.0.0.1:8080/
  curl http://127.0.0.1:8080/stats      # GOMAXPROCS, goroutines, OS threads
Load it with wrk (apt-get install wrk):
  wrk -t2 -c100 -d10s --latency http://127.0.0.1:8080/
"""

PAGE = (b"<!doctype html>\n<html><head><title>pygmp</title></head>\n"
        b"<body><h1>Hello from pygmp</h1>"
        b"<p>Served by a goroutine.</p></body></html>\n")

_proc = psutil.Process()
_REASON = {s.value: s.phrase.encode() for s in HTTPStatus}


def stats():
    return {
        "gomaxprocs": gomaxprocs(),
        "goroutines": num_goroutine(),
        "threads": _proc.num_threads(),
    }


def respond(method, target):
    """(status, content type, body) for a request."""
    path = target.split(b"?", 1)[0]
    if method not in (b"GET", b"HEAD"):
        return 405, b"text/plain", b"method not allowed\n"
    if path == b"/":
        return 200, b"text/html; charset=utf-8", PAGE
    if path == b"/stats":
        body = json.dumps(stats()).encode() + b"\n"
        return 200, b"application/json", body
    return 404, b"text/plain", b"not found\n"


def send_response(h, out, status, ctype, body, head=False, close=False):
    """Append a whole response to ``out`` (bytes still to write)."""
    headers = [(b"content-type", ctype),
               (b"content-length", b"%d" % len(body)),
               (b"server", b"pygmp")]
    if status == 405:
        headers.append((b"allow", b"GET, HEAD"))
    if close:
        headers.append((b"connection", b"close"))
    out.append(h.send(h11.Response(status_code=status, headers=headers,
                                   reason=_REASON.get(status, b""))))
    if body and not head:
        out.append(h.send(h11.Data(data=body)))
    out.append(h.send(h11.EndOfMessage()))


def handle(conn):
    h = h11.Connection(h11.SERVER)
    out = []                        # response bytes not yet written
    req = None
    while True:
        try:
            ev = h.next_event()
        except h11.RemoteProtocolError as e:
            if h.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                send_response(h, out, e.error_status_hint, b"text/plain",
                              ("bad request: %s\n" % e).encode(), close=True)
            break
        if ev is h11.NEED_DATA:
            if out:
                conn.write(b"".join(out))
                out.clear()
            h.receive_data(conn.read(65536))    # b"" means EOF
            continue
        if isinstance(ev, h11.Request):
            req = ev
        elif isinstance(ev, h11.EndOfMessage):
            status, ctype, body = respond(req.method, req.target)
            send_response(h, out, status, ctype, body, head=req.method == b"HEAD")
            req = None
            if h.our_state is h11.MUST_CLOSE:
                break
            h.start_next_cycle()
        elif isinstance(ev, h11.ConnectionClosed) or ev is h11.PAUSED:
            break
        # h11.Data (a request body) is read and ignored
    if out:
        conn.write(b"".join(out))


def main(argv=None):
    args = parser(__doc__, "127.0.0.1:8080", LOAD).parse_args(argv)
    return serve("http_server", args, handle)


if __name__ == "__main__":
    sys.exit(main())

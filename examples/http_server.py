"""An HTTP/1.1 server with keep-alive: one goroutine per connection, parsing
with httptools (llhttp, the parser Node.js and uvicorn use; no hand-written
HTTP parser).

    python examples/http_server.py [--gomaxprocs N] [--debug ADDRESS] [ADDRESS]

``GET /`` answers a small fixed page; ``GET /stats`` answers JSON with
GOMAXPROCS, the number of goroutines and the process's OS threads (psutil).
ADDRESS is HOST:PORT (default 127.0.0.1:8080; port 0 picks a free one).  The
first line on stdout is ``listening on HOST:PORT``.  ``--debug ADDRESS``
also serves the runtime's debug endpoint there (``/metrics`` for Prometheus,
``/debug/goroutines``) and prints ``debug on HOST:PORT`` next.  Ctrl-C
(SIGINT) or SIGTERM closes the listener and exits with status 0.

Responses to pipelined requests are batched: every request completed by one
read is answered by one write.  A request the parser rejects gets a 400, a
request line plus headers over 16 KiB a 431, and the connection is closed.
"""

import json
import sys
from http import HTTPStatus

import httptools
import psutil

from pygmp import debug
from pygmp.runtime import gomaxprocs, num_goroutine

from _serve import parser, serve

LOAD = """
Try it:
  curl -i http://127.0.0.1:8080/
  curl http://127.0.0.1:8080/stats      # GOMAXPROCS, goroutines, OS threads
Load it with wrk (apt-get install wrk):
  wrk -t2 -c100 -d10s --latency http://127.0.0.1:8080/
With --debug 127.0.0.1:6060:
  curl http://127.0.0.1:6060/metrics    # Prometheus text
  curl http://127.0.0.1:6060/debug/goroutines
"""

PAGE = (b"<!doctype html>\n<html><head><title>pygmp</title></head>\n"
        b"<body><h1>Hello from pygmp</h1>"
        b"<p>Served by a goroutine.</p></body></html>\n")

MAX_HEAD = 16 * 1024        # request line + headers, as h11's default limit

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


def response(status, ctype, body, head=False, close=False):
    """A whole response as bytes."""
    lines = [b"HTTP/1.1 %d %s" % (status, _REASON.get(status, b"")),
             b"content-type: " + ctype,
             b"content-length: %d" % len(body),
             b"server: pygmp"]
    if status == 405:
        lines.append(b"allow: GET, HEAD")
    if close:
        lines.append(b"connection: close")
    lines.append(b"\r\n")
    out = b"\r\n".join(lines)
    return out if head else out + body


class Requests:
    """httptools' callbacks for one connection: collects each complete request
    as (method, target, keep_alive).  A body is read and ignored."""

    __slots__ = ("parser", "url", "in_head", "done")

    def __init__(self):
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.in_head = False        # between the first byte and the blank line
        self.done = []

    def on_message_begin(self):
        self.url = b""
        self.in_head = True

    def on_url(self, part):
        self.url += part

    def on_headers_complete(self):
        self.in_head = False

    def on_message_complete(self):
        p = self.parser
        self.done.append((p.get_method(), self.url, p.should_keep_alive()))


def handle(conn):
    reqs = Requests()
    head_bytes = 0                  # bytes read while a request's head is open
    while True:
        data = conn.read(65536)
        if not data:
            return
        try:
            reqs.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            error = None            # answer what came before, then close
        except httptools.HttpParserError as e:
            error = (400, ("bad request: %s\n" % e).encode())
        else:
            error = None
            head_bytes = head_bytes + len(data) if reqs.in_head else 0
            if head_bytes > MAX_HEAD:
                error = (431, b"request header fields too large\n")
            elif not reqs.done:
                continue
        out = []
        keep = True
        for method, target, keep in reqs.done:
            status, ctype, body = respond(method, target)
            out.append(response(status, ctype, body, head=method == b"HEAD",
                                close=not keep))
            if not keep:
                break
        reqs.done.clear()
        if error is not None and keep:
            out.append(response(error[0], b"text/plain", error[1], close=True))
        if out:
            conn.write(b"".join(out))
        if error is not None or not keep or reqs.parser.should_upgrade():
            return


def main(argv=None):
    ap = parser(__doc__, "127.0.0.1:8080", LOAD)
    ap.add_argument("--debug", metavar="ADDRESS",
                    help="also serve /metrics and /debug/goroutines on ADDRESS")
    args = ap.parse_args(argv)
    banner = []
    if args.debug:
        try:
            banner.append("debug on %s" % debug.serve(args.debug))
        except (OSError, ValueError) as e:
            print("http_server: cannot serve debug on %s: %s" % (args.debug, e),
                  file=sys.stderr)
            return 1
    return serve("http_server", args, handle, banner=banner)


if __name__ == "__main__":
    sys.exit(main())

"""An HTTP/1.1 server with keep-alive: one goroutine per connection, parsing
with h11 (no hand-written HTTP parser).

    python examples/http_server.py [--gomaxprocs N] [ADDRESS]

``GET /`` answers a small fixed page; ``GET /stats`` answers JSON with
GOMAXPROCS, the number of goroutines and the process's OS threads (psutil).
ADDRESS is Go-style (default ``127.0.0.1:8080``; ``127.0.0.1:0`` picks a free
port).  The first line on stdout is ``listening on HOST:PORT``.  Ctrl-C closes
the listener and exits with status 0.

Responses to pipelined requests are batched: they are written when the
parser needs more input, so a burst of requests costs one write.
"""

import argparse
import json
import sys

import h11
import psutil

from pygmp import chan, go, net
from pygmp.runtime import gomaxprocs, num_goroutine

PAGE = (b"<!doctype html>\n<html><head><title>pygmp</title></head>\n"
        b"<body><h1>Hello from pygmp</h1>"
        b"<p>Served by a goroutine.</p></body></html>\n")

_proc = psutil.Process()


def addr_str(a):
    """A listener/conn address as ``host:port`` (Go's String())."""
    if isinstance(a, str):
        return a
    if isinstance(a, tuple) and len(a) >= 2:
        host, port = a[0], a[1]
        return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)
    return str(a)


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


def send_simple(h, out, status, body, close=False):
    headers = [(b"content-type", b"text/plain"),
               (b"content-length", b"%d" % len(body)),
               (b"server", b"pygmp")]
    if close:
        headers.append((b"connection", b"close"))
    out.append(h.send(h11.Response(status_code=status, headers=headers)))
    if body:
        out.append(h.send(h11.Data(data=body)))
    out.append(h.send(h11.EndOfMessage()))


def handle(conn):
    h = h11.Connection(h11.SERVER)
    out = []                        # response bytes not yet written
    req = None
    try:
        while True:
            try:
                ev = h.next_event()
            except h11.RemoteProtocolError as e:
                if h.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    send_simple(h, out, e.error_status_hint,
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
                headers = [(b"content-type", ctype),
                           (b"content-length", b"%d" % len(body)),
                           (b"server", b"pygmp")]
                out.append(h.send(h11.Response(status_code=status, headers=headers)))
                if req.method != b"HEAD":
                    out.append(h.send(h11.Data(data=body)))
                out.append(h.send(h11.EndOfMessage()))
                req = None
                if h.our_state is h11.MUST_CLOSE:
                    break
                h.start_next_cycle()
            elif isinstance(ev, h11.ConnectionClosed) or ev is h11.PAUSED:
                break
            # h11.Data (a request body) is read and ignored
        if out:
            conn.write(b"".join(out))
    except OSError:                 # reset, broken pipe, net.ErrClosed
        pass
    finally:
        conn.close()


def serve(ln, stopped):
    try:
        while True:
            try:
                conn = ln.accept()
            except net.ErrClosed:
                return
            except OSError as e:
                print("accept: %s" % e, file=sys.stderr)
                continue
            go(handle, conn)
    finally:
        stopped.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("address", nargs="?", default="127.0.0.1:8080")
    ap.add_argument("--gomaxprocs", type=int, default=0,
                    help="number of Ps (default: the runtime's default)")
    args = ap.parse_args(argv)
    if args.gomaxprocs > 0:
        gomaxprocs(args.gomaxprocs)
    ln = net.listen("tcp", args.address)
    print("listening on %s" % addr_str(ln.addr()), flush=True)
    stopped = chan()
    go(serve, ln, stopped)
    try:
        stopped.recv()
    except KeyboardInterrupt:
        ln.close()
        print("http_server: interrupted, listener closed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A TCP echo server: one goroutine per connection.

    python examples/echo_server.py [--gomaxprocs N] [ADDRESS]

ADDRESS is Go-style (default ``127.0.0.1:7000``; ``127.0.0.1:0`` picks a free
port).  The first line on stdout is ``listening on HOST:PORT``.  Ctrl-C closes
the listener and exits with status 0.
"""

import argparse
import sys

from pygmp import chan, go, net
from pygmp.runtime import gomaxprocs


def addr_str(a):
    """A listener/conn address as ``host:port`` (Go's String())."""
    if isinstance(a, str):
        return a
    if isinstance(a, tuple) and len(a) >= 2:
        host, port = a[0], a[1]
        return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)
    return str(a)


def handle(conn):
    """Echo everything back until the peer closes (or the conn breaks)."""
    try:
        while True:
            data = conn.read(65536)
            if not data:
                return
            conn.write(data)
    except OSError:                 # reset, broken pipe, net.ErrClosed, timeouts
        pass
    finally:
        conn.close()


def serve(ln, stopped):
    """Accept until the listener is closed; a goroutine per connection."""
    try:
        while True:
            try:
                conn = ln.accept()
            except net.ErrClosed:
                return
            except OSError as e:    # e.g. ECONNABORTED: keep serving
                print("accept: %s" % e, file=sys.stderr)
                continue
            go(handle, conn)
    finally:
        stopped.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("address", nargs="?", default="127.0.0.1:7000")
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
        print("echo_server: interrupted, listener closed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

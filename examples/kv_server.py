"""A Redis-protocol (RESP2) key-value server: one goroutine per connection.

    python examples/kv_server.py [--gomaxprocs N] [ADDRESS]

Commands: PING, ECHO, GET, SET (EX/PX/NX/XX/KEEPTTL), DEL, EXISTS, INCR, MGET,
MSET, DBSIZE, FLUSHALL, plus QUIT and a stub CONFIG GET (for redis-benchmark).
Requests are parsed with ``hiredis.Reader``; every complete command in the read
buffer is answered and the replies go out in one write (pipelining).  The
store and the command set live in ``kv_store.py`` beside this file (no pygmp
there, so the benchmark's gevent/asyncio peers share them).  An unknown
command gets an error reply; malformed input gets ``-ERR Protocol error`` and
the connection is closed.

The dict is shared by every goroutine on every P: one ``pygmp.sync.Mutex``
guards it, taken once per batch of pipelined commands.  Expiry (EX/PX) is
checked lazily on access against the monotonic clock.

ADDRESS is Go-style (default ``127.0.0.1:6380``; ``127.0.0.1:0`` picks a free
port).  The first line on stdout is ``listening on HOST:PORT``.  Ctrl-C closes
the listener and exits with status 0.
"""

import argparse
import sys

from pygmp import chan, go, net
from pygmp.runtime import gomaxprocs
from pygmp.sync import Mutex

from kv_store import Session, Store


def handle(conn, st):
    sess = Session(st)
    mu = st.mu
    try:
        while True:
            data = conn.read(65536)
            if not data:
                return
            # Every complete command in the buffer, under one lock acquisition.
            mu.lock()
            try:
                out, close = sess.process(data)
            finally:
                mu.unlock()
            if out:
                conn.write(out)
            if close:
                return
    except OSError:                 # reset, broken pipe, net.ErrClosed
        pass
    finally:
        conn.close()


def serve(ln, st, stopped):
    try:
        while True:
            try:
                conn = ln.accept()
            except net.ErrClosed:
                return
            except OSError as e:
                print("accept: %s" % e, file=sys.stderr)
                continue
            go(handle, conn, st)
    finally:
        stopped.close()


def addr_str(a):
    """A listener/conn address as ``host:port`` (Go's String())."""
    if isinstance(a, str):
        return a
    if isinstance(a, tuple) and len(a) >= 2:
        host, port = a[0], a[1]
        return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)
    return str(a)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("address", nargs="?", default="127.0.0.1:6380")
    ap.add_argument("--gomaxprocs", type=int, default=0,
                    help="number of Ps (default: the runtime's default)")
    args = ap.parse_args(argv)
    if args.gomaxprocs > 0:
        gomaxprocs(args.gomaxprocs)
    ln = net.listen("tcp", args.address)
    print("listening on %s" % addr_str(ln.addr()), flush=True)
    st = Store(Mutex())
    stopped = chan()
    go(serve, ln, st, stopped)
    try:
        stopped.recv()
    except KeyboardInterrupt:
        ln.close()
        print("kv_server: interrupted, listener closed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the example servers share: the command line, the listener, the
accept loop, one goroutine per connection with its failures contained, a log
line when the process runs out of file descriptors, and a clean stop on
SIGINT or SIGTERM.

    from _serve import parser, serve

    def handle(conn):               # one goroutine per connection
        ...                         # return (or raise) to close it

    args = parser(__doc__, "127.0.0.1:7000", "load it with: ...").parse_args()
    sys.exit(serve("my_server", args, handle))

A connection's goroutine never takes the process down: ``OSError`` (a reset,
a broken pipe, a deadline, the listener closing) just closes the connection;
any other exception is logged once, with its traceback, and closes that
connection only.
"""

import argparse
import os
import resource
import signal
import sys
import time
import traceback

from pygmp import chan, go, metrics, net
from pygmp.runtime import gomaxprocs
from pygmp.time import Ticker, sleep

# Cumulative count of the runtime's accept() back-offs on EMFILE/ENFILE.
ACCEPT_BACKOFF = "/pygmp/netpoll/accept-backoff:events"


def log(prog, msg):
    """One line (or one traceback) on stderr, in a single write."""
    sys.stderr.write("%s: %s\n" % (prog, msg))
    sys.stderr.flush()


def parser(doc, address, epilog):
    """The common command line: ``[--gomaxprocs N] [ADDRESS]`` and ``--help``
    showing ``doc`` and ``epilog`` (how to load the server)."""
    ap = argparse.ArgumentParser(
        description=doc.strip(), epilog=epilog.strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("address", nargs="?", default=address,
                    help="HOST:PORT to listen on (default %(default)s; "
                         "port 0 picks a free one)")
    ap.add_argument("--gomaxprocs", type=int, default=0, metavar="N",
                    help="number of Ps, i.e. worker threads running goroutines "
                         "(default: the GOMAXPROCS variable, else the CPUs usable)")
    return ap


def serve(prog, args, handler, *hargs, banner=()):
    """Listen on ``args.address``, print ``listening on HOST:PORT`` (then each
    line of ``banner``), run
    ``handler(conn, *hargs)`` in a goroutine per connection until SIGINT or
    SIGTERM; then close the listener, log one line and return 0 (1 if the
    address cannot be listened on).  Connections still open are not waited
    for: the process exits with them, as a Go server without Shutdown does."""
    if args.gomaxprocs > 0:
        gomaxprocs(args.gomaxprocs)
    try:
        ln = net.listen("tcp", args.address)
    except (OSError, ValueError) as e:
        log(prog, "cannot listen on %s: %s" % (args.address, e))
        return 1
    got = []
    on_signal = _interrupt(got)
    prev = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        stopped = chan()
        go(_accept_loop, prog, ln, handler, hargs, stopped)
        go(_watch_accept_backoff, prog)
        print("listening on %s" % ln.addr(), flush=True)
        for line in banner:
            print(line, flush=True)
        stopped.recv()              # the accept loop ends only when ln closes
    except KeyboardInterrupt:
        for sig, h in prev.items():  # a second signal acts as it did before
            signal.signal(sig, h)
        ln.close()
        name = signal.Signals(got[0]).name if got else "SIGINT"
        log(prog, "%s received, listener closed, exiting" % name)
    return 0


def _interrupt(got):
    """A handler that turns SIGINT or SIGTERM into KeyboardInterrupt in the
    main goroutine, wherever it is parked (pygmp raises Ctrl-C's there), and
    remembers which signal it was.  (``pygmp.signal.notify`` would do too, but
    it runs a relay thread: this keeps the server at GOMAXPROCS + 2 threads.)"""
    def handler(signum, frame):
        got.append(signum)
        raise KeyboardInterrupt
    return handler


def _accept_loop(prog, ln, handler, hargs, stopped):
    """Accept until the listener is closed; a goroutine per connection.  (On
    EMFILE/ENFILE the runtime's accept() itself waits and retries: see
    ``_watch_accept_backoff``.)  Any other accept error is logged once per
    burst and retried after a back-off of 5 ms doubling to 1 s, as Go's
    net/http server does."""
    delay = 0.0
    try:
        while True:
            try:
                conn = ln.accept()
            except net.ErrClosed:
                return
            except OSError as e:
                if not delay:
                    log(prog, "accept: %s; retrying with back-off" % e)
                delay = min(delay * 2, 1.0) if delay else 0.005
                sleep(delay)
                continue
            delay = 0.0
            go(_conn_main, prog, handler, conn, hargs)
    finally:
        stopped.close()


def _conn_main(prog, handler, conn, hargs):
    try:
        handler(conn, *hargs)
    except OSError:
        pass            # reset, broken pipe, deadline, net.ErrClosed: the peer's doing
    except Exception:   # noqa: BLE001 - a bug or a resource limit: this conn only
        try:
            peer = conn.remote_addr()
        except OSError:
            peer = "?"
        log(prog, "connection from %s closed after an unexpected error:\n%s"
            % (peer, traceback.format_exc().rstrip()))
    finally:
        conn.close()


def _fd_trouble():
    """Why accept() is failing, as far as can be told from here."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    try:
        os.close(os.open(os.devnull, os.O_RDONLY))
    except OSError as e:
        return "%s (open files limit %d)" % (e.strerror or e, soft)
    return ("out of file descriptors or kernel memory "
            "(EMFILE, ENFILE, ENOBUFS or ENOMEM; open files limit %d)" % soft)


def _watch_accept_backoff(prog, every=0.5, quiet=2.0):
    """When the process runs out of file descriptors, accept() backs off
    inside the runtime (5 ms doubling to 1 s) and the pending connections
    wait in the kernel's backlog.  Make that visible: one line when a burst of
    back-offs starts, one when none has happened for ``quiet`` seconds."""
    last = metrics.read([ACCEPT_BACKOFF])[ACCEPT_BACKOFF]
    burst = None                # (count at start, start time, last back-off time)
    for _ in Ticker(every).c:
        n = metrics.read([ACCEPT_BACKOFF])[ACCEPT_BACKOFF]
        now = time.monotonic()
        if n != last:
            if burst is None:
                log(prog, "accept: %s; retrying with back-off (5 ms doubling to 1 s)"
                    % _fd_trouble())
                burst = (last, now, now)
            else:
                burst = (burst[0], burst[1], now)
            last = n
        elif burst is not None and now - burst[2] >= quiet:
            log(prog, "accept: file descriptors available again after %d back-offs "
                "in %.1f s" % (n - burst[0], burst[2] - burst[1]))
            burst = None

"""10,000 goroutines, a handful of OS threads.

    python examples/thread_count.py [--gomaxprocs N] [-n 10000] [--seconds 3]

Half of the goroutines block receiving on a channel, the other half sleep in a
loop (``pygmp.time.sleep``).  The main goroutine prints the number of
goroutines and the process's OS threads (psutil) every ``--interval`` seconds,
then closes the channel and waits for them all.  The last line compares the
peak thread count with GOMAXPROCS + 2 (the main thread and sysmon); with
``--check`` the exit status is 1 if the peak exceeds GOMAXPROCS + ``--slack``.
"""

import argparse
import sys
import time as stdtime

import psutil

from pygmp import chan, default, go, select
from pygmp import time as ptime
from pygmp.runtime import gomaxprocs, num_goroutine
from pygmp.sync import WaitGroup


def blocker(gate, wg):
    try:
        gate.recv()             # parked until the gate is closed
    finally:
        wg.done()


def sleeper(gate, wg, period):
    try:
        while not closed(gate):
            ptime.sleep(period)     # parked on a timer, not on a thread
    finally:
        wg.done()


def closed(gate):
    """Non-blocking: has the gate been closed?"""
    i, _ = select(gate.recv_, default)
    return i == 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gomaxprocs", type=int, default=0)
    ap.add_argument("-n", type=int, default=10_000, help="goroutines (default 10000)")
    ap.add_argument("--seconds", type=float, default=3.0, help="how long to watch")
    ap.add_argument("--interval", type=float, default=0.5)
    ap.add_argument("--check", action="store_true",
                    help="exit 1 if the peak exceeds GOMAXPROCS + SLACK threads")
    ap.add_argument("--slack", type=int, default=2)
    args = ap.parse_args(argv)
    if args.gomaxprocs > 0:
        gomaxprocs(args.gomaxprocs)
    procs = gomaxprocs()
    me = psutil.Process()
    print("GOMAXPROCS=%d, OS threads before: %d" % (procs, me.num_threads()), flush=True)

    gate = chan()
    wg = WaitGroup()
    wg.add(args.n)
    t0 = stdtime.monotonic()
    for i in range(args.n):
        if i % 2:
            go(blocker, gate, wg)
        else:
            go(sleeper, gate, wg, 0.05 + (i % 7) * 0.01)
    print("spawned %d goroutines in %.0f ms" % (args.n, (stdtime.monotonic() - t0) * 1e3),
          flush=True)

    peak = 0
    end = stdtime.monotonic() + args.seconds
    while True:
        th = me.num_threads()
        peak = max(peak, th)
        print("t=%4.1fs goroutines=%6d OS threads=%d"
              % (stdtime.monotonic() - t0, num_goroutine(), th), flush=True)
        if stdtime.monotonic() >= end:
            break
        ptime.sleep(args.interval)

    gate.close()
    wg.wait()
    th = me.num_threads()
    peak = max(peak, th)
    print("all done: goroutines=%d OS threads=%d" % (num_goroutine(), th), flush=True)
    limit = procs + args.slack
    ok = peak <= limit
    print("peak OS threads %d %s GOMAXPROCS + %d = %d"
          % (peak, "<=" if ok else ">", args.slack, limit), flush=True)
    return 1 if (args.check and not ok) else 0


if __name__ == "__main__":
    sys.exit(main())

"""Count Python<->C crossings per socket read (the figure in pygmp/HACKING.md).

    python bench/crossings.py [--rounds N]

Two goroutines on one P (GOMAXPROCS=1) ping-pong one byte over a socketpair
wrapped in pygmp Conns: each round trip is two reads that park on the
netpoller (EAGAIN, woken by the P's poller) and two writes that do not.  The
worker thread runs under ``sys.setprofile``: every ``c_call`` event is a call
from Python into C (builtins included), every ``call`` event a Python function
entered, either from Python or from C (a callback: a goroutine body, the
scheduler's Python side).  Printed per round trip and per read, by name.
"""

import argparse
import collections
import os
import socket
import sys
import threading

os.environ["GOMAXPROCS"] = "1"

from pygmp import chan, go, net  # noqa: E402
from pygmp.runtime import netfd  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=20000)
    args = ap.parse_args()
    n = args.rounds
    a, b = socket.socketpair()
    take = getattr(netfd, "fd_from", netfd.FD)   # (older trees: FD(sock) took the socket)
    ca = net.Conn(take(a), "unix")
    cb = net.Conn(take(b), "unix")
    counts = collections.Counter()
    on = [False]

    def prof(frame, event, arg):
        if on[0] and threading.current_thread() is not threading.main_thread():
            if event == "c_call":
                counts["py->C " + getattr(arg, "__qualname__", getattr(arg, "__name__", "?"))] += 1
            elif event == "call":
                counts["py " + frame.f_code.co_name] += 1

    done = chan(1)

    def echo():
        for _ in range(n + 100):
            ca.write(ca.read(1))

    def ping():
        for i in range(n + 100):
            if i == 100:
                on[0] = True            # warmed up: count from here
            cb.write(b"x")
            cb.read(1)
        on[0] = False
        done.send(True)

    threading.setprofile(prof)       # applies to the worker thread started next
    go(echo)
    go(ping)
    done.recv()
    threading.setprofile(None)
    total_c = sum(v for k, v in counts.items() if k.startswith("py->C"))
    total_py = sum(v for k, v in counts.items() if k.startswith("py "))
    print("per round trip (2 reads that park, 2 writes): %.2f calls into C, %.2f Python "
          "function entries" % (total_c / n, total_py / n))
    print("per read: %.2f calls into C, %.2f Python function entries" % (total_c / n / 2, total_py / n / 2))
    for k, v in counts.most_common():
        if v >= n // 10:
            print("  %-40s %6.2f per round trip" % (k, v / n))


if __name__ == "__main__":
    sys.exit(main())

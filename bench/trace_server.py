"""Record a scheduler trace of examples/echo_server.py under load, and draw it.

    python bench/trace_server.py [--seconds 0.3] [--json trace.json] [--png trace.png]

The echo server (the examples' accept loop and echo_server's ``handle``) runs in this process; 16 client
goroutines make 64-byte round trips over TCP while two goroutines run a
pure-Python computation (a "report" of ~60 ms each), so the timeline shows
goroutines served per P, parks on the network, readies from the poller,
preemptions of the computing goroutines and steals.  Open the JSON in Perfetto
(https://ui.perfetto.dev, "Open trace file") or chrome://tracing; the PNG
needs matplotlib.
"""

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "examples"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=0.3)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--json", default="trace.json")
    ap.add_argument("--png", default=None)
    a = ap.parse_args()
    import _serve
    import echo_server
    from pygmp import chan, go, net, trace
    from pygmp.sync import WaitGroup

    ln = net.listen("tcp", "127.0.0.1:0")
    stopped = chan()
    go(_serve._accept_loop, "echo_server", ln, echo_server.handle, (), stopped)
    addr = str(ln.addr())
    wg = WaitGroup()
    end = [0.0]

    def client():
        c = net.dial("tcp", addr)
        msg = b"x" * 64
        n = 0
        while time.monotonic() < end[0]:
            c.write(msg)
            got = b""
            while len(got) < len(msg):
                got += c.read(len(msg) - len(got))
            n += 1
        c.close()
        wg.done()

    def report():
        t = time.monotonic() + 0.06
        x = 0
        while time.monotonic() < t:
            x += 1
        wg.done()

    trace.start(a.json)
    end[0] = time.monotonic() + a.seconds
    wg.add(a.clients + 2)
    for _ in range(a.clients):
        go(client)
    time.sleep(a.seconds / 3)
    go(report)
    go(report)
    wg.wait()
    trace.stop()
    ln.close()
    stopped.recv()
    print("wrote", a.json)
    if a.png:
        print("wrote", trace.render(a.json, a.png))


if __name__ == "__main__":
    main()

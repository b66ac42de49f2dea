"""The thread-count story: OS threads follow the blocking calls in flight.

    python examples/threads.py                      # prints a table over time
    python examples/threads.py --png threads.png    # and plots it (needs matplotlib)
    python examples/threads.py --keepalive 2        # shorter syscall-thread keep-alive

10,000 goroutines park on a channel.  After a second, 200 of them make 50 ms
blocking calls (``pygmp.syscall.call(time.sleep, 0.05)``) for --busy seconds,
then park again.  Every --interval the main thread prints the process's OS
thread count (psutil), the goroutines and the blocking calls in flight.  The
threads rise with the calls (each call in flight holds a syscall thread, as a
Go M in a system call does), then fall back once the idle syscall threads pass
their keep-alive (10 s by default; Go's never fall).
"""

import argparse
import os
import sys
import time


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=10_000, help="parked goroutines (default 10000)")
    ap.add_argument("--callers", type=int, default=200, help="goroutines making blocking calls (200)")
    ap.add_argument("--busy", type=float, default=2.0, help="seconds of blocking calls (2)")
    ap.add_argument("--keepalive", type=float, default=None,
                    help="syscall-thread keep-alive in seconds (default: the runtime's, 10)")
    ap.add_argument("--interval", type=float, default=0.1, help="sampling period (0.1 s)")
    ap.add_argument("--png", help="save a plot here (needs matplotlib)")
    a = ap.parse_args(argv)
    if a.keepalive is not None:
        # a setting: read once when the runtime starts (pygmp/runtime/settings.py)
        os.environ["PYGMP_SYSCALL_KEEPALIVE_MS"] = str(int(a.keepalive * 1000))
    import psutil
    from pygmp import chan, go, metrics, syscall
    from pygmp.runtime import gomaxprocs, num_goroutine
    from pygmp.sync import WaitGroup

    keepalive = float(os.environ.get("PYGMP_SYSCALL_KEEPALIVE_MS", "10000")) / 1000
    proc = psutil.Process()
    gate = chan()
    start = chan()
    wg = WaitGroup()

    def parked():
        gate.recv()
        wg.done()

    def caller():
        start.recv()
        end = time.monotonic() + a.busy
        while time.monotonic() < end:
            syscall.call(time.sleep, 0.05)
        gate.recv()
        wg.done()

    samples = []            # (t, os threads, goroutines, calls in flight)
    t0 = time.monotonic()

    def sample():
        inflight = metrics.read(["/pygmp/syscall/inflight:calls"])["/pygmp/syscall/inflight:calls"]
        samples.append((time.monotonic() - t0, proc.num_threads(), num_goroutine(), inflight))
        s = samples[-1]
        print("%6.2fs  threads=%4d  goroutines=%6d  calls in flight=%4d" % s)

    wg.add(a.n)
    for i in range(a.n - a.callers):
        go(parked)
    for i in range(a.callers):
        go(caller)
    phases = [(1.0, None), (a.busy, "calls"), (keepalive + 1.5, "quiet")]
    for length, what in phases:
        if what == "calls":
            start.close()
        end = time.monotonic() + length
        while time.monotonic() < end:
            sample()
            time.sleep(a.interval)
    gate.close()
    wg.wait()
    peak = max(s[1] for s in samples)
    print("GOMAXPROCS=%d: peak %d OS threads with %d calls in flight; %d at the end "
          "(GOMAXPROCS + main + sysmon = %d)" % (gomaxprocs(), peak, max(s[3] for s in samples),
                                                 samples[-1][1], gomaxprocs() + 2))
    if a.png:
        plot(samples, a, keepalive)
    return 0


def plot(samples, a, keepalive):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: pip install matplotlib (no plot)", file=sys.stderr)
        return
    t = [s[0] for s in samples]
    fig, ax1 = plt.subplots(figsize=(8, 4))
    ax1.plot(t, [s[1] for s in samples], label="OS threads", color="tab:red", linewidth=2)
    ax1.plot(t, [s[3] for s in samples], label="blocking calls in flight", color="tab:orange",
             linestyle="--")
    ax1.set_xlabel("seconds")
    ax1.set_ylabel("threads / calls")
    ax2 = ax1.twinx()
    ax2.plot(t, [s[2] for s in samples], label="goroutines", color="tab:blue", alpha=0.6)
    ax2.set_ylabel("goroutines")
    ax2.set_ylim(0, max(s[2] for s in samples) * 1.15)
    ax1.axvspan(1.0, 1.0 + a.busy, color="tab:orange", alpha=0.08)
    ax1.set_title("%d goroutines; %d of them in 50 ms blocking calls for %gs; keep-alive %gs"
                  % (a.n, a.callers, a.busy, keepalive), fontsize=10)
    h1, l1 = ax1.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax1.legend(h1 + h2, l1 + l2, loc="center right", fontsize=9)
    fig.tight_layout()
    fig.savefig(a.png, dpi=110)
    print("saved", a.png)


if __name__ == "__main__":
    sys.exit(main())

"""Wake-up latency of the netpoller's break (np_break -> np_wait) vs a Lock.

Two threads ping-pong N round trips; each side blocks, the other wakes it.
  netpoll: main does pa.wake(); the peer, blocked in pa.wait(None), returns
           and does pb.wake(); main, blocked in pb.wait(None), returns.
  lock:    the same with two threading.Lock objects used as binary semaphores
           (release() wakes a thread blocked in acquire()).
Reports the median and p90/p99 round trip and half of the median (one wake).
Also reports the cost of one wake() call when a wake is already pending
(coalesced: no syscall) and when it is not.

    python bench/netpoll_wake.py [N]
"""

import statistics
import sys
import threading
import time

from pygmp.runtime.netpoll import Poller


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def bench_netpoll(n):
    pa, pb = Poller(), Poller()
    ready = threading.Event()

    def peer():
        ready.set()
        for _ in range(n + 50):
            pa.wait(None)
            pb.wake()

    t = threading.Thread(target=peer)
    t.start()
    ready.wait()
    time.sleep(0.05)
    rts = []
    clock = time.perf_counter_ns
    for i in range(n + 50):
        t0 = clock()
        pa.wake()
        pb.wait(None)
        if i >= 50:  # warm-up
            rts.append(clock() - t0)
    t.join()
    pa.close()
    pb.close()
    return rts


def bench_lock(n):
    la, lb = threading.Lock(), threading.Lock()
    la.acquire()
    lb.acquire()
    ready = threading.Event()

    def peer():
        ready.set()
        for _ in range(n + 50):
            la.acquire()
            lb.release()

    t = threading.Thread(target=peer)
    t.start()
    ready.wait()
    time.sleep(0.05)
    rts = []
    clock = time.perf_counter_ns
    for i in range(n + 50):
        t0 = clock()
        la.release()
        lb.acquire()
        if i >= 50:
            rts.append(clock() - t0)
    t.join()
    return rts


def bench_wake_call(n=200_000):
    p = Poller()
    clock = time.perf_counter_ns
    p.wake()  # a wake is pending from now on: every call below coalesces
    t0 = clock()
    for _ in range(n):
        p.wake()
    coalesced = (clock() - t0) / n
    m = 20_000
    tot = 0
    for _ in range(m):
        p.wait(0)  # consume, so the next wake() does the syscall
        t0 = clock()
        p.wake()
        tot += clock() - t0
    p.close()
    return coalesced, tot / m


def report(name, rts):
    med = statistics.median(rts)
    print(
        f"{name:8s} round trip: median {med / 1000:7.1f} us   p90 {pct(rts, .9) / 1000:7.1f} us"
        f"   p99 {pct(rts, .99) / 1000:7.1f} us   -> one wake ~ {med / 2000:6.1f} us"
    )


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    print(f"python {sys.version.split()[0]}, {n} round trips, switchinterval {sys.getswitchinterval()}")
    report("netpoll", bench_netpoll(n))
    report("lock", bench_lock(n))
    coalesced, fresh = bench_wake_call()
    print(f"wake() call cost: {fresh:.0f} ns when it writes the eventfd, {coalesced:.0f} ns when coalesced")


if __name__ == "__main__":
    main()

"""The example at the top of the README (and of docs/design.md): 10,000
goroutines, one channel, and the OS thread count (psutil).

    python examples/hello.py

The OS sees GOMAXPROCS + 2 threads: one worker per P, the main thread (which
runs only the main goroutine) and sysmon."""

import psutil

from pygmp import go, chan
from pygmp.runtime import gomaxprocs, num_goroutine


def worker(i, out):
    out.send(i * i)


def main():
    out = chan()
    for i in range(10_000):
        go(worker, i, out)
    peak = num_goroutine()
    total = sum(out.recv() for _ in range(10_000))
    print("sum of squares below 10,000:", total)
    print("goroutines at peak: %d, GOMAXPROCS: %d, OS threads: %d"
          % (peak, gomaxprocs(), psutil.Process().num_threads()))


if __name__ == "__main__":
    main()

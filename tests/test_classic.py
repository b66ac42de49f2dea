"""Go's classic concurrent programs, written with pygmp."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _helpers import gomaxprocs_set, in_goroutine, recv_timeout  # noqa: E402

from pygmp import chan, go, select  # noqa: E402
from pygmp.sync import WaitGroup  # noqa: E402


def _first_primes(n):
    out, k = [], 2
    while len(out) < n:
        if all(k % p for p in out):
            out.append(k)
        k += 1
    return out


# ---------------------------------------------------------------- prime sieve

def _sieve(n):
    def generate(ch):
        i = 2
        while True:
            ch.send(i)
            i += 1

    def filt(src, dst, prime):
        while True:
            i = src.recv()
            if i % prime != 0:
                dst.send(i)

    ch = chan()
    go(generate, ch)
    primes = []
    for _ in range(n):
        prime = ch.recv()
        primes.append(prime)
        ch1 = chan()
        go(filt, ch, ch1, prime)
        ch = ch1
    return primes  # the pipeline's goroutines leak, as in Go's example


@pytest.mark.timeout(60)
def test_prime_sieve_from_main():
    assert _sieve(100) == _first_primes(100)


@pytest.mark.timeout(60)
def test_prime_sieve_in_goroutine_multi_p():
    with gomaxprocs_set(4):
        assert in_goroutine(_sieve, 100, timeout=50) == _first_primes(100)


# ---------------------------------------------------------------- daisy chain

def _daisy(n):
    def whisper(left, right):
        left.send(1 + right.recv())

    leftmost = chan()
    right = leftmost
    left = leftmost
    for _ in range(n):
        right = chan()
        go(whisper, left, right)
        left = right
    go(right.send, 1)
    return leftmost.recv()


@pytest.mark.timeout(90)
def test_daisy_chain_10000():
    assert recv_timeout_call(_daisy, 10000, timeout=80) == 10001


def recv_timeout_call(fn, *args, timeout):
    return in_goroutine(fn, *args, timeout=timeout)


@pytest.mark.timeout(90)
def test_daisy_chain_10000_from_main_multi_p():
    with gomaxprocs_set(2):
        assert _daisy(10000) == 10001


# ---------------------------------------------------------------- fan-out / fan-in

@pytest.mark.timeout(60)
def test_fan_out_fan_in():
    def gen(nums):
        out = chan()

        def run():
            for n in nums:
                out.send(n)
            out.close()

        go(run)
        return out

    def sq(inp):
        out = chan()

        def run():
            for n in inp:
                out.send(n * n)
            out.close()

        go(run)
        return out

    def merge(*cs):
        out = chan(4)
        wg = WaitGroup()

        def output(c):
            for v in c:
                out.send(v)
            wg.done()

        wg.add(len(cs))
        for c in cs:
            go(output, c)

        def closer():
            wg.wait()
            out.close()

        go(closer)
        return out

    src = gen(range(1000))
    workers = [sq(src) for _ in range(8)]
    got = sorted(merge(*workers))
    assert got == [n * n for n in range(1000)]


@pytest.mark.timeout(60)
def test_fan_in_with_select():
    a, b = chan(), chan()
    quit = chan()

    def talk(name, ch, n):
        for i in range(n):
            ch.send((name, i))

    go(talk, "a", a, 300)
    go(talk, "b", b, 300)
    seen = {"a": [], "b": []}
    for _ in range(600):
        i, v = select(a.recv, b.recv, quit.recv)
        assert i in (0, 1)
        seen[v[0]].append(v[1])
    # per-sender order is preserved
    assert seen["a"] == list(range(300))
    assert seen["b"] == list(range(300))


# ---------------------------------------------------------------- worker pool

@pytest.mark.timeout(60)
@pytest.mark.parametrize("procs", [1, 4])
def test_worker_pool(procs):
    with gomaxprocs_set(procs):
        jobs = chan(100)
        results = chan(100)
        n_jobs, n_workers = 500, 10

        def worker(wid):
            for j in jobs:
                results.send((wid, j, j * 2))

        def feeder():
            for j in range(n_jobs):
                jobs.send(j)
            jobs.close()

        for w in range(n_workers):
            go(worker, w)
        go(feeder)
        got = [recv_timeout(results, 30) for _ in range(n_jobs)]
        assert sorted(r[1] for r in got) == list(range(n_jobs))
        assert all(r[2] == 2 * r[1] for r in got)


@pytest.mark.timeout(60)
def test_ping_pong():
    ping, pong = chan(), chan()
    n = 5000

    def player(inp, out):
        while True:
            v = inp.recv()
            if v is None:
                return
            out.send(v + 1)

    go(player, ping, pong)

    def driver():
        v = 0
        for _ in range(n):
            ping.send(v)
            v = pong.recv()
        ping.send(None)
        return v

    assert in_goroutine(driver, timeout=50) == n

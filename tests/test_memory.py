"""Goroutines' interpreter data stacks (csrc/stackcache.c): small root chunks,
spilling into and back out of 16 KiB chunks, and the scavenger that gives
memory back after a burst.

A data-stack chunk handed out twice, or freed while frames still live in it,
corrupts the interpreter: the correctness tests below keep many goroutines
parked at random depths (some spilled into several chunks) while others run,
and check every frame's locals on the way back up.  The memory tests run in
fresh interpreters and compare RSS with bounds that are loose multiples of
what they measure (a page is 4 KiB; a burst moves tens of MiB), so they do not
depend on timing.
"""
import os
import random
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _helpers import in_goroutine, recv_timeout, run_script, wait_until  # noqa: E402

from pygmp import chan, go  # noqa: E402
from pygmp.sync import WaitGroup  # noqa: E402
from pygmp import _hot  # noqa: E402
from pygmp.runtime import proc  # noqa: E402

ROOT_CHUNK = proc.STACK_ROOT_BYTES - 16      # what CPython sees: the slot less our two words
linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RSS from /proc, MADV_DONTNEED")


def _stats():
    return _hot.stackcache_stats()


def _installed():
    proc.start()                  # the runtime installs the cache when it starts
    return _stats()["installed"] == 1


needs_cache = pytest.mark.skipif(not _installed(), reason="stack cache not installed (free-threaded build)")


def _nest(k, bottom, tag):
    """Recurse k frames, each with locals derived from (tag, k); call bottom()
    at the bottom; check every frame's locals on the way back up."""
    a, b, c = tag * 7 + k, (tag, k), [k, tag]
    if k == 0:
        r = bottom()
    else:
        r = _nest(k - 1, bottom, tag)
    assert a == tag * 7 + k and b == (tag, k) and c == [k, tag], "frame locals corrupted"
    return r + k


# ------------------------------------------------------------ small roots

@needs_cache
def test_goroutine_starts_on_a_small_root():
    used, nchunks, top = in_goroutine(_hot.datastack_used)
    assert nchunks == 1 and top == ROOT_CHUNK, (used, nchunks, top)
    assert 0 < used < ROOT_CHUNK


@needs_cache
def test_deep_recursion_spills_and_comes_back():
    def body():
        for depth in (5, 40, 300, 40, 700, 3):
            seen = []
            r = _nest(depth, lambda: seen.append(_hot.datastack_used()) or 0, depth)
            assert r == depth * (depth + 1) // 2
            used, nchunks, top = seen[0]
            if depth >= 300:
                assert nchunks >= 2 and top >= 16384, seen
        return _hot.datastack_used()
    used, nchunks, top = in_goroutine(body, timeout=30)
    assert nchunks == 1 and top == ROOT_CHUNK     # back on the root


@needs_cache
def test_many_goroutines_parked_at_random_depths():
    """Goroutines park (on channels) at depths from 0 to 400 frames, spilled or
    not, in a random order, while others start, run and finish; each checks
    its frames' locals when it unwinds."""
    rng = random.Random(1234)
    n = 600
    gates = [chan() for _ in range(n)]
    out = chan(n)
    depths = [rng.choice((0, 1, 3, 8, 20, 60, 150, 400)) for _ in range(n)]

    def worker(i):
        try:
            r = _nest(depths[i], gates[i].recv, i)
            out.send((i, r))
        except BaseException as e:          # report, don't panic the process
            out.send((i, e))

    for i in range(n):
        go(worker, i)
    order = list(range(n))
    rng.shuffle(order)
    for k, i in enumerate(order):
        if k % 50 == 0:                      # churn: short-lived goroutines in between
            wg = WaitGroup()
            wg.add(20)
            for j in range(20):
                go(lambda j=j: (_nest(j * 10, lambda: 0, j), wg.done()))
            wg.wait()
        gates[i].send(0)
    got = {}
    for _ in range(n):
        i, r = recv_timeout(out, 30, "a worker")
        assert not isinstance(r, BaseException), r
        got[i] = r
    for i in range(n):
        assert got[i] == depths[i] * (depths[i] + 1) // 2


@needs_cache
def test_exceptions_unwind_through_spilled_chunks():
    def body():
        def boom():
            raise KeyError("deep")
        for depth in (10, 600):
            try:
                _nest(depth, boom, depth)
            except KeyError as e:
                assert e.args == ("deep",)
            else:
                raise AssertionError("no exception")
        return _hot.datastack_used()[1:]
    assert in_goroutine(body) == (1, ROOT_CHUNK)


@needs_cache
def test_generators_and_coroutines_inside_goroutines():
    def gen(n):
        for i in range(n):
            yield _nest(i % 50, lambda: 0, i)

    async def coro(n):
        return sum(_nest(i, lambda: 0, i) for i in range(n))

    def body():
        a = sum(gen(300))
        c = coro(120)
        try:
            c.send(None)
        except StopIteration as e:
            b = e.value
        return a, b
    a, b = in_goroutine(body)
    assert a == sum((i % 50) * (i % 50 + 1) // 2 for i in range(300))
    assert b == sum(i * (i + 1) // 2 for i in range(120))


@needs_cache
def test_roots_come_back_when_greenlets_end():
    """More goroutines at once than the free-greenlet cache keeps: the extra
    greenlets end and their roots go back (counted by the cache)."""
    r = run_script("""
        import sys
        from pygmp import go, chan
        from pygmp.sync import WaitGroup
        from pygmp import _hot
        from pygmp.runtime import proc
        n = proc.GFREE_MAX + 1500
        c = chan(); started = WaitGroup(); done = WaitGroup()
        started.add(n); done.add(n)
        def f(i):
            started.done()
            if i % 3 == 0:
                def deep(k):
                    return c.recv() if k == 0 else deep(k - 1)
                deep(200)                    # parked spilled into a 16 KiB chunk
            else:
                c.recv()
            done.done()
        for i in range(n):
            go(f, i)
        started.wait()
        s = _hot.stackcache_stats()
        assert s["roots"] >= n, s
        c.close(); done.wait()
        s = _hot.stackcache_stats()
        # at most GFREE_MAX finished greenlets are kept, each with its root;
        # every spilled chunk came back
        assert s["roots"] <= proc.GFREE_MAX + 2, s
        assert s["inuse"] <= s["rootblocks"] + 8, s
        assert s["roots_fallback"] == 0, s
        print("ok", s["roots"], s["warm"])
    """, timeout=120, env={"GOMAXPROCS": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("ok")


@needs_cache
def test_two_ps_churn():
    """Goroutines start, spill, park and end on two Ps at once (two worker
    threads allocating and freeing roots and chunks)."""
    r = run_script("""
        import random
        from pygmp import go, chan
        from pygmp.sync import WaitGroup
        from pygmp import _hot
        def nest(k, tag):
            x = (tag, k)
            r = ch.recv() if k == 0 else nest(k - 1, tag)
            assert x == (tag, k)
            return r
        for rnd in range(4):
            ch = chan(50)
            wg = WaitGroup(); wg.add(2000)
            def f(i):
                nest(random.choice((0, 2, 30, 250)), i)
                wg.done()
            for i in range(2000):
                go(f, i)
            for i in range(2000):
                ch.send(i)
            wg.wait()
            _hot.stackcache_scavenge(True)
        print("ok", _hot.stackcache_stats())
    """, timeout=180, env={"GOMAXPROCS": "2"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("ok")


# ------------------------------------------------------------ the scavenger

_BURST = """
    import gc, sys, time
    from pygmp.runtime import proc
    if "nosysmon" in sys.argv:
        proc.SCAVENGE_PERIOD = 1e9        # only this script scavenges
    from pygmp import go, chan
    from pygmp.sync import WaitGroup
    from pygmp import _hot
    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20
    def deep(k):                  # ~13 KiB of frames: most of a 16 KiB chunk resident
        return c.recv() if k == 0 else deep(k - 1)
    c = chan(); started = WaitGroup(); done = WaitGroup()
    def f():
        started.done(); deep(110); done.done()
    n = 3000
    go(lambda: None); time.sleep(0.05); gc.collect()
    r0 = rss()
    started.add(n); done.add(n)
    for _ in range(n):
        go(f)
    started.wait()
    r1 = rss()
    c.close(); done.wait(); gc.collect()
    r2 = rss()
"""


@needs_cache
@linux
def test_scavenge_gives_a_burst_back():
    r = run_script("    import sys; sys.argv.append('nosysmon')\n" + _BURST + """
    s0 = _hot.stackcache_stats()
    freed = _hot.stackcache_scavenge(True)
    r3 = rss()
    s1 = _hot.stackcache_stats()
    print(r0, r1, r2, r3, freed, s0["warm"], s1["warm"], s1["cold"])
    """, timeout=120, env={"GOMAXPROCS": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    r0, r1, r2, r3, freed, warm0, warm1, cold1 = map(float, r.stdout.split())
    # 3,000 goroutines each held most of a 16 KiB chunk: ~40 MiB
    assert r1 - r0 > 25, r.stdout
    assert warm0 >= 2900 and warm1 <= 64 and cold1 >= warm0 - 64, r.stdout
    assert freed >= (warm0 - 64) * 16384
    # the burst's chunks went back: each had ~13 KiB of frames written (3-4
    # resident pages), so RSS fell by at least half of 12 KiB a chunk (what
    # else the burst left, e.g. 3.12+'s frame objects in pymalloc arenas, is
    # not the cache's)
    assert r2 - r3 > 0.5 * (warm0 - 64) * 12 / 1024, r.stdout


@needs_cache
@linux
def test_unforced_scavenge_keeps_chunks_in_use_since_the_last_call():
    r = run_script("    import sys; sys.argv.append('nosysmon')\n" + _BURST + """
    _hot.stackcache_scavenge()            # marks: everything warm is idle from now
    w0 = _hot.stackcache_stats()["warm"]
    # reuse some chunks between two calls: the ones reused stay warm
    c2 = chan(); wg = WaitGroup(); wg.add(100); st = WaitGroup(); st.add(100)
    def g():
        def d(k):
            return c2.recv() if k == 0 else d(k - 1)
        st.done(); d(110); wg.done()
    for _ in range(100):
        go(g)
    st.wait(); time.sleep(0.1)            # all 100 parked, each on its own chunk
    c2.close(); wg.wait()
    freed = _hot.stackcache_scavenge()
    s = _hot.stackcache_stats()
    print(w0, freed // 16384, s["warm"])
    """, timeout=120, env={"GOMAXPROCS": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    w0, nfreed, warm = map(int, r.stdout.split())
    assert w0 >= 2900
    # the 100 reused chunks came back on top of the LIFO and are kept, with
    # the 64 kept always; every other chunk was given back
    assert 64 + 90 <= warm <= 64 + 110, r.stdout
    assert nfreed >= w0 - warm - 10, r.stdout


@needs_cache
@linux
def test_sysmon_scavenges_after_a_burst():
    """Nobody calls the scavenger: sysmon does, about once a second."""
    r = run_script(_BURST + """
    t0 = time.monotonic()
    while _hot.stackcache_stats()["released"] < 2000 and time.monotonic() - t0 < 20:
        time.sleep(0.1)
    r3 = rss()
    print(r0, r1, r2, r3, _hot.stackcache_stats()["released"], round(time.monotonic() - t0, 1))
    """, timeout=120, env={"GOMAXPROCS": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    r0, r1, r2, r3, released, took = map(float, r.stdout.split())
    assert released >= 2000, r.stdout
    assert r2 - r3 > 0.5 * released * 12 / 1024, r.stdout


@needs_cache
def test_scavenge_with_nothing_to_do():
    assert _hot.stackcache_scavenge() >= 0
    assert _hot.stackcache_scavenge(False) >= 0
    s = _stats()
    assert s["warm"] >= 0 and s["cold"] >= 0 and s["inuse"] >= 0


@needs_cache
def test_fork_child_uses_the_cache():
    r = run_script("""
        import os
        from pygmp import go, chan
        from pygmp import _hot
        def deep(k):
            return 0 if k == 0 else deep(k - 1) + 1
        c = chan(10)
        for _ in range(10):
            go(lambda: c.send(deep(300)))
        assert sum(c.recv() for _ in range(10)) == 3000
        pid = os.fork()
        if pid == 0:
            c2 = chan(10)
            for _ in range(10):
                go(lambda: c2.send(deep(300)))
            ok = sum(c2.recv() for _ in range(10)) == 3000
            _hot.stackcache_scavenge(True)
            os._exit(0 if ok else 3)
        _, st = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(st))
    """, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "child 0" in r.stdout


def test_install_arguments_are_checked():
    with pytest.raises(ValueError):
        _hot.install_stack_cache(10, 100)       # root slot too small
    with pytest.raises(ValueError):
        _hot.install_stack_cache(-1)
    with pytest.raises(TypeError):
        _hot.install_stack_cache()
    # installed once per process: a second install is refused, not applied
    if _installed():
        assert _hot.install_stack_cache(10, 1024) is False
        assert _stats()["maxwarm"] == proc.STACK_CACHE_CHUNKS


@needs_cache
def test_retired_ps_greenlets_give_their_roots_back():
    """A P that retires (GOMAXPROCS shrinks) takes its worker thread and its
    free greenlets with it: their roots (and spilled chunks) come back from
    greenlet's cleanup of a dead thread's greenlets."""
    r = run_script("""
        import gc, time
        from pygmp import go, chan, _hot
        from pygmp.sync import WaitGroup
        from pygmp.runtime import gomaxprocs, proc
        gomaxprocs(4)
        def deep(k, c):
            return c.recv() if k == 0 else deep(k - 1, c)
        for rnd in range(3):
            c = chan(); wg = WaitGroup(); wg.add(3000); st = WaitGroup(); st.add(3000)
            def f(i):
                st.done(); deep(i % 300, c); wg.done()
            for i in range(3000):
                go(f, i)
            st.wait()
            assert _hot.stackcache_stats()["roots"] >= 3000
            c.close(); wg.wait()
            gomaxprocs(1)
            deadline = time.monotonic() + 20
            while _hot.stackcache_stats()["roots"] > proc.GFREE_MAX + 8 and time.monotonic() < deadline:
                time.sleep(0.05); gc.collect()
            s = _hot.stackcache_stats()
            assert s["roots"] <= proc.GFREE_MAX + 8, s
            assert s["inuse"] <= s["rootblocks"] + 8, s
            gomaxprocs(4)
        print("ok")
    """, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("ok")

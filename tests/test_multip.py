"""Several Ps: exactness under contention, no lost wake-ups across Ps, work
stealing, timers on a stuck P, gomaxprocs changed at run time, and fork via
multiprocessing."""
import hashlib
import multiprocessing
import os
import sys
import threading
import time as stdtime

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _helpers import (gomaxprocs_set, in_goroutine, in_thread,  # noqa: E402
                      recv_timeout, run_script)

from pygmp import chan, default, go, select  # noqa: E402
from pygmp.runtime import gomaxprocs, gosched  # noqa: E402
from pygmp.sync import Mutex, WaitGroup  # noqa: E402
from pygmp.time import after, now, sleep  # noqa: E402


def _wait_wg(wg, timeout):
    in_thread(wg.wait, timeout=timeout)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("procs", [2, 3, 4])
def test_mutex_counter_exact(procs):
    with gomaxprocs_set(procs):
        m = Mutex()
        counter = {"n": 0}
        n_g, per = 64, 300
        wg = WaitGroup()
        wg.add(n_g)

        def inc():
            for i in range(per):
                m.lock()
                v = counter["n"]
                if i % 10 == 0:
                    sleep(0)  # a runtime entry inside the critical section
                counter["n"] = v + 1
                m.unlock()
            wg.done()

        def spawner():
            for _ in range(n_g):
                go(inc)

        go(spawner)
        _wait_wg(wg, 55)
        assert counter["n"] == n_g * per


# ---------------------------------------------------------------- select + timeouts

def _select_timeouts(n_goroutines, per, procs):
    with gomaxprocs_set(procs):
        chans = [chan() for _ in range(n_goroutines)]
        done = chan(n_goroutines)
        counts = {"recv": 0, "timeout": 0}
        lk = threading.Lock()

        def consumer(k):
            c = chans[k]
            rv = to = 0
            for _ in range(per):
                i, _ = select(c.recv, after(0.002).recv)
                if i == 0:
                    rv += 1
                else:
                    to += 1
            with lk:
                counts["recv"] += rv
                counts["timeout"] += to
            done.send(k)

        def producer(k):
            c = chans[(k + 1) % n_goroutines]  # feed a goroutine on another P
            sent = 0
            while True:
                i, _ = select((c.send, k), after(0.002).recv)
                if i == 0:
                    sent += 1
                    if sent == per // 2:
                        return

        for k in range(n_goroutines):
            go(consumer, k)
            go(producer, k)
        got = sorted(recv_timeout(done, 240) for _ in range(n_goroutines))
        assert got == list(range(n_goroutines))
        assert counts["recv"] == n_goroutines * (per // 2)
        assert counts["recv"] + counts["timeout"] == n_goroutines * per


@pytest.mark.timeout(60)
def test_select_with_timeouts_no_lost_wakeups_small():
    _select_timeouts(n_goroutines=20, per=500, procs=4)  # 10,000 selects


@pytest.mark.timeout(120)
def test_select_with_timeouts_no_lost_wakeups_100k():
    # about 4 s here; not marked stress
    _select_timeouts(n_goroutines=50, per=2000, procs=4)  # 100,000 selects


# ---------------------------------------------------------------- stealing

@pytest.mark.timeout(60)
def test_stealing_spreads_gil_releasing_work():
    with gomaxprocs_set(4):
        buf = b"x" * (4 << 20)
        n = 16
        out = chan(n)

        def work():
            # go() wakes no P: sysmon does, for movable work queued behind a
            # G that has run 1 ms (HACKING.md "Which P runs new work"), so
            # leave it a few of its looks even on a loaded machine
            for _ in range(12):
                hashlib.sha256(buf).digest()  # releases the GIL
            out.send(threading.get_ident())

        def spawner():
            for _ in range(n):
                go(work)

        go(spawner)
        tids = [recv_timeout(out, 50) for _ in range(n)]
        assert threading.get_ident() not in tids  # never on the main thread
        assert len(set(tids)) >= 2, "all goroutines ran on one worker thread"


@pytest.mark.timeout(60)
def test_gil_releasing_work_runs_in_parallel():
    # with several Ps, GIL-releasing work overlaps in time
    with gomaxprocs_set(4):
        buf = b"y" * (4 << 20)
        spans = chan(8)

        def work():
            t0 = stdtime.monotonic()
            for _ in range(6):
                hashlib.sha256(buf).digest()
            spans.send((t0, stdtime.monotonic()))

        def spawner():
            for _ in range(4):
                go(work)

        go(spawner)
        s = [recv_timeout(spans, 50) for _ in range(4)]
        # at least two spans overlap
        overlap = any(a[0] < b[1] and b[0] < a[1]
                      for i, a in enumerate(s) for b in s[i + 1:])
        assert overlap


# ---------------------------------------------------------------- cross-P

@pytest.mark.timeout(60)
def test_cross_p_ping_pong_stress():
    with gomaxprocs_set(4):
        pairs, rounds = 32, 300
        done = chan(pairs)

        def pinger(a, b):
            for i in range(rounds):
                a.send(i)
                assert b.recv() == i + 1
            done.send(1)

        def ponger(a, b):
            for _ in range(rounds):
                b.send(a.recv() + 1)

        def spawner():
            for _ in range(pairs):
                a, b = chan(), chan()
                go(pinger, a, b)
                go(ponger, a, b)
                gosched()

        go(spawner)
        for _ in range(pairs):
            recv_timeout(done, 55)


@pytest.mark.timeout(60)
def test_cross_p_token_ring():
    with gomaxprocs_set(4):
        n, laps = 64, 50
        chans = [chan() for _ in range(n)]
        finished = chan(1)

        def node(k):
            inp, out = chans[k], chans[(k + 1) % n]
            while True:
                v = inp.recv()
                if k == 0:
                    if v == laps * n:
                        finished.send(v)
                        return
                out.send(v + 1)

        for k in range(n):
            go(node, k)
        chans[0].send(0)
        assert recv_timeout(finished, 55) == laps * n


@pytest.mark.timeout(30)
def test_timer_fires_while_its_p_is_stuck():
    with gomaxprocs_set(2):
        woke = chan(1)
        ready = chan(1)

        def sleeper_elsewhere(c):
            woke.send((c.recv(), now()))

        def stuck():
            c = after(0.2)        # timer created on this goroutine's P
            go(sleeper_elsewhere, c)
            ready.send(now())
            stdtime.sleep(1.0)    # blocks this worker thread outside the runtime

        go(stuck)
        t0 = recv_timeout(ready)
        v, t_woke = recv_timeout(woke, 10)
        # the timer's goroutine may be homed on the stuck P if it ran there;
        # fired on time is what matters: the value sent is the fire time
        assert v - t0 < 0.6, "timer fired late: %.3fs" % (v - t0)
        assert t_woke - t0 < 0.6, "waiter woke late: %.3fs" % (t_woke - t0)


@pytest.mark.timeout(60)
def test_timer_fires_on_time_and_wakes_goroutine_on_other_p():
    # W (already running, so homed on some P) waits for a timer that S creates;
    # S runs on another worker thread, whose P is then stuck in a plain
    # time.sleep(1). W must still wake on time.
    with gomaxprocs_set(2):
        buf = b"z" * (4 << 20)
        for attempt in range(5):
            tcs = chan(1)
            w_tid = chan(1)
            res = chan(1)
            claim = chan(1)
            claim.send(True)
            box = {}

            def W():
                w_tid.send(threading.get_ident())
                c = tcs.recv()
                if c is None:
                    return
                v = c.recv()
                res.send((v, now()))

            def S_candidate(wt):
                hashlib.sha256(buf).digest()  # releases the GIL: lets the other P steal
                if threading.get_ident() == wt:
                    return
                if select(claim.recv, default)[0] != 0:
                    return
                box["t0"] = now()
                tcs.send(after(0.2))
                stdtime.sleep(1.0)  # this worker is stuck outside the runtime

            def spawner(wt):
                for _ in range(8):
                    go(S_candidate, wt)

            go(W)
            wt = recv_timeout(w_tid)
            go(spawner, wt)
            i, r = select(res.recv, after(5).recv)
            if i == 1:
                tcs.send(None)  # nobody claimed: W would wait forever
                continue
            v, t_woke = r
            t0 = box["t0"]
            assert v - t0 < 0.6, "timer fired late: %.3fs" % (v - t0)
            assert t_woke - t0 < 0.6, "waiter woke late: %.3fs" % (t_woke - t0)
            return
        pytest.skip("could not get W and S onto different worker threads")


# ---------------------------------------------------------------- gomaxprocs at run time

@pytest.mark.timeout(60)
def test_gomaxprocs_lowered_while_running():
    prev = gomaxprocs(4)
    try:
        n = 200
        wg = WaitGroup()
        wg.add(n)
        total = {"n": 0}
        m = Mutex()
        tids = set()

        def worker(k):
            for i in range(50):
                with m:
                    total["n"] += 1
                    tids.add(threading.get_ident())
                if i % 5 == 0:
                    sleep(0.001)
                else:
                    gosched()
            wg.done()

        def spawner():
            for k in range(n):
                go(worker, k)

        go(spawner)
        stdtime.sleep(0.05)
        gomaxprocs(1)
        stdtime.sleep(0.05)
        gomaxprocs(3)
        gomaxprocs(2)
        _wait_wg(wg, 55)
        assert total["n"] == n * 50
        # new work still runs after the change
        assert in_goroutine(lambda: 42) == 42
        c = chan()
        for k in range(20):
            go(c.send, k)
        assert sorted(recv_timeout(c) for _ in range(20)) == list(range(20))
    finally:
        gomaxprocs(prev)


@pytest.mark.timeout(60)
def test_gomaxprocs_raised_while_running():
    prev = gomaxprocs(1)
    try:
        out = chan(100)

        def w(k):
            sleep(0.01)
            out.send(k)

        for k in range(50):
            go(w, k)
        gomaxprocs(4)
        for k in range(50, 100):
            go(w, k)
        assert sorted(recv_timeout(out, 30) for _ in range(100)) == list(range(100))
    finally:
        gomaxprocs(prev)


# ---------------------------------------------------------------- fork

def _mp_child(conn):
    from pygmp import chan as c_, go as g_
    from pygmp.runtime import num_goroutine
    n0 = num_goroutine()
    out = c_()

    def sq(x):
        out.send(x * x)

    for i in range(10):
        g_(sq, i)
    res = sorted(out.recv() for _ in range(10))
    conn.send((n0, res))
    conn.close()


@pytest.mark.timeout(60)
def test_multiprocessing_fork_child_uses_pygmp():
    # the parent has a running runtime with parked goroutines
    gate = chan()
    for _ in range(5):
        go(gate.recv)
    try:
        ctx = multiprocessing.get_context("fork")
        parent_conn, child_conn = ctx.Pipe()
        p = ctx.Process(target=_mp_child, args=(child_conn,))
        p.start()
        assert parent_conn.poll(30), "child produced nothing"
        n0, res = parent_conn.recv()
        p.join(30)
        assert p.exitcode == 0
        assert res == [i * i for i in range(10)]
        assert n0 == 1  # the parent's other goroutines do not exist in the child
        # the parent is unaffected
        c = chan()
        go(c.send, "parent ok")
        assert recv_timeout(c) == "parent ok"
    finally:
        gate.close()


def _pool_task(x):
    from pygmp import chan as c_, go as g_
    c = c_()
    g_(lambda: c.send(x + 1))
    return c.recv()


@pytest.mark.timeout(60)
def test_multiprocessing_fork_pool():
    c = chan()
    go(c.send, 0)
    recv_timeout(c)  # runtime is started in the parent
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        assert pool.map(_pool_task, range(8), chunksize=1) == list(range(1, 9))


# ---------------------------------------------------------------- gomaxprocs churn
# Run in a child interpreter (a lost wake-up would leave this process's
# runtime broken for the tests after it). The child waits with plain-thread
# joins, not pygmp timers, and exits 3 with a message on a lost event.

_CHURN_PRELUDE = """
import os, sys, threading
from pygmp import go, chan
from pygmp.runtime import gomaxprocs
from pygmp.time import after

def wait(fn, what, rnd):
    box = []
    t = threading.Thread(target=lambda: box.append(fn()), daemon=True)
    t.start()
    t.join(5)
    if not box:
        print("round %d: %s" % (rnd, what), flush=True)
        os._exit(3)
    return box[0]
"""


@pytest.mark.timeout(120)
def test_go_from_main_after_gomaxprocs_raised_runs():
    r = run_script(_CHURN_PRELUDE + """
for rnd in range(100):
    gomaxprocs(4)
    c = chan(8)
    for k in range(8):
        go(c.send, k)
    got = wait(lambda: sorted(c.recv() for _ in range(8)),
               "goroutines started from main never ran", rnd)
    assert got == list(range(8))
    gomaxprocs(1)
print("ok")
""", timeout=100)
    assert r.returncode == 0 and r.stdout.strip() == "ok", (r.stdout, r.stderr[-2000:])


@pytest.mark.timeout(120)
def test_timer_from_main_after_gomaxprocs_lowered_fires():
    r = run_script(_CHURN_PRELUDE + """
for rnd in range(100):
    gomaxprocs(4)
    gomaxprocs(1)
    c = after(0.005)
    wait(c.recv, "after(0.005) made by main never fired", rnd)
print("ok")
""", timeout=100)
    assert r.returncode == 0 and r.stdout.strip() == "ok", (r.stdout, r.stderr[-2000:])


@pytest.mark.timeout(120)
def test_timer_from_goroutine_after_gomaxprocs_lowered_fires():
    r = run_script(_CHURN_PRELUDE + """
for rnd in range(50):
    gomaxprocs(4)
    out = chan(8)
    def g():
        out.send(after(0.005).recv() is not None)
    for _ in range(8):
        go(g)
    gomaxprocs(1)
    got = wait(lambda: [out.recv() for _ in range(8)],
               "goroutines sleeping on after() never woke", rnd)
    assert got == [True] * 8
print("ok")
""", timeout=100)
    assert r.returncode == 0 and r.stdout.strip() == "ok", (r.stdout, r.stderr[-2000:])


def test_steal_takes_half_of_the_movable_work():
    # Go's runqgrab: a thief takes n - n/2 of the victim's movable Gs, oldest
    # first; homed Gs stay (a started greenlet cannot leave its thread).
    from pygmp.runtime.g import G
    from pygmp.runtime.p import P

    victim = P(10_000)
    gs = [G(i, None, (), {}, None, None) for i in range(7)]
    homed = G(99, None, (), {}, None, None)
    homed.home = victim
    victim.rq_extend(gs[:3] + [homed] + gs[3:])
    assert victim.nmovable == 7
    taken = victim.rq_steal()
    assert taken == gs[:4]
    assert victim.nmovable == 3 and victim.rq_snapshot() == [homed] + gs[4:]
    assert victim.rq_steal() == gs[4:6]
    assert victim.rq_steal() == gs[6:]
    assert victim.rq_steal() is None and victim.rq_snapshot() == [homed]
    homed.home = None

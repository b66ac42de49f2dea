"""pygmp.runtime: gomaxprocs, num_cpu, num_goroutine, gosched, goexit, stack,
go_locked, set_max_threads (API.md "pygmp.runtime")."""
import os
import re
import sys
import threading
import time as stdtime

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _helpers import (in_goroutine, in_thread, is_ready, my_goid,  # noqa: E402
                      recv_timeout, run_script, wait_parked, wait_until)

from pygmp import chan, go  # noqa: E402
import pygmp.runtime as rt  # noqa: E402
from pygmp.runtime import (gomaxprocs, gosched, goexit, num_cpu,  # noqa: E402
                           num_goroutine, stack)


# ---------------------------------------------------------------- gomaxprocs

def test_gomaxprocs_read_set_returns_previous():
    cur = gomaxprocs()
    assert isinstance(cur, int) and cur >= 1
    try:
        assert gomaxprocs(3) == cur
        assert gomaxprocs(0) == 3
        assert gomaxprocs(-5) == 3
        assert gomaxprocs() == 3
        assert gomaxprocs(1) == 3
        assert gomaxprocs(2) == 1
        assert gomaxprocs(2) == 2
    finally:
        gomaxprocs(cur)
    assert gomaxprocs() == cur


@pytest.mark.parametrize("bad", ["4", 2.5, None, [2]])
def test_gomaxprocs_type_error(bad):
    cur = gomaxprocs()
    with pytest.raises(TypeError):
        gomaxprocs(bad)
    assert gomaxprocs() == cur


def test_gomaxprocs_default_is_num_cpu():
    r = run_script("""
        from pygmp.runtime import gomaxprocs, num_cpu
        print(gomaxprocs(), num_cpu())
    """, timeout=30)
    assert r.returncode == 0, r.stderr
    a, b = r.stdout.split()
    assert a == b


@pytest.mark.parametrize("n", [1, 3, 7])
def test_gomaxprocs_env_var(n):
    r = run_script("""
        from pygmp import go, chan
        from pygmp.runtime import gomaxprocs
        c = chan()
        go(c.send, 5)
        assert c.recv() == 5
        print(gomaxprocs())
    """, timeout=30, env={"GOMAXPROCS": str(n)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(n)]


def test_num_cpu():
    n = num_cpu()
    assert isinstance(n, int)
    assert 1 <= n <= (os.cpu_count() or 1)
    if hasattr(os, "sched_getaffinity"):
        assert n <= len(os.sched_getaffinity(0))


# ---------------------------------------------------------------- goroutines

@pytest.mark.timeout(20)
def test_num_goroutine_counts_and_drops():
    assert num_goroutine() >= 1  # main included
    before = num_goroutine()
    gate = chan()
    started = chan(10)

    def f():
        started.send(1)
        gate.recv()

    for _ in range(10):
        go(f)
    for _ in range(10):
        recv_timeout(started)
    assert num_goroutine() >= before + 10
    gate.close()
    wait_until(lambda: num_goroutine() <= before, timeout=10,
               what="num_goroutine to drop back to %d" % before)


def test_num_goroutine_in_fresh_process():
    r = run_script("""
        from pygmp import go, chan
        from pygmp.runtime import num_goroutine
        import time
        print(num_goroutine())
        gate = chan()
        for _ in range(5):
            go(gate.recv)
        time.sleep(0.1)
        print(num_goroutine())
        gate.close()
        for _ in range(500):
            if num_goroutine() == 1:
                break
            time.sleep(0.01)
        print(num_goroutine())
    """, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", "6", "1"]


@pytest.mark.timeout(10)
def test_gosched_returns():
    gosched()  # main, maybe nothing else runnable
    in_goroutine(gosched)
    in_thread(gosched)


@pytest.mark.timeout(10)
def test_gosched_lets_others_run():
    # on one P, a goroutine that yields lets another make progress
    from _helpers import gomaxprocs_set
    with gomaxprocs_set(1):
        flag = [False]
        res = chan(1)

        def spinner():
            for _ in range(100000):
                if flag[0]:
                    res.send(True)
                    return
                gosched()
            res.send(False)

        def setter():
            flag[0] = True

        go(spinner)
        go(setter)
        assert recv_timeout(res) is True


# gosched in the main goroutine / a plain thread (thread Gs: no P)

_MAIN_GOSCHED = """
import os, sys, threading
from pygmp import go, chan
from pygmp.runtime import gosched

def check(where):
    ran = []
    late = 0
    for i in range(N):
        go(ran.append, i)
        gosched()
        if len(ran) != i + 1:
            late += 1
            for _ in range(10000):
                if len(ran) == i + 1:
                    break
                gosched()
            assert len(ran) == i + 1, (where, i, len(ran))
    print(where, late)

check("main")
t = threading.Thread(target=check, args=("thread",))
t.start()
t.join()
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("procs", ["1", "2", None])
def test_gosched_main_and_thread_let_a_runnable_goroutine_run(procs):
    # Before: gosched() in main returned at once (main has no P), so 10,000
    # calls often never let a goroutine run.  Now each call waits for a marker
    # G queued behind the runnable ones.  At GOMAXPROCS=1 every single call
    # lets the new goroutine run; with more Ps a movable G may be stolen by
    # another P, which runs it while the caller returns (then a few more calls
    # see it run).
    n = 1000
    env = {"GOMAXPROCS": procs} if procs else None
    r = run_script("N = %d\n" % n + _MAIN_GOSCHED, timeout=110, env=env)
    assert r.returncode == 0, r.stderr
    res = dict(line.split() for line in r.stdout.splitlines())
    assert set(res) == {"main", "thread"}
    if procs == "1":
        assert res == {"main": "0", "thread": "0"}, res
    else:
        assert all(int(v) <= n // 10 for v in res.values()), res


@pytest.mark.timeout(60)
@pytest.mark.parametrize("procs", ["1", "2"])
def test_gosched_main_lets_readied_goroutine_run(procs):
    # A goroutine readied by main (homed on its P: never stolen) has always run
    # when main's gosched returns.
    r = run_script("""
        from pygmp import go, chan
        from pygmp.runtime import gosched
        c = chan()
        log = []
        def consumer():
            for v in c:
                log.append(v)
        go(consumer)
        for i in range(500):
            c.send(i)            # hands i over and readies consumer
            gosched()
            assert log and log[-1] == i, (i, log[-3:])
        print("ok")
    """, timeout=50, env={"GOMAXPROCS": procs})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ok"]


@pytest.mark.timeout(60)
def test_gosched_main_spin_wait_sees_goroutine_progress():
    # the pattern of the issue: main spins on gosched() until a goroutine it
    # started has done its work
    r = run_script("""
        from pygmp import go
        from pygmp.runtime import gosched
        for _ in range(200):
            flag = []
            go(flag.append, 1)
            for n in range(10000):
                if flag:
                    break
                gosched()
            assert flag and n <= 1, n
        print("ok")
    """, timeout=50, env={"GOMAXPROCS": "1"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ok"]


@pytest.mark.timeout(60)
def test_gosched_main_returns_at_once_when_nothing_runnable():
    r = run_script("""
        import time
        from pygmp.runtime import gosched
        t0 = time.monotonic()
        for _ in range(10000):
            gosched()            # before the runtime started
        from pygmp import go, chan
        c = chan()
        go(c.recv)               # a parked goroutine: nothing runnable
        time.sleep(0.05)
        for _ in range(10000):
            gosched()
        dt = time.monotonic() - t0
        assert dt < 5, dt        # no wait for a P per call
        c.send(1)
        print("ok")
    """, timeout=50)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ok"]


@pytest.mark.timeout(60)
def test_gosched_main_waits_for_busy_p_and_ctrl_c_withdraws():
    # At GOMAXPROCS=1 main's marker sits behind 128 goroutines of 5 ms each
    # (the P makes progress: main keeps waiting); Ctrl-C there raises
    # KeyboardInterrupt in main and withdraws the marker, which later runs
    # without leaving a stale wake-up: main's next park waits for real.
    r = run_script("""
        import signal, time
        from pygmp import go, chan
        from pygmp.runtime import gosched
        from pygmp.time import sleep
        ran = chan(1)
        def busy():
            end = time.monotonic() + 0.005
            while time.monotonic() < end:
                pass
        for _ in range(128):
            go(busy)
        go(ran.send, "f")
        # Ctrl-C in 0.2 s, from the kernel (no Python thread that would need
        # the GIL the busy goroutines hold)
        signal.signal(signal.SIGALRM, signal.default_int_handler)
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        t0 = time.monotonic()
        try:
            gosched()
            print("returned", round(time.monotonic() - t0, 2))
        except KeyboardInterrupt:
            print("interrupted")
        assert ran.recv() == "f"     # the goroutines still run
        c = chan()
        go(lambda: (sleep(0.2), c.send(42)))
        t0 = time.monotonic()
        assert c.recv() == 42
        assert time.monotonic() - t0 >= 0.15, "spurious wake-up"
        gosched()
        print("ok")
    """, timeout=50, env={"GOMAXPROCS": "1"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["interrupted", "ok"], r.stdout


@pytest.mark.timeout(60)
@pytest.mark.parametrize("procs", ["1", "2"])
def test_gosched_main_not_blocked_by_goroutine_that_never_yields(procs):
    # A goroutine spins (never entering the runtime) until main sets a flag;
    # another is runnable behind it.  Without preemption, main's marker would
    # wait for ever: gosched returns once that goroutine has held its P ~20 ms.
    r = run_script("""
        import time
        from pygmp import go, chan
        from pygmp.runtime import gosched
        flag, started, ran = [], chan(1), chan(1)
        def hog():
            started.send(1)
            while not flag:
                pass
        go(hog)
        started.recv()
        go(ran.send, "f")
        t0 = time.monotonic()
        for _ in range(5):
            gosched()
        dt = time.monotonic() - t0
        flag.append(1)
        assert ran.recv() == "f"
        print("ok", dt < 5)
    """, timeout=50, env={"GOMAXPROCS": procs})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ok", "True"], r.stdout


@pytest.mark.timeout(60)
def test_gosched_main_keeps_num_goroutine():
    r = run_script("""
        from pygmp import go, chan
        from pygmp.runtime import gosched, num_goroutine
        c = chan()
        go(c.recv)
        for _ in range(300):
            go(lambda: None)
            gosched()
        for _ in range(1000):
            if num_goroutine() == 2:
                break
            gosched()
        print(num_goroutine())
        c.send(1)
    """, timeout=50, env={"GOMAXPROCS": "1"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["2"]


# gosched in a goroutine: Go's goschedImpl order

_INTERLEAVE = """
from pygmp import go, chan
from pygmp.runtime import gosched
N = %d
log = []
done = chan(2)
def w(c):
    for _ in range(N):
        log.append(c)
        gosched()
    done.send(None)
go(w, "a")
go(w, "b")
done.recv()
done.recv()
s = "".join(log)
first = len(s) - len(s.lstrip(s[0]))      # run before the other one's first entry
print(first, sum(1 for i in range(1, len(s)) if s[i] != s[i - 1]))
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("procs", ["1", "2"])
def test_gosched_two_goroutines_started_from_main_interleave(procs):
    # Before: the log was often "aaaa...bbbb": one ran its whole loop while the
    # other waited in the global queue, or was not even created yet: main
    # (no P, its own thread) waited for the GIL while the first one ran its
    # whole loop.  Now a lone gosched lets the GIL go to main (or to another P)
    # now and then, and gosched takes from the global queue first.
    n = 3000        # longer than CPython's 5 ms GIL switch interval
    for _ in range(3):
        r = run_script(_INTERLEAVE % n, timeout=30, env={"GOMAXPROCS": procs})
        assert r.returncode == 0, r.stderr
        first, switches = map(int, r.stdout.split())
        assert first < n, (first, switches)         # not "aaaa...bbbb"
        assert switches >= 2, (first, switches)
        if procs == "1":
            # one P: once both exist they alternate
            assert switches >= 2 * (n - first) - 20, (first, switches)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("procs", ["1", "2"])
def test_gosched_goroutines_released_together_alternate(procs):
    # Both exist and are parked before they start logging; one close() readies
    # both.  On one P they then take turns.
    n = 3000
    r = run_script("""
        from pygmp import go, chan
        from pygmp.runtime import gosched, proc
        N = %d
        log, ps = [], {}
        ready, start, done = chan(2), chan(), chan(2)
        def w(c):
            ready.send(1)
            start.recv()
            ps[c] = proc.getm().p.id
            for _ in range(N):
                log.append(c)
                gosched()
            done.send(None)
        go(w, "a")
        go(w, "b")
        ready.recv(); ready.recv()
        start.close()
        done.recv(); done.recv()
        s = "".join(log)
        first = len(s) - len(s.lstrip(s[0]))
        print(ps["a"] == ps["b"], first,
              sum(1 for i in range(1, len(s)) if s[i] != s[i - 1]))
    """ % n, timeout=50, env={"GOMAXPROCS": procs})
    assert r.returncode == 0, r.stderr
    same, first, switches = r.stdout.split()
    first, switches = int(first), int(switches)
    assert first < n and switches >= 2, (same, first, switches)
    if same == "True":
        # in turn, once the second one is readied too (close() readies them
        # one after the other, and the first may start at once)
        assert switches >= 2 * (n - first) - 20, (first, switches)


@pytest.mark.timeout(60)
def test_gosched_takes_from_global_queue_before_yielder():
    # A goroutine in a gosched loop; main starts others (main has no P: they
    # go to the global queue).  Go's goschedImpl puts the yielder on the
    # global queue, behind them: each new goroutine runs at the yielder's next
    # gosched, not after up to 61 more turns (the global queue's fairness
    # tick), which is what the P's local-queue-first order gave before.
    r = run_script("""
        import time
        from pygmp import go, chan
        from pygmp.runtime import gosched
        log = []
        stop = [False]
        def spinner():
            while not stop[0]:
                log.append("a")
                gosched()
        go(spinner)
        while not log:
            time.sleep(0.001)
        delays = []
        for k in range(10):
            time.sleep(0.002)
            mark = len(log)
            go(log.append, "b%d" % k)
            while ("b%d" % k) not in log[mark:]:
                time.sleep(0.001)
            delays.append(log[mark:].index("b%d" % k))
        stop[0] = True
        print(max(delays))
    """, timeout=50, env={"GOMAXPROCS": "1"})
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) <= 2, r.stdout


@pytest.mark.timeout(10)
def test_goexit_runs_finally_and_ends_goroutine():
    log = chan(10)

    def inner():
        try:
            goexit()
            log.send("after goexit")  # never
        finally:
            log.send("inner finally")

    def f():
        try:
            inner()
            log.send("after inner")  # never
        finally:
            log.send("outer finally")

    go(f)
    assert recv_timeout(log) == "inner finally"
    assert recv_timeout(log) == "outer finally"
    stdtime.sleep(0.05)
    assert not is_ready(log)
    # the process is alive and well
    c = chan()
    go(c.send, 1)
    assert recv_timeout(c) == 1


@pytest.mark.timeout(10)
def test_goexit_not_caught_by_except_exception():
    log = chan(10)

    def f():
        try:
            goexit()
        except Exception:
            log.send("caught")
        log.send("continued")

    go(f)
    stdtime.sleep(0.1)
    assert not is_ready(log)


@pytest.mark.timeout(10)
def test_goexit_goroutine_count_drops():
    before = num_goroutine()
    done = chan(50)

    def f():
        try:
            goexit()
        finally:
            done.send(1)

    for _ in range(50):
        go(f)
    for _ in range(50):
        recv_timeout(done)
    wait_until(lambda: num_goroutine() <= before, timeout=5)


# ---------------------------------------------------------------- stack

def test_stack_main_goroutine():
    s = stack()
    assert isinstance(s, str)
    assert re.match(r"goroutine 1 \[running\]:\n", s), s[:200]
    assert "test_stack_main_goroutine" in s


@pytest.mark.timeout(10)
def test_stack_in_goroutine():
    def a_distinctive_function_name():
        return stack()

    s = in_goroutine(a_distinctive_function_name)
    m = re.match(r"goroutine (\d+) \[running\]:\n", s)
    assert m, s[:200]
    assert int(m.group(1)) > 1
    assert "a_distinctive_function_name" in s
    assert "created by" in s


@pytest.mark.timeout(10)
def test_goroutine_ids_unique():
    n = 50
    ids = chan(n)
    for _ in range(n):
        go(lambda: ids.send(my_goid()))
    got = [recv_timeout(ids) for _ in range(n)]
    assert len(set(got)) == n
    assert 1 not in got


@pytest.mark.timeout(15)
def test_stack_all_lists_parked_goroutines():
    ids = chan(1)
    gate = chan()
    sgate = chan()

    def parked_on_receive_xyz():
        ids.send(my_goid())
        gate.recv()

    def parked_on_send_xyz():
        ids.send(my_goid())
        sgate.send(1)

    go(parked_on_receive_xyz)
    gid = recv_timeout(ids)
    go(parked_on_send_xyz)
    gid2 = recv_timeout(ids)
    try:
        wait_parked(gid, "chan receive")
        wait_parked(gid2, "chan send")
        s = stack(all=True)
        assert re.search(r"^goroutine 1 \[running\]:", s, re.M), s[:500]
        m = re.search(r"^goroutine %d \[chan receive(, \d+ minutes)?\]:\n" % gid, s, re.M)
        assert m, s
        block = s[m.start():].split("\n\ngoroutine ")[0]
        assert "parked_on_receive_xyz" in block
        assert "created by" in block
        assert re.search(r"^goroutine %d \[chan send(, \d+ minutes)?\]:" % gid2, s, re.M)
        # the plain current-goroutine form does not list the others
        assert ("goroutine %d " % gid) not in stack()
    finally:
        gate.close()
        sgate.recv()


@pytest.mark.timeout(15)
def test_stack_all_states_select_and_sleep():
    from pygmp import nilchan, select
    from pygmp.time import sleep
    ids = chan(1)
    gate = chan()

    def in_select():
        ids.send(my_goid())
        select(gate.recv, nilchan.recv)

    def in_sleep():
        ids.send(my_goid())
        sleep(3)

    go(in_select)
    g1 = recv_timeout(ids)
    go(in_sleep)
    g2 = recv_timeout(ids)
    wait_parked(g1, "select")
    wait_parked(g2, "sleep")
    gate.close()


# ---------------------------------------------------------------- locked

@pytest.mark.timeout(10)
def test_go_locked_runs_on_dedicated_thread():
    res = chan(1)

    def f(a, k=None):
        rt.lock_os_thread()
        rt.unlock_os_thread()
        res.send((threading.get_ident(), a, k))

    rt.go_locked(f, 1, k=2)
    tid, a, k = recv_timeout(res)
    assert (a, k) == (1, 2)
    assert tid != threading.get_ident()


@pytest.mark.timeout(10)
def test_lock_os_thread_keeps_goroutine_on_thread():
    def f():
        rt.lock_os_thread()
        try:
            t0 = threading.get_ident()
            for _ in range(20):
                gosched()
                c = chan(1)
                c.send(1)
                c.recv()
                assert threading.get_ident() == t0
            return True
        finally:
            rt.unlock_os_thread()

    assert in_goroutine(f) is True


def test_set_max_threads_returns_previous():
    prev = rt.set_max_threads(5000)
    try:
        assert prev == 10000
        assert rt.set_max_threads(prev) == 5000
    finally:
        rt.set_max_threads(prev)


@pytest.mark.parametrize("val", ["0", "-2", "abc", ""])
def test_gomaxprocs_env_invalid_ignored(val):
    # Go ignores a GOMAXPROCS that is not a positive integer
    r = run_script("""
        from pygmp.runtime import gomaxprocs, num_cpu
        print(gomaxprocs() == num_cpu())
    """, timeout=30, env={"GOMAXPROCS": val})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True"]

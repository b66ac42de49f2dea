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

"""pygmp.sync: WaitGroup, Mutex, RWMutex, Once, Cond, Semaphore (API.md
"pygmp.sync"; Go's sync and x/sync/semaphore semantics)."""
import os
import sys
import threading
import time as stdtime

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _helpers import (gomaxprocs_set, in_goroutine, in_thread, is_ready,  # noqa: E402
                      my_goid, recv_timeout, wait_blocked)

from pygmp import PanicError, chan, go  # noqa: E402
from pygmp.runtime import gosched  # noqa: E402
from pygmp.sync import Cond, Mutex, Once, RWMutex, Semaphore, WaitGroup  # noqa: E402


def _sanity():
    c = chan()
    go(c.send, 1)
    assert recv_timeout(c) == 1


# ================================================================ WaitGroup

@pytest.mark.timeout(10)
def test_waitgroup_zero_wait_returns():
    wg = WaitGroup()
    wg.wait()
    in_goroutine(wg.wait)
    in_thread(wg.wait)


@pytest.mark.timeout(15)
def test_waitgroup_waits_for_goroutines():
    wg = WaitGroup()
    n = 50
    results = []
    lock = threading.Lock()
    gate = chan()

    def worker(i):
        gate.recv()
        with lock:
            results.append(i)
        wg.done()

    wg.add(n)
    for i in range(n):
        go(worker, i)
    waited = chan(1)
    go(lambda: (wg.wait(), waited.send(len(results))))
    stdtime.sleep(0.02)
    assert not is_ready(waited)
    for _ in range(n):
        gate.send(None)
    assert recv_timeout(waited) == n
    wg.wait()  # main too
    assert sorted(results) == list(range(n))


@pytest.mark.timeout(15)
def test_waitgroup_several_waiters_and_plain_thread():
    wg = WaitGroup()
    wg.add(1)
    out = chan(10)
    for _ in range(4):
        go(lambda: (wg.wait(), out.send("g")))
    for _ in range(2):
        threading.Thread(target=lambda: (wg.wait(), out.send("t")), daemon=True).start()
    stdtime.sleep(0.02)
    assert not is_ready(out)
    go(wg.done)
    got = sorted(recv_timeout(out) for _ in range(6))
    assert got == ["g"] * 4 + ["t"] * 2


@pytest.mark.timeout(15)
def test_waitgroup_done_from_plain_threads():
    wg = WaitGroup()
    wg.add(5)
    for _ in range(5):
        threading.Thread(target=wg.done, daemon=True).start()
    in_goroutine(wg.wait)


@pytest.mark.timeout(10)
def test_waitgroup_add_more_than_one_and_reuse():
    wg = WaitGroup()
    wg.add(3)
    wg.done()
    wg.add(-2)  # Go allows negative deltas
    wg.wait()
    wg.add(1)
    go(wg.done)
    in_goroutine(wg.wait)


@pytest.mark.timeout(10)
def test_waitgroup_negative_panics():
    wg = WaitGroup()
    with pytest.raises(PanicError) as ei:
        wg.done()
    assert str(ei.value) == "sync: negative WaitGroup counter"
    wg2 = WaitGroup()
    wg2.add(1)
    with pytest.raises(PanicError) as ei:
        wg2.add(-2)
    assert str(ei.value) == "sync: negative WaitGroup counter"

    def in_g():
        w = WaitGroup()
        try:
            w.add(-1)
        except PanicError as e:
            return str(e)

    assert in_goroutine(in_g) == "sync: negative WaitGroup counter"
    _sanity()


# ================================================================ Mutex

@pytest.mark.timeout(10)
def test_mutex_basic_and_try_lock():
    m = Mutex()
    m.lock()
    assert m.try_lock() is False
    assert in_goroutine(m.try_lock) is False
    m.unlock()
    assert m.try_lock() is True
    m.unlock()
    with m:
        assert m.try_lock() is False
    assert m.try_lock() is True
    m.unlock()


@pytest.mark.timeout(10)
def test_mutex_context_manager_releases_on_exception():
    m = Mutex()
    with pytest.raises(KeyError):
        with m:
            raise KeyError("x")
    assert m.try_lock()
    m.unlock()


@pytest.mark.timeout(10)
def test_mutex_unlock_unlocked_panics():
    m = Mutex()
    with pytest.raises(PanicError) as ei:
        m.unlock()
    assert str(ei.value) == "sync: unlock of unlocked mutex"
    m.lock()
    m.unlock()
    with pytest.raises(PanicError):
        m.unlock()
    _sanity()


@pytest.mark.timeout(10)
def test_mutex_not_owner_bound():
    # Go: a locked Mutex is not tied to a goroutine; another may unlock it
    m = Mutex()
    m.lock()
    in_goroutine(m.unlock)
    assert m.try_lock()
    m.unlock()


@pytest.mark.timeout(10)
def test_mutex_blocks_goroutine_until_unlock():
    m = Mutex()
    m.lock()
    got = chan(1)

    def f():
        m.lock()
        got.send(True)
        m.unlock()

    go(f)
    stdtime.sleep(0.02)
    assert not is_ready(got)
    m.unlock()
    assert recv_timeout(got) is True


@pytest.mark.timeout(60)
@pytest.mark.parametrize("procs", [1, 2, 3, 4])
def test_mutex_exact_counter_under_contention(procs):
    with gomaxprocs_set(procs):
        m = Mutex()
        box = [0]
        n_g, per = 40, 200
        wg = WaitGroup()
        wg.add(n_g)

        def worker():
            for i in range(per):
                with m:
                    v = box[0]
                    if i % 16 == 0:
                        gosched()  # yield while holding the lock
                    box[0] = v + 1
            wg.done()

        for _ in range(n_g):
            go(worker)
        done = chan(1)
        go(lambda: (wg.wait(), done.send(1)))
        recv_timeout(done, 50)
        assert box[0] == n_g * per


@pytest.mark.timeout(60)
def test_mutex_shared_by_threads_and_goroutines():
    with gomaxprocs_set(2):
        m = Mutex()
        box = [0]
        per = 300
        wg = WaitGroup()
        wg.add(8)

        def work():
            for _ in range(per):
                m.lock()
                v = box[0]
                stdtime.sleep(0)  # release the GIL inside the critical section
                box[0] = v + 1
                m.unlock()
            wg.done()

        for _ in range(4):
            go(work)
        ts = [threading.Thread(target=work, daemon=True) for _ in range(4)]
        for t in ts:
            t.start()
        in_thread(wg.wait, timeout=50)
        assert box[0] == 8 * per


# ================================================================ RWMutex

@pytest.mark.timeout(15)
def test_rwmutex_readers_concurrent():
    rw = RWMutex()
    n = 10
    holding = chan(n)
    release = chan()
    done = chan(n)

    def reader():
        rw.rlock()
        holding.send(1)
        release.recv()   # all n hold the read lock at once, or this deadlocks
        rw.runlock()
        done.send(1)

    for _ in range(n):
        go(reader)
    for _ in range(n):
        recv_timeout(holding)
    release.close()
    for _ in range(n):
        recv_timeout(done)
    # and from a plain thread while goroutines hold it
    rw.rlock()
    in_thread(lambda: (rw.rlock(), rw.runlock()))
    in_goroutine(lambda: (rw.rlock(), rw.runlock()))
    rw.runlock()


@pytest.mark.timeout(15)
def test_rwmutex_writer_excludes_readers_and_writers():
    rw = RWMutex()
    rw.lock()
    got = chan(2)
    go(lambda: (rw.rlock(), got.send("r"), rw.runlock()))
    go(lambda: (rw.lock(), got.send("w"), rw.unlock()))
    stdtime.sleep(0.05)
    assert not is_ready(got)
    rw.unlock()
    assert sorted([recv_timeout(got), recv_timeout(got)]) == ["r", "w"]


@pytest.mark.timeout(15)
def test_rwmutex_reader_excludes_writer():
    rw = RWMutex()
    rw.rlock()
    got = chan(1)
    go(lambda: (rw.lock(), got.send("w"), rw.unlock()))
    stdtime.sleep(0.05)
    assert not is_ready(got)
    rw.runlock()
    assert recv_timeout(got) == "w"


@pytest.mark.timeout(15)
def test_rwmutex_pending_writer_blocks_new_readers():
    # Go: "If any goroutine calls Lock while the lock is already held by one or
    # more readers, concurrent calls to RLock will block until the writer has
    # acquired (and released) the lock."
    rw = RWMutex()
    rw.rlock()
    order = chan(4)
    ids = chan(1)
    go(lambda: (ids.send(my_goid()), rw.lock(), order.send("w"), rw.unlock()))
    wait_blocked(recv_timeout(ids))  # writer parked in lock()
    go(lambda: (rw.rlock(), order.send("r"), rw.runlock()))
    stdtime.sleep(0.05)
    assert not is_ready(order)  # new reader waits behind the writer
    rw.runlock()
    assert recv_timeout(order) == "w"
    assert recv_timeout(order) == "r"


@pytest.mark.timeout(30)
def test_rwmutex_invariant_under_contention():
    with gomaxprocs_set(2):
        rw = RWMutex()
        state = {"readers": 0, "writers": 0, "bad": 0, "count": 0}
        lk = threading.Lock()
        wg = WaitGroup()
        n_r, n_w, per = 10, 4, 100
        wg.add(n_r + n_w)

        def reader():
            for _ in range(per):
                rw.rlock()
                with lk:
                    state["readers"] += 1
                    if state["writers"]:
                        state["bad"] += 1
                gosched()
                with lk:
                    state["readers"] -= 1
                rw.runlock()
            wg.done()

        def writer():
            for _ in range(per):
                rw.lock()
                with lk:
                    state["writers"] += 1
                    if state["writers"] != 1 or state["readers"]:
                        state["bad"] += 1
                c = state["count"]
                gosched()
                state["count"] = c + 1
                with lk:
                    state["writers"] -= 1
                rw.unlock()
            wg.done()

        for _ in range(n_r):
            go(reader)
        for _ in range(n_w):
            go(writer)
        in_thread(wg.wait, timeout=25)
        assert state["bad"] == 0
        assert state["count"] == n_w * per


@pytest.mark.timeout(10)
def test_rwmutex_unlock_errors():
    rw = RWMutex()
    with pytest.raises(PanicError) as ei:
        rw.runlock()
    assert str(ei.value) == "sync: RUnlock of unlocked RWMutex"
    with pytest.raises(PanicError) as ei:
        rw.unlock()
    assert str(ei.value) == "sync: Unlock of unlocked RWMutex"
    rw.lock()
    rw.unlock()
    rw.rlock()
    rw.runlock()
    _sanity()


# ================================================================ Once

@pytest.mark.timeout(10)
def test_once_runs_once():
    o = Once()
    calls = []
    o.do(lambda: calls.append(1))
    o.do(lambda: calls.append(2))
    in_goroutine(o.do, lambda: calls.append(3))
    in_thread(o.do, lambda: calls.append(4))
    assert calls == [1]


@pytest.mark.timeout(15)
def test_once_concurrent_callers_wait_for_the_one_call():
    o = Once()
    calls = []
    gate = chan()
    n = 30
    out = chan(n)

    def fn():
        gate.recv()  # park inside fn; the other callers must wait
        calls.append(1)

    def caller():
        o.do(fn)
        out.send(len(calls))  # fn has returned when do() returns

    for _ in range(n):
        go(caller)
    stdtime.sleep(0.05)
    assert not is_ready(out)
    gate.send(None)
    assert [recv_timeout(out) for _ in range(n)] == [1] * n
    assert calls == [1]


@pytest.mark.timeout(10)
def test_once_exception_counts_as_done():
    o = Once()
    calls = []

    def boom():
        calls.append("boom")
        raise ValueError("boom")

    with pytest.raises(ValueError):
        o.do(boom)
    o.do(lambda: calls.append("again"))  # Go: do() after a panic does not run f
    assert calls == ["boom"]

    o2 = Once()

    def in_g():
        try:
            o2.do(boom)
        except ValueError:
            return "raised"

    assert in_goroutine(in_g) == "raised"
    o2.do(lambda: calls.append("x"))
    assert calls == ["boom", "boom"]


# ================================================================ Cond

@pytest.mark.timeout(15)
def test_cond_signal_wakes_one():
    m = Mutex()
    c = Cond(m)
    ready = [0]
    woke = chan(10)
    n = 3

    def waiter(i):
        m.lock()
        ready[0] += 1
        c.wait()
        m.unlock()
        woke.send(i)

    for i in range(n):
        go(waiter, i)
    # wait until all n are waiting (they incremented under the lock, then waited)
    deadline = stdtime.monotonic() + 5
    while True:
        with m:
            if ready[0] == n:
                break
        assert stdtime.monotonic() < deadline
        stdtime.sleep(0.005)
    got = []
    for k in range(n):
        with m:
            c.signal()
        got.append(recv_timeout(woke))
        stdtime.sleep(0.02)
        assert not is_ready(woke) if k < n - 1 else True
    assert sorted(got) == list(range(n))


@pytest.mark.timeout(15)
def test_cond_broadcast_wakes_all_goroutines_and_threads():
    m = Mutex()
    c = Cond(m)
    flag = [False]
    waiting = [0]
    n_g, n_t = 8, 3
    woke = chan(n_g + n_t)

    def waiter(kind):
        m.lock()
        waiting[0] += 1
        while not flag[0]:
            c.wait()
        m.unlock()
        woke.send(kind)

    for _ in range(n_g):
        go(waiter, "g")
    for _ in range(n_t):
        threading.Thread(target=waiter, args=("t",), daemon=True).start()
    deadline = stdtime.monotonic() + 5
    while True:
        with m:
            if waiting[0] == n_g + n_t:
                break
        assert stdtime.monotonic() < deadline
        stdtime.sleep(0.005)
    with m:
        flag[0] = True
        c.broadcast()
    got = sorted(recv_timeout(woke) for _ in range(n_g + n_t))
    assert got == ["g"] * n_g + ["t"] * n_t


@pytest.mark.timeout(15)
def test_cond_producer_consumer():
    m = Mutex()
    c = Cond(m)
    q = []
    out = chan(100)

    def consumer():
        for _ in range(50):
            m.lock()
            while not q:
                c.wait()
            out.send(q.pop(0))
            m.unlock()

    go(consumer)
    for i in range(50):
        with m:
            q.append(i)
            c.signal()
        if i % 7 == 0:
            gosched()
    assert [recv_timeout(out) for _ in range(50)] == list(range(50))


@pytest.mark.timeout(10)
def test_cond_with_rwmutex_locker():
    rw = RWMutex()
    c = Cond(rw)
    flag = [False]
    done = chan(1)

    def w():
        rw.lock()
        while not flag[0]:
            c.wait()
        rw.unlock()
        done.send(1)

    go(w)
    stdtime.sleep(0.02)
    rw.lock()
    flag[0] = True
    c.broadcast()
    rw.unlock()
    recv_timeout(done)


# ================================================================ Semaphore

@pytest.mark.timeout(10)
def test_semaphore_try_acquire_weights():
    s = Semaphore(5)
    assert s.try_acquire(3) is True
    assert s.try_acquire(3) is False
    assert s.try_acquire(2) is True
    assert s.try_acquire() is False
    s.release(4)
    assert s.try_acquire(4) is True
    s.release(5)
    assert s.try_acquire(5) is True
    s.release(5)


@pytest.mark.timeout(15)
def test_semaphore_acquire_blocks_until_release():
    s = Semaphore(2)
    s.acquire(2)
    got = chan(2)
    go(lambda: (s.acquire(), got.send("a")))
    go(lambda: (s.acquire(), got.send("b")))
    stdtime.sleep(0.03)
    assert not is_ready(got)
    s.release()
    first = recv_timeout(got)
    stdtime.sleep(0.03)
    assert not is_ready(got)
    s.release()
    second = recv_timeout(got)
    assert {first, second} == {"a", "b"}


@pytest.mark.timeout(15)
def test_semaphore_weighted_waiter():
    s = Semaphore(4)
    s.acquire(3)
    got = chan(1)
    go(lambda: (s.acquire(3), got.send(1)))
    s.release(1)  # 2 free: not enough for 3
    stdtime.sleep(0.03)
    assert not is_ready(got)
    s.release(2)  # 4 free
    recv_timeout(got)
    assert s.try_acquire(1) is True
    assert s.try_acquire(1) is False
    s.release(4)


@pytest.mark.timeout(30)
def test_semaphore_bounds_concurrency():
    with gomaxprocs_set(2):
        limit = 3
        s = Semaphore(limit)
        lk = threading.Lock()
        state = {"cur": 0, "max": 0}
        wg = WaitGroup()
        n = 40
        wg.add(n + 4)

        def work():
            s.acquire()
            with lk:
                state["cur"] += 1
                state["max"] = max(state["max"], state["cur"])
            gosched()
            with lk:
                state["cur"] -= 1
            s.release()
            wg.done()

        for _ in range(n):
            go(work)
        for _ in range(4):
            threading.Thread(target=work, daemon=True).start()
        in_thread(wg.wait, timeout=25)
        assert 1 <= state["max"] <= limit
        assert s.try_acquire(limit)
        s.release(limit)

"""Channels and go(): API.md "Core", Go's chan.go semantics."""
import os
import sys
import threading
import time as stdtime

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _helpers import (in_goroutine, in_thread, is_ready, my_goid,  # noqa: E402
                      recv_timeout, wait_parked)

import pygmp  # noqa: E402
from pygmp import PanicError, chan, default, go, nilchan, select  # noqa: E402


def _sanity():
    """The runtime still works: a goroutine hands a value to the caller."""
    c = chan()
    go(c.send, "ok")
    assert recv_timeout(c, 10) == "ok"


# ---------------------------------------------------------------- errors

def test_panicerror_is_exception():
    assert issubclass(PanicError, Exception)
    assert pygmp.PanicError is PanicError


@pytest.mark.timeout(20)
@pytest.mark.parametrize("bad", ["3", 1.5, [1], object()])
def test_chan_size_type_error(bad):
    with pytest.raises(TypeError):
        chan(bad)
    _sanity()


@pytest.mark.timeout(20)
@pytest.mark.parametrize("bad", [-1, -100])
def test_chan_size_value_error(bad):
    with pytest.raises(ValueError):
        chan(bad)
    _sanity()


def test_chan_len_cap():
    c = chan()
    assert len(c) == 0 and c.cap() == 0
    b = chan(3)
    assert len(b) == 0 and b.cap() == 3
    b.send(1)
    b.send(2)
    assert len(b) == 2 and b.cap() == 3
    b.recv()
    assert len(b) == 1
    assert chan(size=5).cap() == 5


def test_nilchan_len_cap():
    # Go: len and cap of a nil channel are 0
    assert len(nilchan) == 0
    assert nilchan.cap() == 0


@pytest.mark.timeout(20)
@pytest.mark.parametrize("bad", [42, None, "fn"])
def test_go_non_callable_type_error_at_call_site(bad):
    with pytest.raises(TypeError):
        go(bad)
    _sanity()


# ---------------------------------------------------------------- go()

@pytest.mark.timeout(10)
def test_go_returns_none_and_passes_args():
    c = chan(1)

    def f(a, b, *, k):
        c.send((a, b, k))

    assert go(f, 1, 2, k=3) is None
    assert recv_timeout(c) == (1, 2, 3)


@pytest.mark.timeout(10)
def test_go_never_blocks():
    # go() returns before the goroutine has done anything observable.
    gate = chan()
    out = chan(1)

    def f():
        gate.recv()
        out.send(1)

    t0 = stdtime.monotonic()
    for _ in range(100):
        go(f)
    assert stdtime.monotonic() - t0 < 5
    for _ in range(100):
        gate.send(None)
        assert recv_timeout(out) == 1


@pytest.mark.timeout(10)
def test_go_from_goroutine():
    c = chan()

    def inner(x):
        c.send(x * 2)

    def outer():
        go(inner, 21)

    go(outer)
    assert recv_timeout(c) == 42


@pytest.mark.timeout(15)
def test_go_from_plain_thread():
    c = chan()

    def thread_body():
        for i in range(10):
            go(c.send, i)

    in_thread(thread_body)
    got = sorted(recv_timeout(c) for _ in range(10))
    assert got == list(range(10))


@pytest.mark.timeout(15)
def test_plain_thread_blocks_on_chan():
    c = chan()
    res = chan(1)

    def thread_body():
        res.send(c.recv() + 1)

    t = threading.Thread(target=thread_body, daemon=True)
    t.start()
    go(c.send, 41)
    assert recv_timeout(res) == 42
    t.join(5)
    assert not t.is_alive()


# ---------------------------------------------------------------- semantics

@pytest.mark.timeout(10)
def test_unbuffered_handoff_blocks_sender():
    c = chan()
    sent = chan(1)

    def sender():
        c.send("x")
        sent.send(True)

    go(sender)
    stdtime.sleep(0.05)  # give it time to park; correctness does not depend on it
    assert not is_ready(sent), "unbuffered send completed without a receiver"
    assert recv_timeout(c) == "x"
    assert recv_timeout(sent) is True


@pytest.mark.timeout(10)
def test_unbuffered_receiver_blocks_until_send():
    c = chan()
    got = chan(1)
    go(lambda: got.send(c.recv()))
    stdtime.sleep(0.05)
    assert not is_ready(got)
    c.send(7)
    assert recv_timeout(got) == 7


@pytest.mark.timeout(10)
def test_buffered_fifo_and_full():
    c = chan(3)
    for v in ("a", "b", "c"):
        c.send(v)
    assert len(c) == 3
    # full: a 4th send is not ready
    i, _ = select((c.send, "d"), default)
    assert i == 1
    assert [c.recv(), c.recv(), c.recv()] == ["a", "b", "c"]
    assert len(c) == 0


@pytest.mark.timeout(10)
def test_buffered_blocked_sender_fifo():
    c = chan(1)
    c.send(0)
    done = chan(3)

    ids = chan(1)

    def sender(v):
        ids.send(my_goid())
        c.send(v)
        done.send(v)

    # park three senders one after another (each parked before the next starts)
    for v in (1, 2, 3):
        go(sender, v)
        wait_parked(recv_timeout(ids), "chan send")
    assert [recv_timeout(c) for _ in range(4)] == [0, 1, 2, 3]
    assert sorted(recv_timeout(done) for _ in range(3)) == [1, 2, 3]


@pytest.mark.timeout(10)
def test_values_are_objects_identity_and_none():
    c = chan(2)
    obj = object()
    c.send(obj)
    c.send(None)
    assert c.recv() is obj
    assert c.recv_() == (None, True)


@pytest.mark.timeout(10)
def test_recv_on_closed_drained():
    c = chan(2)
    c.send(1)
    c.send(2)
    c.close()
    assert c.recv_() == (1, True)
    assert c.recv() == 2
    assert c.recv() is None
    assert c.recv_() == (None, False)
    assert c.recv_() == (None, False)
    assert len(c) == 0


@pytest.mark.timeout(10)
def test_unbuffered_closed_recv():
    c = chan()
    c.close()
    assert c.recv() is None
    assert c.recv_() == (None, False)


@pytest.mark.timeout(15)
def test_close_wakes_all_receivers():
    c = chan()
    n = 20
    res = chan(n)

    def rx(use_ok):
        if use_ok:
            res.send(c.recv_())
        else:
            res.send(("plain", c.recv()))

    for i in range(n):
        go(rx, i % 2 == 0)
    stdtime.sleep(0.05)
    c.close()
    got = [recv_timeout(res) for _ in range(n)]
    assert got.count((None, False)) == n // 2
    assert got.count(("plain", None)) == n // 2


@pytest.mark.timeout(15)
def test_close_wakes_plain_thread_receiver():
    c = chan()
    res = chan(1)
    t = threading.Thread(target=lambda: res.send(c.recv_()), daemon=True)
    t.start()
    stdtime.sleep(0.05)
    c.close()
    assert recv_timeout(res) == (None, False)


@pytest.mark.timeout(10)
def test_iteration_until_closed():
    c = chan(4)

    def producer():
        for i in range(50):
            c.send(i)
        c.close()

    go(producer)
    assert list(c) == list(range(50))


@pytest.mark.timeout(10)
def test_iteration_in_goroutine():
    c = chan()

    def consume():
        return [v for v in c]

    def produce():
        for i in range(10):
            c.send(i)
        c.close()

    go(produce)
    assert in_goroutine(consume) == list(range(10))


@pytest.mark.timeout(10)
def test_send_on_closed_panics():
    for size in (0, 1, 5):
        c = chan(size)
        c.close()
        with pytest.raises(PanicError) as ei:
            c.send(1)
        assert str(ei.value) == "send on closed channel"
    _sanity()


@pytest.mark.timeout(10)
def test_send_on_closed_panics_in_goroutine():
    c = chan()
    c.close()

    def f():
        try:
            c.send(1)
        except PanicError as e:
            return str(e)
        return "no panic"

    assert in_goroutine(f) == "send on closed channel"


@pytest.mark.timeout(10)
def test_close_twice_panics():
    c = chan(1)
    c.close()
    with pytest.raises(PanicError) as ei:
        c.close()
    assert str(ei.value) == "close of closed channel"
    _sanity()


@pytest.mark.timeout(10)
@pytest.mark.parametrize("size", [0, 1])
def test_blocked_sender_panics_when_closed(size):
    c = chan(size)
    for _ in range(size):
        c.send("fill")
    res = chan(1)

    def sender():
        try:
            c.send("x")
        except PanicError as e:
            res.send(("panic", str(e)))
            return
        res.send(("sent", None))

    go(sender)
    stdtime.sleep(0.05)  # park it (if it is not parked yet it panics anyway)
    c.close()
    assert recv_timeout(res) == ("panic", "send on closed channel")
    # buffered values stay receivable after close
    for _ in range(size):
        assert c.recv_() == ("fill", True)
    assert c.recv_() == (None, False)


@pytest.mark.timeout(10)
def test_blocked_plain_thread_sender_panics_when_closed():
    c = chan()
    res = chan(1)

    def sender():
        try:
            c.send(1)
        except PanicError as e:
            res.send(str(e))

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    stdtime.sleep(0.05)
    c.close()
    assert recv_timeout(res) == "send on closed channel"


# ---------------------------------------------------------------- nilchan

@pytest.mark.timeout(10)
def test_nilchan_never_ready_in_select():
    assert select(nilchan.recv, default) == (1, None)
    assert select(nilchan.recv_, default) == (1, None)
    assert select((nilchan.send, 1), default) == (1, None)
    assert select(default, nilchan.recv) == (0, None)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("op", ["recv", "recv_", "send"])
def test_nilchan_goroutine_stays_parked(op):
    started = chan(1)
    reached = chan(1)

    def f():
        started.send(1)
        if op == "send":
            nilchan.send(1)
        else:
            getattr(nilchan, op)()
        reached.send(1)  # never

    go(f)  # leaks, as in Go
    recv_timeout(started)
    stdtime.sleep(0.1)
    assert not is_ready(reached)
    _sanity()  # the program carries on


@pytest.mark.timeout(10)
def test_nilchan_close_panics():
    with pytest.raises(PanicError) as ei:
        nilchan.close()
    assert str(ei.value) == "close of nil channel"
    _sanity()


# ---------------------------------------------------------------- many

@pytest.mark.timeout(30)
@pytest.mark.parametrize("size", [0, 1, 16])
def test_mpmc_exact(size):
    c = chan(size)
    out = chan()
    nprod, ncons, per = 8, 8, 500
    done = chan(nprod)

    def producer(p):
        for i in range(per):
            c.send(p * per + i)
        done.send(1)

    def consumer():
        s = 0
        n = 0
        for v in c:
            s += v
            n += 1
        out.send((n, s))

    def closer():
        for _ in range(nprod):
            done.recv()
        c.close()

    for p in range(nprod):
        go(producer, p)
    for _ in range(ncons):
        go(consumer)
    go(closer)
    tot_n = tot_s = 0
    for _ in range(ncons):
        n, s = recv_timeout(out, 25)
        tot_n += n
        tot_s += s
    N = nprod * per
    assert tot_n == N
    assert tot_s == N * (N - 1) // 2


@pytest.mark.timeout(30)
def test_threads_and_goroutines_share_channel():
    c = chan(4)
    n_threads, per = 4, 200

    def t_producer(k):
        for i in range(per):
            c.send(("t", k, i))

    threads = [threading.Thread(target=t_producer, args=(k,), daemon=True)
               for k in range(n_threads)]
    for t in threads:
        t.start()
    for k in range(n_threads):
        go(lambda k=k: [c.send(("g", k, i)) for i in range(per)])
    seen = set()
    for _ in range(2 * n_threads * per):
        seen.add(recv_timeout(c, 20))
    assert len(seen) == 2 * n_threads * per
    for t in threads:
        t.join(5)


@pytest.mark.timeout(10)
def test_go_without_function_type_error():
    with pytest.raises(TypeError):
        go()
    _sanity()


@pytest.mark.timeout(10)
def test_for_loop_over_closed_empty_chan():
    c = chan(3)
    c.close()
    assert list(c) == []

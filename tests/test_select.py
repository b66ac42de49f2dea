"""select(): API.md "Core" select row, Go's select semantics."""
import os
import sys
import threading
import time as stdtime

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _helpers import in_goroutine, in_thread, is_ready, recv_timeout  # noqa: E402

from pygmp import PanicError, chan, default, go, nilchan, select  # noqa: E402


def _sanity():
    c = chan()
    go(c.send, "ok")
    assert recv_timeout(c, 10) == "ok"
    assert select(c.recv, default) == (1, None)


# ---------------------------------------------------------------- case kinds

@pytest.mark.timeout(10)
def test_recv_case_value():
    a, b = chan(1), chan(1)
    b.send("B")
    assert select(a.recv, b.recv) == (1, "B")


@pytest.mark.timeout(10)
def test_recv_ok_case_value():
    a = chan(1)
    a.send(5)
    assert select(a.recv_, default) == (0, (5, True))
    a.close()
    assert select(a.recv_, default) == (0, (None, False))


@pytest.mark.timeout(10)
def test_send_case_value_none_and_delivers():
    a = chan(1)
    assert select((a.send, "v"), default) == (0, None)
    assert len(a) == 1
    assert a.recv() == "v"


@pytest.mark.timeout(10)
def test_send_case_handoff_to_parked_receiver():
    a = chan()
    got = chan(1)
    go(lambda: got.send(a.recv()))
    i, v = select((a.send, 99), nilchan.recv)
    assert (i, v) == (0, None)
    assert recv_timeout(got) == 99


@pytest.mark.timeout(10)
def test_default_when_nothing_ready():
    a, b = chan(), chan(1)
    assert select(a.recv, (a.send, 1), b.recv, default) == (3, None)
    assert select(default, a.recv) == (0, None)
    assert select(default) == (0, None)


@pytest.mark.timeout(10)
def test_ready_case_beats_default():
    a = chan(1)
    for _ in range(50):
        a.send(1)
        assert select(default, a.recv) == (1, 1)


@pytest.mark.timeout(10)
def test_blocks_until_ready():
    a, b = chan(), chan()

    def later():
        stdtime.sleep(0.05)
        b.send("late")

    threading.Thread(target=later, daemon=True).start()
    assert select(a.recv, b.recv) == (1, "late")


@pytest.mark.timeout(10)
def test_select_in_goroutine_blocks_until_ready():
    a, b = chan(), chan()

    def f():
        return select(a.recv_, (b.send, "to-b"))

    res = chan(1)
    go(lambda: res.send(f()))
    stdtime.sleep(0.02)
    assert not is_ready(res)
    assert b.recv() == "to-b"
    assert recv_timeout(res) == (1, None)


@pytest.mark.timeout(10)
def test_select_from_plain_thread():
    a = chan()
    go(a.send, 3)
    assert in_thread(lambda: select(nilchan.recv, a.recv)) == (1, 3)


# ---------------------------------------------------------------- randomness

@pytest.mark.timeout(30)
def test_uniform_choice_two_ready_recv():
    a, b = chan(1), chan(1)
    n = 2000
    counts = [0, 0]
    for _ in range(n):
        if len(a) == 0:
            a.send("a")
        if len(b) == 0:
            b.send("b")
        i, v = select(a.recv, b.recv)
        assert v == "ab"[i]
        counts[i] += 1
    # expected 1000 each, sd ~22; bounds are > 10 sd wide
    assert 750 < counts[0] < 1250, counts


@pytest.mark.timeout(30)
def test_uniform_choice_three_mixed_cases():
    a, b, c = chan(1), chan(1), chan(1)
    n = 3000
    counts = [0, 0, 0]
    for _ in range(n):
        if len(a) == 0:
            a.send(1)
        if len(b) == 0:
            b.send(2)
        # c is empty so a send case on it is ready
        while len(c):
            c.recv()
        i, _ = select(a.recv, b.recv_, (c.send, 3), default)
        assert i != 3
        counts[i] += 1
    for k in counts:
        assert 700 < k < 1300, counts  # expected 1000 each


@pytest.mark.timeout(30)
def test_uniform_choice_in_goroutine():
    def f():
        a, b = chan(1), chan(1)
        counts = [0, 0]
        for _ in range(1000):
            if not len(a):
                a.send(0)
            if not len(b):
                b.send(1)
            i, _ = select(a.recv, b.recv)
            counts[i] += 1
        return counts

    counts = in_goroutine(f, timeout=25)
    assert 350 < counts[0] < 650, counts


# ---------------------------------------------------------------- closed

@pytest.mark.timeout(10)
def test_closed_channel_always_ready_for_recv():
    a = chan()
    a.close()
    for _ in range(20):
        assert select(a.recv, default) == (0, None)
        assert select(default, a.recv_) == (1, (None, False))
        assert select(nilchan.recv, a.recv) == (1, None)


@pytest.mark.timeout(10)
def test_closed_buffered_drains_first():
    a = chan(2)
    a.send(1)
    a.send(2)
    a.close()
    assert select(a.recv_, default) == (0, (1, True))
    assert select(a.recv_, default) == (0, (2, True))
    assert select(a.recv_, default) == (0, (None, False))


@pytest.mark.timeout(10)
def test_send_case_on_closed_panics_over_default():
    a = chan(1)
    a.close()
    for _ in range(20):
        with pytest.raises(PanicError) as ei:
            select((a.send, 1), default)
        assert str(ei.value) == "send on closed channel"
    for _ in range(20):
        with pytest.raises(PanicError):
            select(default, (a.send, 1))
    _sanity()


@pytest.mark.timeout(10)
def test_send_case_on_closed_panics_when_chosen():
    a = chan(1)
    a.close()
    b = chan(1)
    panics = oks = 0
    for _ in range(200):
        if not len(b):
            b.send(1)
        try:
            i, v = select((a.send, 1), b.recv)
            assert i == 1
            oks += 1
        except PanicError as e:
            assert str(e) == "send on closed channel"
            panics += 1
    # both cases are ready; each is chosen about half of the time
    assert panics > 40 and oks > 40, (panics, oks)


@pytest.mark.timeout(10)
def test_parked_select_panics_when_send_channel_closed():
    a, b = chan(), chan()
    res = chan(1)

    def f():
        try:
            r = select(b.recv, (a.send, "x"))
        except PanicError as e:
            res.send(("panic", str(e)))
            return
        res.send(("ret", r))

    go(f)
    stdtime.sleep(0.05)  # parked or not, it must panic
    a.close()
    assert recv_timeout(res) == ("panic", "send on closed channel")
    _sanity()


@pytest.mark.timeout(10)
def test_parked_select_recv_woken_by_close():
    a, b = chan(), chan()
    res = chan(1)
    go(lambda: res.send(select(b.recv, a.recv_)))
    stdtime.sleep(0.02)
    a.close()
    assert recv_timeout(res) == (1, (None, False))


@pytest.mark.timeout(10)
def test_parked_select_in_plain_thread_woken_by_close():
    a = chan()
    res = chan(1)
    threading.Thread(target=lambda: res.send(select(nilchan.recv, a.recv)),
                     daemon=True).start()
    stdtime.sleep(0.02)
    a.close()
    assert recv_timeout(res) == (1, None)


# ---------------------------------------------------------------- same channel

@pytest.mark.timeout(10)
def test_same_channel_in_several_recv_cases():
    a = chan(1)
    counts = [0, 0]
    for _ in range(400):
        a.send(7)
        i, v = select(a.recv, a.recv_)
        assert v == (7 if i == 0 else (7, True))
        counts[i] += 1
        assert len(a) == 0
    assert counts[0] > 100 and counts[1] > 100, counts


@pytest.mark.timeout(10)
def test_same_channel_send_and_recv_cases():
    a = chan(1)
    # empty: only the send case is ready
    assert select(a.recv, (a.send, 1)) == (1, None)
    # full: only the recv case is ready
    assert select(a.recv, (a.send, 2)) == (0, 1)
    assert len(a) == 0


@pytest.mark.timeout(10)
def test_same_channel_parked_select_takes_value_once():
    a = chan()
    res = chan(2)

    def f():
        res.send(select(a.recv, a.recv_, a.recv))

    go(f)
    a.send(3)  # exactly one of its cases gets it
    i, v = recv_timeout(res)
    assert (i, v) in [(0, 3), (1, (3, True)), (2, 3)]
    assert select(a.recv, default) == (1, None)
    stdtime.sleep(0.02)
    assert not is_ready(res)


# ---------------------------------------------------------------- never ready

@pytest.mark.timeout(10)
def test_empty_select_blocks_forever_in_goroutine():
    started, reached = chan(1), chan(1)

    def f():
        started.send(1)
        select()
        reached.send(1)  # never

    go(f)  # leaks, as in Go
    recv_timeout(started)
    stdtime.sleep(0.1)
    assert not is_ready(reached)
    _sanity()


@pytest.mark.timeout(10)
def test_nilchan_only_select_blocks_forever_in_goroutine():
    started, reached = chan(1), chan(1)

    def f():
        started.send(1)
        select(nilchan.recv, (nilchan.send, 1))
        reached.send(1)

    go(f)
    recv_timeout(started)
    stdtime.sleep(0.1)
    assert not is_ready(reached)
    _sanity()


# ---------------------------------------------------------------- malformed

def _malformed_cases():
    c = chan(1)
    return [
        ("two defaults", (default, default)),
        ("two defaults + case", (c.recv, default, default)),
        ("int", (42,)),
        ("None", (None,)),
        ("string", ("recv",)),
        ("bare chan", (c,)),
        ("bare send method", (c.send,)),
        ("unrelated callable", (print,)),
        ("lambda", (lambda: 1,)),
        ("recv in tuple", ((c.recv, 1),)),
        ("1-tuple send", ((c.send,),)),
        ("3-tuple send", ((c.send, 1, 2),)),
        ("empty tuple", ((),)),
        ("list", ([c.send, 1],)),
        ("tuple of non-callable", ((42, 1),)),
    ]


@pytest.mark.timeout(10)
@pytest.mark.parametrize("idx", range(len(_malformed_cases())))
def test_malformed_select_type_error(idx):
    name, cases = _malformed_cases()[idx]
    with pytest.raises(TypeError):
        select(*cases)
    _sanity()


@pytest.mark.timeout(10)
def test_malformed_select_has_no_effect():
    c = chan(1)
    c.send(1)
    with pytest.raises(TypeError):
        select(c.recv, default, default)
    assert len(c) == 1  # nothing was received


# ---------------------------------------------------------------- concurrency

@pytest.mark.timeout(30)
def test_concurrent_selects_no_loss_no_dup():
    a, b = chan(), chan(4)
    out = chan(64)
    n_rx, n_msgs = 8, 2000
    stop = chan()

    def rx():
        while True:
            i, v = select(a.recv, b.recv_, stop.recv)
            if i == 2:
                return
            out.send(v if i == 0 else v[0])

    for _ in range(n_rx):
        go(rx)

    def tx(lo, hi, ch):
        for k in range(lo, hi):
            ch.send(k)

    half = n_msgs // 2
    go(tx, 0, half, a)
    go(tx, half, n_msgs, b)
    got = [recv_timeout(out, 25) for _ in range(n_msgs)]
    assert sorted(got) == list(range(n_msgs))
    stop.close()
    stdtime.sleep(0.02)
    assert not is_ready(out)


@pytest.mark.timeout(30)
def test_select_send_cases_pair_with_select_recv_cases():
    # senders and receivers all in selects (both sides parked in select)
    ch = chan()
    n = 200
    got = chan(n)

    def tx(k):
        select(nilchan.recv, (ch.send, k))

    def rx():
        i, v = select(ch.recv_, nilchan.recv)
        got.send(v[0])

    for k in range(n):
        go(rx)
        go(tx, k)
    assert sorted(recv_timeout(got, 25) for _ in range(n)) == list(range(n))

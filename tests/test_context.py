"""pygmp.context: Go's context package (API.md `pygmp.context`)."""
import copy
import gc
import pickle
import threading
import time as stdtime
import weakref

import pytest

from pygmp import chan, go, nilchan, select
from pygmp import context
from pygmp import time as ptime
from pygmp.context import (background, with_cancel, with_deadline, with_timeout,
                           with_value, canceled, deadline_exceeded)

from _helpers import in_goroutine, in_thread, recv_timeout, is_ready

pytestmark = pytest.mark.timeout(60)


def closed_within(ch, timeout):
    """True if ch is closed (receive ready) within `timeout` seconds."""
    i, _ = select(ch.recv_, ptime.after(timeout).recv)
    return i == 0


# -- errors -------------------------------------------------------------------

def test_error_singletons():
    assert isinstance(canceled, Exception)
    assert isinstance(deadline_exceeded, Exception)
    assert isinstance(deadline_exceeded, TimeoutError)
    assert not isinstance(canceled, TimeoutError)
    assert context.canceled is canceled
    assert str(canceled) == "context canceled"
    assert str(deadline_exceeded) == "context deadline exceeded"
    assert copy.copy(canceled) is canceled
    assert copy.deepcopy(deadline_exceeded) is deadline_exceeded
    assert pickle.loads(pickle.dumps(canceled)) is canceled
    assert pickle.loads(pickle.dumps(deadline_exceeded)) is deadline_exceeded


def test_raise_err_and_catch():
    ctx, cancel = with_cancel(background())
    cancel()
    for _ in range(3):
        with pytest.raises(Exception) as ei:
            raise ctx.err()
        assert ei.value is canceled
    ctx2, cancel2 = with_timeout(background(), -1)
    with pytest.raises(TimeoutError) as ei:
        raise ctx2.err()
    assert ei.value is deadline_exceeded
    cancel2()


def test_repeated_raise_does_not_grow_traceback():
    ctx, cancel = with_cancel(background())
    cancel()

    def f():
        raise ctx.err()

    for _ in range(200):
        try:
            f()
        except context.CanceledError:
            pass
    n, tb = 0, canceled.__traceback__
    while tb is not None:
        n += 1
        tb = tb.tb_next
    assert n < 10


# -- background ---------------------------------------------------------------

def test_background():
    b = background()
    assert b is background()
    assert b.done() is nilchan
    assert b.err() is None
    assert b.value("k") is None
    assert b.deadline() == (None, False)
    assert context.todo().deadline() == (None, False)
    assert context.todo().done() is nilchan
    assert isinstance(b, context.Context)


def test_nil_parent_rejected():
    with pytest.raises(TypeError):
        with_cancel(None)
    with pytest.raises(TypeError):
        with_value(background(), None, 1)
    with pytest.raises(TypeError):
        with_value(background(), [], 1)
    with pytest.raises(TypeError):
        with_timeout(background(), "1")
    with pytest.raises(TypeError):
        with_deadline(background(), None)


# -- with_cancel --------------------------------------------------------------

def test_with_cancel_basic():
    ctx, cancel = with_cancel(background())
    d = ctx.done()
    assert d is ctx.done()
    assert ctx.err() is None
    assert not is_ready(d)
    assert ctx.deadline() == (None, False)
    cancel()
    assert ctx.err() is canceled
    assert ctx.done() is d
    assert is_ready(d)
    assert d.recv_() == (None, False)
    cancel()
    cancel()
    assert ctx.err() is canceled


def test_done_after_cancel_is_closed():
    ctx, cancel = with_cancel(background())
    cancel()                        # done() never asked before: still closed
    assert ctx.done().recv_() == (None, False)
    assert ctx.done() is ctx.done()


def test_parent_cancels_children_tree():
    root, cancel_root = with_cancel(background())
    a, cancel_a = with_cancel(root)
    b, _ = with_cancel(with_value(a, "k", 1))      # through a value context
    c, _ = with_timeout(a, 60)
    d, _ = with_cancel(root)
    sibling, cancel_s = with_cancel(background())
    cancel_a()
    assert a.err() is canceled and b.err() is canceled and c.err() is canceled
    assert root.err() is None and d.err() is None
    cancel_root()
    assert d.err() is canceled
    assert sibling.err() is None
    cancel_s()


def test_child_of_cancelled_parent_is_cancelled_at_once():
    p, cancel = with_cancel(background())
    cancel()
    c, cc = with_cancel(p)
    assert c.err() is canceled
    assert c.done().recv_() == (None, False)
    t, tc = with_timeout(p, 30)
    assert t.err() is canceled
    cc()
    tc()


def test_cancel_child_does_not_cancel_parent():
    p, pc = with_cancel(background())
    c, cc = with_cancel(p)
    cc()
    assert c.err() is canceled
    assert p.err() is None
    pc()


def test_children_removed_from_parent_no_leak():
    p, pc = with_cancel(background())
    refs = []
    for i in range(5000):
        c, cc = with_cancel(p)
        t, tc = with_timeout(c, 30)
        v = with_value(t, "i", i)
        if i % 1000 == 0:
            refs.append(weakref.ref(t))
        tc()
        cc()
    assert not p._children
    del c, t, v, cc, tc
    gc.collect()
    assert all(r() is None for r in refs)
    pc()


def test_timer_released_on_cancel():
    ctx, cancel = with_timeout(background(), 30)
    timer = ctx._timer
    assert timer is not None
    cancel()
    assert ctx._timer is None
    assert timer.stop() is False            # no longer armed
    assert ctx.err() is canceled


# -- values -------------------------------------------------------------------

def test_values_walk_parents():
    k1, k2 = object(), object()
    a = with_value(background(), k1, "one")
    b, cb = with_cancel(a)
    c = with_value(b, k2, "two")
    d, cd = with_timeout(c, 30)
    e = with_value(d, k1, "shadow")
    assert d.value(k1) == "one"
    assert d.value(k2) == "two"
    assert e.value(k1) == "shadow"
    assert e.value(k2) == "two"
    assert e.value("missing") is None
    assert b.value(k2) is None
    # a value context exposes its parent's state
    cb()
    assert c.err() is canceled and e.err() is canceled
    assert c.done() is b.done()
    assert e.deadline() == d.deadline()
    cd()


def test_deep_value_chain():
    ctx = background()
    for i in range(5000):
        ctx = with_value(ctx, i, i * 2)
    assert ctx.value(0) == 0
    assert ctx.value(4999) == 9998
    assert ctx.value(-1) is None


def test_value_key_identity_first_then_equality():
    nan = float("nan")                      # never equal to itself: found by identity
    ctx = with_value(background(), nan, "nan")
    assert ctx.value(nan) == "nan"
    assert ctx.value(float("nan")) is None  # another nan: neither identical nor equal
    k = ("a", 1)
    ctx = with_value(ctx, k, "tuple")
    assert ctx.value(("a", 1)) == "tuple"   # an equal key is found too
    assert ctx.value(nan) == "nan"          # ... and the chain is walked up

    class Eq:
        def __eq__(self, other):
            return isinstance(other, Eq)

        def __hash__(self):
            return 0

    a, b = Eq(), Eq()
    c = with_value(with_value(background(), a, "a"), b, "b")
    assert c.value(a) == "b"                # the nearest equal key wins (Go)
    assert c.value(b) == "b"


def test_without_cancel():
    p, pc = with_cancel(with_value(background(), "k", "v"))
    w = context.without_cancel(p)
    c, cc = with_cancel(w)
    pc()
    assert w.err() is None and c.err() is None
    assert w.done() is nilchan
    assert c.value("k") == "v"
    cc()


# -- deadlines ----------------------------------------------------------------

def test_with_timeout_fires_bounded():
    t0 = stdtime.monotonic()
    ctx, cancel = with_timeout(background(), 0.05)
    dl, ok = ctx.deadline()
    assert ok is True and abs(dl - (stdtime.time() + 0.05)) < 0.05
    assert closed_within(ctx.done(), 5.0)
    el = stdtime.monotonic() - t0
    assert 0.04 <= el < 2.0
    assert ctx.err() is deadline_exceeded
    cancel()
    assert ctx.err() is deadline_exceeded        # cancel after expiry keeps it


def test_with_deadline_takes_a_wall_clock_time():
    t = stdtime.time() + 0.05
    ctx, cancel = with_deadline(background(), t)
    assert ctx.deadline() == (t, True)
    assert closed_within(ctx.done(), 5.0)
    assert ctx.err() is deadline_exceeded
    assert stdtime.time() >= t - 0.002
    cancel()


def test_deadline_is_an_absolute_time_time_value():
    a = stdtime.time()
    ctx, cancel = with_timeout(background(), 30)
    b = stdtime.time()
    t, ok = ctx.deadline()
    assert ok is True and isinstance(t, float)
    assert a + 30 <= t <= b + 30            # time.time() + d, not monotonic
    assert abs(t - (ptime.now() + 30)) < 1  # pygmp.time.now() is the same clock
    # with_timeout(p, d) == with_deadline(p, time.time() + d)
    ctx2, cancel2 = with_deadline(background(), t)
    assert ctx2.deadline() == (t, True)
    cancel()
    cancel2()


def test_no_deadline_is_none_false():
    ctx, cancel = with_cancel(background())
    for c in (background(), context.todo(), ctx, with_value(ctx, "k", 1),
              context.without_cancel(ctx)):
        assert c.deadline() == (None, False), c
    cancel()
    # without_cancel drops the parent's deadline too (Go)
    tctx, tcancel = with_timeout(background(), 30)
    assert context.without_cancel(tctx).deadline() == (None, False)
    tcancel()


@pytest.mark.parametrize("past", [1e-9, 0.001, 1, 3600, 1e9])
def test_deadline_in_past_done_at_once(past):
    t = stdtime.time() - past
    ctx, cancel = with_deadline(background(), t)
    assert ctx.err() is deadline_exceeded  # at once, no timer to wait for
    assert is_ready(ctx.done())
    assert ctx.done().recv_() == (None, False)
    assert ctx.deadline() == (t, True)
    assert ctx._timer is None
    cancel()
    assert ctx.err() is deadline_exceeded


@pytest.mark.parametrize("d", [0, -1, -0.001, -1e9])
def test_timeout_nonpositive_done_at_once(d):
    ctx, cancel = with_timeout(background(), d)
    assert ctx.err() is deadline_exceeded
    assert is_ready(ctx.done())
    t, ok = ctx.deadline()
    assert ok and t <= stdtime.time()
    cancel()


def test_deadline_in_past_from_goroutine_and_thread():
    def f():
        ctx, cancel = with_deadline(background(), stdtime.time() - 1)
        try:
            return ctx.err() is deadline_exceeded and ctx.done().recv_() == (None, False)
        finally:
            cancel()

    assert in_goroutine(f) is True
    assert in_thread(f) is True


def test_deadline_in_past_under_cancelled_parent_keeps_parent_err():
    p, pc = with_cancel(background())
    pc()
    c, cc = with_deadline(p, stdtime.time() - 1)
    assert c.err() is canceled              # the parent's cancellation came first (Go)
    cc()


def test_deadline_type_errors():
    for bad in ("1", None, True, [1], object()):
        with pytest.raises(TypeError):
            with_deadline(background(), bad)
        with pytest.raises(TypeError):
            with_timeout(background(), bad)
    with pytest.raises(TypeError):
        with_timeout(None, 1)
    with pytest.raises(TypeError):
        with_deadline(None, stdtime.time() + 1)


def test_child_keeps_parents_earlier_deadline():
    p, pc = with_timeout(background(), 0.1)
    c, cc = with_timeout(p, 60)
    assert c.deadline() == p.deadline()
    c2, cc2 = with_deadline(p, p.deadline()[0] + 1)
    assert c2.deadline() == p.deadline()
    assert closed_within(c.done(), 5.0)
    assert c.err() is deadline_exceeded
    assert c2.err() is deadline_exceeded
    cc()
    cc2()
    pc()


def test_child_deadline_is_earlier_of_own_and_parents():
    p, pc = with_timeout(background(), 60)
    pt = p.deadline()[0]
    for own in (pt - 30, pt - 0.001, pt + 0.001, pt + 30):
        c, cc = with_deadline(p, own)
        assert c.deadline() == (min(own, pt), True), own
        # descendants without a deadline of their own report it too
        v = with_value(c, "k", 1)
        g, gc_ = with_cancel(v)
        assert v.deadline() == g.deadline() == (min(own, pt), True)
        gc_()
        cc()
    pc()


def test_child_with_earlier_deadline_than_parent():
    p, pc = with_timeout(background(), 60)
    c, cc = with_timeout(p, 0.05)
    assert c.deadline()[0] < p.deadline()[0]
    assert closed_within(c.done(), 5.0)
    assert c.err() is deadline_exceeded
    assert p.err() is None
    assert not p._children
    cc()
    pc()


def test_deadline_feeds_conn_deadline_as_is():
    # context deadlines and net conn deadlines are the same time.time() values
    from pygmp import net
    ln = net.listen("tcp", "127.0.0.1:0")
    accepted = chan(1)
    go(lambda: accepted.send(ln.accept()))
    c = net.dial("tcp", ln.addr())
    peer = recv_timeout(accepted)
    try:
        ctx, cancel = with_timeout(background(), 0.1)
        c.set_read_deadline(ctx.deadline()[0])
        t0 = stdtime.monotonic()
        with pytest.raises(net.TimeoutError):
            c.read(10)
        el = stdtime.monotonic() - t0
        assert 0.05 <= el < 3, el
        assert closed_within(ctx.done(), 5.0)
        cancel()
    finally:
        c.close()
        peer.close()
        ln.close()


def test_wall_clock_step_after_setting_moves_no_deadline():
    # The deadline is converted to the monotonic clock when it is set: a
    # wall-clock step afterwards (simulated: time.time replaced before pygmp is
    # imported) changes neither when it fires nor the value deadline() reports.
    from _helpers import run_script
    r = run_script("""
        import time
        _real = time.time
        step = [0.0]
        time.time = lambda: _real() + step[0]
        from pygmp import context

        for jump in (3600.0, -3600.0):
            t = time.time() + 0.2
            ctx, cancel = context.with_deadline(context.background(), t)
            step[0] += jump
            t0 = time.monotonic()
            ctx.done().recv()
            el = time.monotonic() - t0
            assert 0.15 <= el < 2, (jump, el)
            assert ctx.err() is context.deadline_exceeded
            assert ctx.deadline() == (t, True)
            # after the step, time.time() + d is what counts
            ctx2, cancel2 = context.with_deadline(context.background(), time.time() + 0.1)
            t0 = time.monotonic()
            ctx2.done().recv()
            el = time.monotonic() - t0
            assert 0.05 <= el < 2, (jump, el)
            cancel()
            cancel2()
        print("ok")
    """, timeout=25)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ok"]


def test_parent_timeout_cancels_child_with_deadline_exceeded():
    p, pc = with_timeout(background(), 0.05)
    c, cc = with_cancel(p)
    assert closed_within(c.done(), 5.0)
    assert c.err() is deadline_exceeded
    cc()
    pc()


def test_cancel_before_deadline():
    ctx, cancel = with_timeout(background(), 0.2)
    cancel()
    assert ctx.err() is canceled
    stdtime.sleep(0.3)
    assert ctx.err() is canceled


# -- goroutines and threads ---------------------------------------------------

def test_cancel_from_goroutine_wakes_select_in_goroutine():
    ctx, cancel = with_cancel(background())
    work = chan()
    started = chan(1)

    def waiter():
        started.send(True)
        i, _ = select(ctx.done().recv, work.recv)
        return i, ctx.err()

    res = chan(1)
    go(lambda: res.send(waiter()))
    recv_timeout(started)
    go(cancel)
    assert recv_timeout(res, 5) == (0, canceled)


def test_timeout_in_goroutine_select():
    def body():
        ctx, cancel = with_timeout(background(), 0.05)
        try:
            never = chan()
            i, _ = select(never.recv, ctx.done().recv)
            return i, ctx.err()
        finally:
            cancel()

    assert in_goroutine(body, timeout=5) == (1, deadline_exceeded)


def test_plain_thread_waits_and_cancels():
    ctx, cancel = with_cancel(background())
    got = []

    def waiter():
        ctx.done().recv()
        got.append(ctx.err())

    t = threading.Thread(target=waiter, daemon=True)
    t.start()
    stdtime.sleep(0.05)
    in_thread(cancel)
    t.join(5)
    assert not t.is_alive()
    assert got == [canceled]


def test_plain_thread_timeout():
    def body():
        ctx, cancel = with_timeout(background(), 0.05)
        ctx.done().recv()
        cancel()
        return ctx.err()

    assert in_thread(body, timeout=5) is deadline_exceeded


def test_many_goroutines_wait_on_one_context():
    ctx, cancel = with_cancel(background())
    n = 500
    out = chan(n)

    def w():
        ctx.done().recv()
        out.send(ctx.err())

    for _ in range(n):
        go(w)
    stdtime.sleep(0.05)
    cancel()
    for _ in range(n):
        assert recv_timeout(out, 10) is canceled


def test_concurrent_cancel_race():
    """Parents and children cancelled concurrently from threads and goroutines:
    every context ends cancelled exactly once, no child stays registered."""
    for _ in range(20):
        root, rc = with_cancel(background())
        kids = [with_cancel(root) for _ in range(50)]
        grandkids = [with_timeout(k, 30) for k, _ in kids]
        fired = chan(200)

        def cancel_all(fs):
            for f in fs:
                f()
            fired.send(True)

        go(cancel_all, [c for _, c in kids[::2]])
        go(cancel_all, [c for _, c in grandkids])
        t = threading.Thread(target=cancel_all, args=([c for _, c in kids[1::2]] + [rc],))
        t.start()
        go(cancel_all, [rc])
        for _ in range(4):
            recv_timeout(fired, 10)
        t.join(10)
        for k, _ in kids:
            assert k.err() is canceled
        for g, _ in grandkids:
            assert g.err() is canceled
            assert g._timer is None
        assert not root._children


def test_cancel_and_create_race():
    """Children created while the parent is cancelled from another thread are
    never left live."""
    for _ in range(20):
        p, pc = with_cancel(background())
        made = []

        def maker():
            for _ in range(300):
                made.append(with_cancel(p)[0])

        t = threading.Thread(target=maker)
        t.start()
        stdtime.sleep(0.0005)
        pc()
        t.join(10)
        for c in made:
            assert c.err() is canceled


# -- foreign contexts ---------------------------------------------------------

class MyCtx(context.Context):
    """A user-written context type: cancellable via its own channel."""

    def __init__(self):
        self.ch = chan()
        self._err = None

    def done(self):
        return self.ch

    def err(self):
        return self._err

    def value(self, key):
        return "mine" if key == "who" else None

    def cancel(self):
        self._err = canceled
        self.ch.close()


def test_foreign_parent():
    p = MyCtx()
    c, cc = with_cancel(p)
    v = with_value(c, "x", 1)
    assert v.value("who") == "mine"
    assert v.value("x") == 1
    p.cancel()
    assert closed_within(c.done(), 5.0)
    assert c.err() is canceled
    cc()


class OldStyleDeadlineCtx(context.Context):
    """A user context whose deadline() predates the (t, ok) form."""

    def __init__(self, t):
        self.t = t

    def deadline(self):
        return self.t


def test_foreign_parent_deadline():
    t = stdtime.time() + 60
    for parent in (OldStyleDeadlineCtx(t), OldStyleDeadlineCtx(None)):
        c, cc = with_timeout(parent, 30)
        assert c.deadline()[0] < t            # own deadline, earlier
        c2, cc2 = with_timeout(parent, 90)
        if parent.t is None:
            assert c2.deadline()[0] > t
        else:
            assert c2.deadline() == (t, True)  # the parent's, in the (t, ok) form
        cc()
        cc2()


def test_repr():
    ctx, cancel = with_timeout(with_value(background(), "k", 1), 10)
    r = repr(ctx)
    assert "background" in r and "with_value" in r and "with_deadline" in r
    cancel()

"""pygmp.time (API.md "pygmp.time", Go 1.23 timer semantics)."""
import os
import sys
import threading
import time as stdtime

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _helpers import in_goroutine, in_thread, is_ready, recv_timeout  # noqa: E402

from pygmp import PanicError, chan, default, go, nilchan, select  # noqa: E402
import pygmp.time as ptime  # noqa: E402
from pygmp.time import Ticker, Timer, after, now, sleep, tick  # noqa: E402


def _sanity():
    c = chan()
    go(c.send, 1)
    assert recv_timeout(c) == 1


def test_constants():
    assert ptime.nanosecond == pytest.approx(1e-9)
    assert ptime.microsecond == pytest.approx(1e-6)
    assert ptime.millisecond == pytest.approx(1e-3)
    assert ptime.second == 1
    assert ptime.minute == 60
    assert ptime.hour == 3600
    assert 1500 * ptime.millisecond == pytest.approx(1.5)


def test_now_is_wall_clock():
    # Go's time.Now: wall-clock seconds since the epoch (time.time()), not the
    # monotonic clock
    for _ in range(100):
        a = stdtime.time()
        t = now()
        b = stdtime.time()
        assert isinstance(t, float)
        assert a <= t <= b
    assert now() > 1e9  # an epoch time, not seconds since boot
    t0 = now()
    stdtime.sleep(0.05)
    assert 0.04 <= now() - t0 < 5


@pytest.mark.timeout(10)
def test_values_sent_are_now():
    # after, Timer, Ticker and tick all send now() values (wall clock)
    tickers = []

    def ticker_c():
        tickers.append(Ticker(0.01))
        return tickers[-1].c

    try:
        for make in (lambda: after(0.01), lambda: Timer(0.01).c, ticker_c,
                     lambda: tick(0.01)):
            a = stdtime.time()
            v = recv_timeout(make(), 5)
            b = stdtime.time()
            assert isinstance(v, float)
            assert a <= v <= b, (a, v, b)
    finally:
        for tk in tickers:
            tk.stop()


@pytest.mark.timeout(30)
def test_wall_clock_step_moves_no_timer():
    # A wall-clock step (simulated: time.time replaced before pygmp is
    # imported) changes now() and the values sent, never when a timer fires:
    # durations run on the monotonic clock.
    from _helpers import run_script
    r = run_script("""
        import time
        _real = time.time
        step = [0.0]
        time.time = lambda: _real() + step[0]
        from pygmp import go, chan, context
        import pygmp.time as pt

        def elapsed(f):
            t0 = time.monotonic()
            f()
            return time.monotonic() - t0

        for jump in (3600.0, -3600.0):
            t = pt.Timer(0.2)
            tk = pt.Ticker(0.2)
            ctx, cancel = context.with_timeout(context.background(), 0.2)
            fired = chan(1)
            pt.after_func(0.2, lambda: fired.send(1))
            step[0] += jump                       # the wall clock steps
            assert abs(pt.now() - (_real() + step[0])) < 1
            d = elapsed(lambda: t.c.recv())
            assert 0.15 <= d < 2, ("timer", jump, d)
            v = tk.c.recv()
            assert abs(v - (_real() + step[0])) < 1, ("ticker value", jump, v)
            tk.stop()
            d = elapsed(lambda: ctx.done().recv())
            assert d < 2 and ctx.err() is context.deadline_exceeded, ("ctx", jump, d)
            d = elapsed(lambda: fired.recv())
            assert d < 2, ("after_func", jump, d)
            d = elapsed(lambda: pt.sleep(0.1))
            assert 0.08 <= d < 2, ("sleep", jump, d)
            d = elapsed(lambda: pt.after(0.1).recv())
            assert 0.08 <= d < 2, ("after", jump, d)
            cancel()
        print("ok")
    """, timeout=25)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ok"]


# ---------------------------------------------------------------- sleep

@pytest.mark.timeout(10)
def test_sleep_main_and_goroutine_and_thread():
    for runner in (lambda f: f(), in_goroutine, in_thread):
        t0 = stdtime.monotonic()
        runner(lambda: sleep(0.05))
        dt = stdtime.monotonic() - t0
        assert 0.045 <= dt < 3, dt


@pytest.mark.timeout(10)
@pytest.mark.parametrize("d", [0, -1, -0.5, 0.0])
def test_sleep_nonpositive_returns_at_once(d):
    t0 = stdtime.monotonic()
    sleep(d)
    in_goroutine(sleep, d)
    assert stdtime.monotonic() - t0 < 1


@pytest.mark.timeout(20)
def test_sleeping_goroutines_do_not_block_each_other():
    n = 500
    done = chan(n)

    def f():
        sleep(0.3)
        done.send(1)

    t0 = stdtime.monotonic()
    for _ in range(n):
        go(f)
    for _ in range(n):
        recv_timeout(done, 15)
    dt = stdtime.monotonic() - t0
    assert 0.29 <= dt < 10, dt  # concurrently, not 500 * 0.3 s


@pytest.mark.timeout(20)
def test_timers_fire_in_deadline_order():
    out = chan(20)
    for k in (5, 1, 4, 2, 3):
        go(lambda k=k: (sleep(0.06 * k), out.send(k)))
    assert [recv_timeout(out) for _ in range(5)] == [1, 2, 3, 4, 5]


# ---------------------------------------------------------------- after / tick

@pytest.mark.timeout(10)
def test_after_sends_now_value():
    t0 = now()
    c = after(0.05)
    assert select(c.recv, default) == (1, None)
    v = recv_timeout(c)
    t1 = now()
    assert isinstance(v, float)
    assert t0 + 0.045 <= v <= t1
    assert not is_ready(c)  # exactly one value


@pytest.mark.timeout(10)
def test_after_zero_and_negative_fire():
    for d in (0, -1):
        v = recv_timeout(after(d), 5)
        assert isinstance(v, float)


@pytest.mark.timeout(10)
def test_after_in_select_timeout_pattern():
    c = chan()

    def f():
        i, _ = select(c.recv, after(0.05).recv)
        return i

    assert in_goroutine(f) == 1
    assert in_thread(f) == 1


@pytest.mark.timeout(10)
@pytest.mark.parametrize("d", [0, -1, -0.001])
def test_tick_nonpositive_is_nilchan(d):
    assert tick(d) is nilchan


@pytest.mark.timeout(10)
def test_tick_delivers_repeatedly():
    c = tick(0.02)
    vals = [recv_timeout(c, 5) for _ in range(4)]
    assert vals == sorted(vals)
    assert all(b > a for a, b in zip(vals, vals[1:]))


# ---------------------------------------------------------------- Timer

@pytest.mark.timeout(10)
def test_timer_fires():
    t0 = now()
    t = Timer(0.05)
    v = recv_timeout(t.c)
    assert v >= t0 + 0.045
    assert t.stop() is False  # fired and received: not active


@pytest.mark.timeout(10)
def test_timer_stop_before_fire():
    t = Timer(0.1)
    assert t.stop() is True
    assert t.stop() is False
    stdtime.sleep(0.2)
    assert not is_ready(t.c)


@pytest.mark.timeout(10)
def test_timer_stop_fired_but_unreceived_go123():
    t = Timer(0.01)
    stdtime.sleep(0.1)  # it has expired; nobody received
    assert t.stop() is True  # Go 1.23: still counts as active
    assert not is_ready(t.c)  # no stale value after stop
    stdtime.sleep(0.05)
    assert not is_ready(t.c)


@pytest.mark.timeout(10)
def test_timer_reset_fired_but_unreceived_go123():
    t = Timer(0.01)
    stdtime.sleep(0.1)
    t0 = now()
    assert t.reset(0.1) is True
    # no stale value from the first expiry
    assert not is_ready(t.c)
    v = recv_timeout(t.c)
    assert v >= t0 + 0.095


@pytest.mark.timeout(10)
def test_timer_reset_active():
    t = Timer(5)
    t0 = now()
    assert t.reset(0.05) is True
    v = recv_timeout(t.c, 4)
    assert t0 + 0.045 <= v <= now()


@pytest.mark.timeout(10)
def test_timer_reset_after_stop_and_after_receive():
    t = Timer(0.02)
    recv_timeout(t.c)
    assert t.reset(0.02) is False
    recv_timeout(t.c)
    assert t.stop() is False
    assert t.reset(0.02) is False
    recv_timeout(t.c)


@pytest.mark.timeout(10)
def test_timer_stop_wakes_nobody_and_goroutine_waiting_stays():
    t = Timer(0.05)
    got = chan(1)
    go(lambda: got.send(select(t.c.recv, after(0.3).recv)[0]))
    assert t.stop() is True
    assert recv_timeout(got) == 1  # the timeout, not the timer


@pytest.mark.timeout(10)
def test_timer_from_goroutine_and_thread():
    def f():
        t = Timer(0.02)
        return recv_timeout(t.c) > 0

    assert in_goroutine(f) is True
    assert in_thread(f) is True


# ---------------------------------------------------------------- after_func

@pytest.mark.timeout(10)
def test_after_func_runs_f_in_its_own_goroutine_after_d():
    from _helpers import my_goid
    ran = chan(1)
    t0 = stdtime.monotonic()
    t = ptime.after_func(0.05, lambda: ran.send((my_goid(), stdtime.monotonic())))
    assert isinstance(t, Timer)
    gid, t1 = recv_timeout(ran)
    assert t1 - t0 >= 0.045
    assert gid != 1                      # not the main goroutine
    assert t.stop() is False             # f ran: nothing to stop


def test_after_func_c_is_nilchan():
    t = ptime.after_func(10, lambda: None)
    try:
        assert t.c is nilchan
        assert select(t.c.recv, default) == (1, None)   # never ready
    finally:
        t.stop()


@pytest.mark.timeout(10)
def test_after_func_stop_before_start_cancels_f():
    ran = chan(1)
    t = ptime.after_func(0.1, lambda: ran.send(1))
    assert t.stop() is True
    assert t.stop() is False
    stdtime.sleep(0.25)
    assert not is_ready(ran)


@pytest.mark.timeout(10)
def test_after_func_stop_false_once_f_started():
    started, gate, finished = chan(1), chan(), chan(1)

    def f():
        started.send(1)
        gate.recv()
        finished.send(1)

    t = ptime.after_func(0.01, f)
    recv_timeout(started)
    assert t.stop() is False             # f has started (it is still running)
    assert t.reset(10) is False          # it was not pending either
    assert t.stop() is True              # ... but reset armed it again
    gate.close()
    recv_timeout(finished)
    assert t.stop() is False


@pytest.mark.timeout(10)
def test_after_func_reset_reports_pending_and_runs_again():
    ran = chan(10)
    t = ptime.after_func(5, lambda: ran.send(stdtime.monotonic()))
    t0 = stdtime.monotonic()
    assert t.reset(0.05) is True         # still pending: moved
    assert recv_timeout(ran, 4) >= t0 + 0.045
    assert t.reset(0.02) is False        # f ran: not pending
    recv_timeout(ran, 4)                 # ... and runs again
    stdtime.sleep(0.1)
    assert not is_ready(ran)             # once per arming


@pytest.mark.timeout(10)
def test_after_func_from_goroutine_and_thread():
    def f():
        ran = chan(1)
        t = ptime.after_func(0.02, lambda: ran.send(1))
        v = recv_timeout(ran)
        return v, t.stop()

    assert in_goroutine(f) == (1, False)
    assert in_thread(f) == (1, False)


@pytest.mark.parametrize("bad", [None, 1, "f"])
def test_after_func_needs_callable(bad):
    with pytest.raises(TypeError):
        ptime.after_func(0.1, bad)


@pytest.mark.parametrize("d", ["1", None, True])
def test_after_func_needs_duration(d):
    with pytest.raises(TypeError):
        ptime.after_func(d, lambda: None)


@pytest.mark.timeout(30)
def test_after_func_stop_race_matches_runs():
    # stop() returns False exactly for the timers whose f was started: every
    # one of those runs, none of the others ever does
    n = 300
    ran = chan(n)
    timers = []
    for i in range(n):
        t = ptime.after_func(0.0005 * (i % 5), lambda i=i: ran.send(i))
        if i % 3 == 0:
            stdtime.sleep(0.0005)
        timers.append(t)
    stopped = {i for i, t in enumerate(timers) if t.stop()}
    started = set(range(n)) - stopped
    got = {recv_timeout(ran, 10) for _ in started}
    assert got == started
    stdtime.sleep(0.05)
    assert not is_ready(ran)             # no stopped f ever runs


@pytest.mark.timeout(30)
def test_after_func_reset_race_runs_once_per_arming():
    n = 100
    ran = chan(2 * n)
    pending = 0
    for i in range(n):
        t = ptime.after_func(0.0005 * (i % 5), lambda: ran.send(1))
        if i % 2:
            stdtime.sleep(0.0005)
        if t.reset(0.005):
            pending += 1                 # the first arming never runs f
        else:
            pending += 2                 # it did (or will): both run
    for _ in range(pending):
        recv_timeout(ran, 10)
    stdtime.sleep(0.05)
    assert not is_ready(ran)


# ---------------------------------------------------------------- Ticker

@pytest.mark.timeout(10)
def test_ticker_ticks_and_stops():
    tk = Ticker(0.02)
    vals = [recv_timeout(tk.c) for _ in range(3)]
    assert all(b > a for a, b in zip(vals, vals[1:]))
    tk.stop()
    assert not is_ready(tk.c)  # no stale tick after stop
    stdtime.sleep(0.1)
    assert not is_ready(tk.c)


@pytest.mark.timeout(10)
def test_ticker_drops_ticks_for_slow_receiver():
    tk = Ticker(0.01)
    try:
        stdtime.sleep(0.3)  # ~30 periods pass
        n = 0
        while is_ready(tk.c):
            n += 1
            assert n < 5
        assert n <= 1, n  # no backlog of ticks
        t0 = stdtime.monotonic()
        recv_timeout(tk.c)
        assert stdtime.monotonic() - t0 < 2
    finally:
        tk.stop()


@pytest.mark.timeout(10)
def test_ticker_reset_changes_period():
    tk = Ticker(5)
    try:
        t0 = now()
        tk.reset(0.03)
        assert not is_ready(tk.c)
        v1 = recv_timeout(tk.c, 4)
        v2 = recv_timeout(tk.c, 4)
        assert v1 >= t0 + 0.025
        # ticks follow the schedule set by reset (t0+0.03, t0+0.06, ...), not
        # the time of the previous tick: a late first tick may be followed
        # closely by the second, which is still not early
        assert v2 >= t0 + 0.055
    finally:
        tk.stop()


@pytest.mark.timeout(10)
@pytest.mark.parametrize("d", [0, -1, -0.5])
def test_ticker_nonpositive_panics(d):
    with pytest.raises(PanicError) as ei:
        Ticker(d)
    assert str(ei.value) == "non-positive interval for NewTicker"
    _sanity()


@pytest.mark.timeout(15)
def test_many_timers_all_fire():
    n = 1000
    done = chan(n)

    def f(i):
        sleep((i % 50) * 0.002)
        done.send(i)

    for i in range(n):
        go(f, i)
    assert sorted(recv_timeout(done, 10) for _ in range(n)) == list(range(n))


@pytest.mark.timeout(10)
def test_timer_created_in_thread_received_in_goroutine():
    box = {}
    threading.Thread(target=lambda: box.setdefault("t", Timer(0.02))).start()
    for _ in range(500):
        if "t" in box:
            break
        stdtime.sleep(0.01)
    assert in_goroutine(lambda: recv_timeout(box["t"].c) > 0) is True


@pytest.mark.timeout(10)
@pytest.mark.parametrize("d", [0, -1])
def test_timer_nonpositive_fires_at_once(d):
    t = Timer(d)
    assert isinstance(recv_timeout(t.c, 5), float)


@pytest.mark.timeout(20)
def test_timer_stop_race_never_leaves_stale_value():
    # Nobody receives before stop(), so under Go 1.23 rules stop() always
    # reports the timer active and no value is ever received afterwards,
    # whether or not it had already expired.
    timers = []
    for i in range(300):
        t = Timer(0.0005 * (i % 7))
        if i % 3 == 0:
            stdtime.sleep(0.0003)
        assert t.stop() is True, i
        timers.append(t)
    stdtime.sleep(0.05)
    for t in timers:
        assert not is_ready(t.c)


@pytest.mark.timeout(20)
def test_timer_reset_race_exactly_one_fresh_value():
    for i in range(100):
        t = Timer(0.0005 * (i % 5))
        if i % 2:
            stdtime.sleep(0.0005)
        t0 = now()
        assert t.reset(0.01) is True, i
        v = recv_timeout(t.c, 5)
        assert v >= t0 + 0.009, (i, v - t0)
        assert not is_ready(t.c)


@pytest.mark.timeout(10)
def test_ticker_in_goroutine():
    def f():
        tk = Ticker(0.01)
        try:
            return [recv_timeout(tk.c) for _ in range(3)]
        finally:
            tk.stop()

    vals = in_goroutine(f)
    assert len(vals) == 3 and vals == sorted(vals)

"""Go's time package over the runtime's per-P timers (Go 1.23 timer semantics).

Clocks, as Go's: ``now()`` is wall-clock time (``time.time()``, seconds since
the epoch), and the values timers and tickers send are ``now()`` values; every
duration and timer runs on the monotonic clock, so a wall-clock step moves no
timer.

``Timer`` and ``Ticker`` channels never deliver a stale value once ``stop`` or
``reset`` has returned: firing sends under the timer's own mutex only if the
timer's sequence number is still the one that was armed, and stop/reset bump
the sequence and drain the channel under that same mutex.
"""

import threading
import time as _time

from .runtime import proc as _proc
from .runtime.chan import Chan, nilchan
from .runtime.g import _Gwaiting
from .runtime.panic import PanicError
from .runtime.timers import RTimer, addtimer, deltimer

__all__ = ["sleep", "after", "after_func", "tick", "Timer", "Ticker", "now",
           "nanosecond", "microsecond", "millisecond", "second", "minute", "hour"]

nanosecond = 1e-9
microsecond = 1e-6
millisecond = 1e-3
second = 1.0
minute = 60.0
hour = 3600.0

_monotonic = _time.monotonic
_walltime = _time.time


def now():
    """The current wall-clock time in seconds since the epoch (``time.time()``,
    Go's ``time.Now``); the value timers and tickers send."""
    return _walltime()


def _check_duration(d, who):
    if isinstance(d, bool) or not isinstance(d, (int, float)):
        raise TypeError("%s: duration must be a number of seconds, not %s" % (who, type(d).__name__))
    return float(d)


_goready = _proc.goready
_getg = _proc.getg
_gopark = _proc.gopark


def _goready_timer(g, seq):
    _goready(g)


def sleep(d):
    """Pause the current goroutine for ``d`` seconds; returns at once if d <= 0.
    A plain thread (or the main goroutine) simply sleeps its thread."""
    if type(d) is not float:
        d = _check_duration(d, "sleep")
    if d <= 0:
        return
    g = _getg()
    if g is None:
        raise RuntimeError("pygmp: sleep from the scheduler greenlet")
    if g.locked:
        _time.sleep(d)
        return
    t = g.sleeptimer
    if t is None:
        t = g.sleeptimer = RTimer(_goready_timer, g)
    g.status = _Gwaiting
    now = g.waitsince = _monotonic()
    addtimer(t, now + d)
    _gopark(g, "sleep")


class Timer:
    """A single event: after ``d`` seconds the current time (``now()``) is sent
    on ``.c``.  Made by ``after_func``, it runs ``f`` in a new goroutine
    instead, and ``.c`` is ``nilchan``."""

    __slots__ = ("c", "_mu", "_rt", "_f", "_sent", "__weakref__")

    def __init__(self, d, _f=None):
        d = _check_duration(d, "Timer")
        self._mu = threading.Lock()
        self._f = _f
        self._sent = -1         # seq whose value was delivered to c / whose f was started
        self.c = nilchan if _f is not None else Chan(1)
        self._rt = RTimer(Timer._fire, self)
        with self._mu:
            addtimer(self._rt, _monotonic() + d)

    def _fire(self, seq):
        f = self._f
        if f is not None:
            # after_func: once f is started (_sent == seq, decided under _mu)
            # stop/reset report the timer as no longer active (Go's AfterFunc)
            with self._mu:
                live = self._rt.seq == seq
                if live:
                    self._sent = seq
            if live:
                _proc.go(f)
            return
        with self._mu:
            if self._rt.seq != seq:
                return              # stopped or reset since it was armed: stale
            self._sent = seq
            self.c._try_send(_walltime())

    def stop(self):
        """Prevent the timer from firing; True if it was active (including a value
        sent but not yet received, which is discarded).  For ``after_func``:
        False once ``f`` has been started."""
        with self._mu:
            return self._disarm()

    def _disarm(self):
        # Go 1.23: a timer that expired but whose value was not received yet is
        # still active; its value is discarded.  Called with _mu held.
        rt = self._rt
        seq = rt.seq
        was = deltimer(rt)
        if not was and rt.fired == seq and self._sent != seq:
            was = True              # popped to fire, value not delivered yet
        rt.seq += 1
        if self._f is None and self.c._drain():
            was = True
        return was

    def reset(self, d):
        """Re-arm for ``d`` seconds from now; returns whether it was active
        (for ``after_func``: whether ``f`` was still pending)."""
        d = _check_duration(d, "Timer.reset")
        with self._mu:
            was = self._disarm()
            addtimer(self._rt, _monotonic() + d)
            return was


class Ticker:
    """Sends the time (``now()``) on ``.c`` every ``d`` seconds; ticks are dropped for a
    slow receiver (the channel holds one)."""

    __slots__ = ("c", "_mu", "_rt", "__weakref__")

    def __init__(self, d):
        d = _check_duration(d, "Ticker")
        if d <= 0:
            raise PanicError("non-positive interval for NewTicker")
        self._mu = threading.Lock()
        self.c = Chan(1)
        self._rt = RTimer(Ticker._fire, self)
        with self._mu:
            addtimer(self._rt, _monotonic() + d, d)

    def _fire(self, seq):
        with self._mu:
            if self._rt.seq != seq:
                return
            self.c._try_send(_walltime())

    def stop(self):
        with self._mu:
            deltimer(self._rt)
            self._rt.seq += 1
            self.c._drain()

    def reset(self, d):
        d = _check_duration(d, "Ticker.reset")
        if d <= 0:
            raise PanicError("non-positive interval for Ticker.Reset")
        with self._mu:
            deltimer(self._rt)
            self._rt.seq += 1
            self.c._drain()
            addtimer(self._rt, _monotonic() + d, d)


def after(d):
    """A channel that receives the time (``now()``) once, after ``d`` seconds."""
    return Timer(d).c


def after_func(d, f):
    """Run ``f()`` in its own goroutine after ``d`` seconds; returns the Timer
    (Go's time.AfterFunc): its ``.c`` is ``nilchan``; ``stop()`` cancels ``f``
    and returns False once ``f`` has been started; ``reset(d)`` re-arms it and
    returns whether ``f`` was still pending."""
    if not callable(f):
        raise TypeError("after_func: f must be callable")
    return Timer(d, _f=f)


def tick(d):
    """A channel of ticks every ``d`` seconds; ``nilchan`` if d <= 0."""
    d = _check_duration(d, "tick")
    if d <= 0:
        return nilchan
    return Ticker(d).c

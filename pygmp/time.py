"""Go's time package over the runtime's per-P timers (Go 1.23 timer semantics).

Clocks, as Go's: ``now()`` is wall-clock time (``time.time()``, seconds since
the epoch), and the values timers and tickers send are ``now()`` values; every
duration and timer runs on the monotonic clock, so a wall-clock step moves no
timer.

The mechanism is the C core's (csrc/timers.c): ``sleep`` parks the goroutine
on its own timer, and a ``Timer``/``Ticker`` channel is fed by a C timer that
sends ``now()`` under the timer's send lock only if the timer was not
stopped or reset since it was popped, so once ``stop`` or ``reset`` has
returned no stale value is ever received.  This module keeps the public
face: argument checks, messages, and Go's Timer/Ticker API.
"""

import time as _time

from . import _hot
from .runtime.chan import Chan, nilchan
from .runtime.panic import PanicError
from .runtime.proc import go as _go
from .runtime.timers import RTimer, chantimer

__all__ = ["sleep", "after", "after_func", "tick", "Timer", "Ticker", "now",
           "nanosecond", "microsecond", "millisecond", "second", "minute", "hour"]

nanosecond = 1e-9
microsecond = 1e-6
millisecond = 1e-3
second = 1.0
minute = 60.0
hour = 3600.0

_monotonic = _time.monotonic



def now():
    """Wall-clock seconds since the epoch (``time.time()``, as Go's time.Now):
    what timers send.  Durations and timers run on the monotonic clock."""
    return _time.time()


def _check_duration(d, who):
    if isinstance(d, bool) or not isinstance(d, (int, float)):
        raise TypeError("%s: duration must be a number of seconds, not %s" % (who, type(d).__name__))
    d = float(d)
    if d != d:
        raise ValueError("%s: duration is NaN" % who)
    return d


# sleep(d): pause the current goroutine for ``d`` seconds (a number); returns
# at once if d <= 0; a plain thread (or the main goroutine) sleeps its thread.
# Entirely in C (csrc/timers.c, same checks and messages as _check_duration):
# the goroutine parks on its own timer, whose firing readies it.
sleep = _hot.sleep


def _go_timer(f, seq):
    _go(f)


class Timer:
    """A single event: after ``d`` seconds the current time is sent on ``.c``
    (``after_func``: ``f()`` is started in its own goroutine, and ``.c`` is
    ``nilchan``)."""

    __slots__ = ("c", "_rt", "__weakref__")

    def __init__(self, d, _f=None):
        d = _check_duration(d, "Timer")
        if _f is None:
            self.c = Chan(1)
            self._rt = chantimer(self.c)
        else:
            self.c = nilchan
            self._rt = RTimer(_go_timer, _f)
        self._rt.reset(_monotonic() + d)

    def stop(self):
        """Prevent the timer from firing; True if it was active.  Go 1.23: a
        value sent but not received yet counts as active and is discarded;
        an ``after_func`` timer whose ``f`` has started is not active."""
        return self._rt.stop()

    def reset(self, d):
        """Re-arm for ``d`` seconds from now; returns whether it was active
        (for ``after_func``: whether ``f`` was still pending)."""
        d = _check_duration(d, "Timer.reset")
        return self._rt.reset(_monotonic() + d)


class Ticker:
    """Sends the time (``now()``) on ``.c`` every ``d`` seconds; ticks are
    dropped for a slow receiver (the channel holds one)."""

    __slots__ = ("c", "_rt", "__weakref__")

    def __init__(self, d):
        d = _check_duration(d, "Ticker")
        if d <= 0:
            raise PanicError("non-positive interval for NewTicker")
        self.c = Chan(1)
        self._rt = chantimer(self.c)
        self._rt.reset(_monotonic() + d, d)

    def stop(self):
        """Turn the ticker off; no tick is received after stop returns."""
        self._rt.stop()

    def reset(self, d):
        """Stop the ticker and restart it with period ``d``."""
        d = _check_duration(d, "Ticker.reset")
        if d <= 0:
            raise PanicError("non-positive interval for Ticker.Reset")
        self._rt.reset(_monotonic() + d, d)


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

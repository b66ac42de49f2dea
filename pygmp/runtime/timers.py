"""Runtime timers (Go's time.go, runtime half): the C core's per-P 4-ary heaps
(csrc/timers.c; invariants in ../HACKING.md "Timers").

``RTimer(f, arg)``
    A timer that calls ``f(arg, seq)`` when it fires, outside every lock, on
    whichever thread runs the due timers (``f`` must not block).  Attributes:
    ``when``, ``period``, ``seq``, ``active``; methods ``stop()`` and
    ``reset(when, period=0.0)`` (both return whether it was pending).
``addtimer(t, when, period=0.0) -> seq``
    Arm (or re-arm) ``t`` to fire at monotonic time ``when`` (``time.monotonic``'s
    clock), every ``period`` seconds if ``period > 0``; returns the sequence
    number that this arming's firing will pass to ``f``.
``deltimer(t) -> bool``
    Disarm ``t``; True if it was pending (had not fired).
``chantimer(c)``
    A timer that sends ``time.time()`` on channel ``c`` when it fires, with
    Go 1.23's ``stop``/``reset`` (no stale value once they return).
``runtimers(p, now=None)``, ``movetimers(p, dst)``
    Fire ``p``'s due timers (any thread); hand a retiring P's timers to ``dst``.

Calls on one timer must be serialized by its owner (a goroutine's sleep timer,
a ``time.Timer``, a conn's deadline under ``fd.lock``).  C callers use
``timer_add``/``timer_del``/``timer_new_c`` from csrc/runtime.h.
"""

from .. import _hot

RTimer = _hot.RTimer
addtimer = _hot.addtimer
deltimer = _hot.deltimer
chantimer = _hot.chantimer
runtimers = _hot.runtimers
movetimers = _hot.movetimers

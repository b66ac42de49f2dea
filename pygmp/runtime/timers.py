"""Per-P timer heaps (Go's time.go runtime half).

A timer belongs to the P it was last added on (the adding goroutine's P, or a P
picked for threads without one).  Its heap entry is ``(when, order, timer,
seq)``; ``timer.seq`` is bumped by every delete/modify so stale entries are
skipped when they surface (lazy deletion, with compaction when stale entries
dominate).  ``timers``, ``ntimers`` and ``timer0`` of a P are guarded by
``p.tlock``; a timer's own fields (``seq``, ``active``, ``p``, ``when``) are
written under the tlock of the P it is on.  One timer's add/delete calls are
serialized by its owner (a goroutine's sleep timer, or a time.Timer's mutex).

Firing runs ``f(arg, seq)`` outside every lock.  Any P may run another P's due
timers (an idle P looking for work does), so a P that is busy or blocked never
delays its timers; ``f`` must not block (a channel send with no wait, a
goready).
"""

import heapq
import time

from . import proc
from .p import _Pdead

_monotonic = time.monotonic
_heappush = heapq.heappush
_heappop = heapq.heappop


class RTimer:
    """A runtime timer: call ``f(arg, seq)`` at ``when`` (and every ``period``)."""
    __slots__ = ("when", "period", "f", "arg", "seq", "p", "active", "fired")

    def __init__(self, f, arg):
        self.when = 0.0
        self.period = 0.0
        self.f = f
        self.arg = arg
        self.seq = 0
        self.p = None
        self.active = False
        self.fired = -1        # seq at the last time runtimers popped it to fire


def _pick_p(s):
    try:
        m = proc._tls.m
    except AttributeError:
        m = None
    if m is not None and m.p is not None and not m.p.draining:
        return m.p
    live = [p for p in s.allp if not p.draining] or s.allp
    # threads without a P (and goroutines of a removed P): spread by thread identity
    return live[(m.ident if m is not None else 0) % len(live)]


def addtimer(t, when, period=0.0):
    """Arm ``t`` (deleting any earlier arming) to fire at monotonic time ``when``."""
    s = proc._sched or proc.start()
    if t.active:
        deltimer(t)
    p = _pick_p(s)
    p.tlock.acquire()
    while p.status == _Pdead:       # retired under us (gomaxprocs lowered): pick again
        p.tlock.release()
        p = _pick_p(s)
        p.tlock.acquire()
    try:
        t.seq += 1
        t.when = when
        t.period = period
        t.p = p
        t.active = True
        p.ntimers += 1
        p.timerseq += 1
        h = p.timers
        _heappush(h, (when, p.timerseq, t, t.seq))
        old0 = p.timer0
        head = old0 is None or when < old0
        if head:
            p.timer0 = when
    finally:
        p.tlock.release()
    if head:
        wake_for_timer(s, p, when)
    return t.seq


def deltimer(t):
    """Disarm ``t``; True if it was armed (had not fired)."""
    p = t.p
    if p is None:
        return False
    with p.tlock:
        if not t.active or t.p is not p:
            return False
        t.active = False
        t.seq += 1
        p.ntimers -= 1
        h = p.timers
        # stale entries keep their timers (and what those reference) alive:
        # compact once they are over a quarter of the heap (Go's zombie rule;
        # amortized O(1) per delete)
        if len(h) > 16 and (len(h) - p.ntimers) * 4 > len(h):
            h[:] = [e for e in h if e[2].seq == e[3] and e[2].active]
            heapq.heapify(h)
            p.timer0 = h[0][0] if h else None
        elif not p.ntimers:
            h.clear()
            p.timer0 = None
    return True


def runtimers(p):
    """Fire ``p``'s due timers (from any thread)."""
    now = _monotonic()
    fire = []
    with p.tlock:
        h = p.timers
        while h and h[0][0] <= now:
            when, _, t, seq = _heappop(h)
            if t.seq != seq or not t.active or t.p is not p:
                continue
            t.fired = seq
            if t.period > 0:
                nxt = when + t.period
                if nxt <= now:   # fell behind: skip missed periods (tickers drop ticks)
                    nxt = now + t.period - ((now - when) % t.period)
                t.when = nxt
                p.timerseq += 1
                _heappush(h, (nxt, p.timerseq, t, seq))
            else:
                t.active = False
                p.ntimers -= 1
            fire.append((t, seq))
        p.timer0 = h[0][0] if h else None
    for t, seq in fire:
        t.f(t.arg, seq)


def wake_for_timer(s, p, when):
    """A new earliest timer on ``p``: make sure some sleeping worker wakes by
    ``when``.  Wake ``p`` itself if it sleeps past it; otherwise (``p`` busy or
    blocked) wake one idle P whose sleep would overshoot."""
    try:
        m = proc._tls.m
    except AttributeError:
        m = None
    mine = m is not None and m.p is p
    if not mine:
        with p.lock:
            late = p.sleeping and (p.sleepuntil is None or p.sleepuntil > when or p.sleepuntil < 0)
        if late:
            proc.unpark(p)
            return
    # p is running (it will run the timer itself unless it blocks): if another P
    # sleeps past ``when``, wake one so a blocked p cannot delay the timer.
    for q in s.allp:
        if q is p:
            continue
        with q.lock:
            if not q.sleeping:
                continue
            su = q.sleepuntil
            late = su is None or su < 0 or su > when
        if late:
            proc.unpark(q)
        return


def movetimers(p, s):
    """A removed P retires: hand its armed timers to a live P (Go's moveTimers).
    Holds the old P's tlock, then the new one's: only this nests two tlocks, and
    the destination is never retiring, so there is no cycle."""
    live = [q for q in s.allp if q is not p and not q.draining]
    if not live:
        return
    dst = live[0]
    with p.tlock:
        p.status = _Pdead
        with dst.tlock:
            h = dst.timers
            for when, _, t, seq in p.timers:
                if t.seq != seq or not t.active or t.p is not p:
                    continue
                t.p = dst
                dst.timerseq += 1
                _heappush(h, (when, dst.timerseq, t, seq))
                dst.ntimers += 1
            p.timers = []
            p.ntimers = 0
            p.timer0 = None
            when = dst.timer0 = h[0][0] if h else None
    if when is not None:
        wake_for_timer(s, dst, when)

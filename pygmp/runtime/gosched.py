"""gosched: yield the processor (Go's Gosched / goschedImpl), from a goroutine
and from a thread G (main, plain or go_locked thread), which has no P.

The ordering contract and its happens-before edge are in ../HACKING.md
"gosched".
"""

import contextvars
import os
import sys
import threading
import time

from . import proc
from .g import G, _Grunnable, _Grunning
from .p import _Pdead

# The real classes, bound at import: pygmp.monkey may replace the module's
# attributes later, and the runtime's own threads and locks must stay real.
_Lock = threading.Lock

_monotonic = time.monotonic


def gosched():
    """Yield the processor (Go's Gosched).

    A goroutine is ordered as Go's ``goschedImpl`` orders it: Go puts the G on
    the global queue, so its P runs its local Gs, then the global queue's,
    then the yielder.  A started G is homed on its P (its greenlet cannot
    change threads), so the same order is made locally: the head of the
    global queue (a ``globrunqget`` batch) moves to the tail of the P's runq,
    the yielder goes behind it, and the P runs the next G.  A thread G (main,
    a plain thread, ``go_locked``) has no P: see ``_gosched_thread``.  With
    nothing runnable it returns at once, after ``_gosched_yield_gil``."""
    g = proc.getg()
    if g is None:
        return
    if g.locked:
        _gosched_thread(g)
        return
    p = g.home
    s = proc._sched
    if s.runq and not p.draining:
        with s.lock:
            n = len(s.runq)
            batch = [s.runq.popleft()
                     for _ in range(min(n, n // len(s.allp) + 1, proc.GLOBRUNQ_BATCH_MAX))]
        if batch:
            p.rq_extend(batch)
    with p.lock:
        alone = not p.rq_len() and p.runnext is None
    if alone:
        # nothing else runnable here, but a lone gosched loop must not starve
        # this P's I/O waiters: poll the fds every few ms (netfd readies onto p)
        if _monotonic() - p.lastpoll <= proc.NETPOLL_BUSY_INTERVAL or not p.parker.poll():
            _gosched_yield_gil(s, g)
            return
    g.status = _Grunnable
    p.rq_append(g)
    nxt = proc.next_local_fast(p)
    if nxt is g or nxt is None:
        g.status = _Grunning
        return
    proc._switchto(p, nxt)


GOSCHED_GIL_SLICE = 100e-6    # a lone gosched gives the GIL away at most this often
GOSCHED_CHECK = 0.01          # a thread G in gosched looks at its marker's P this often
GOSCHED_HOG_WAIT = 0.02       # ... and returns once one G has held that P this long
_gil_enabled = getattr(sys, "_is_gil_enabled", lambda: True)()
_sched_yield = getattr(os, "sched_yield", None) or (lambda: time.sleep(0))


def _gosched_yield_gil(s, g):
    """Nothing is runnable in a run queue, but under the GIL a goroutine
    running on another P, or the main goroutine running on its own thread,
    runs only while this thread lets the GIL go: release it for a
    ``sched_yield`` if one may want it, at most once per ``GOSCHED_GIL_SLICE``
    of this thread, so that two Ps in gosched loops interleave without a GIL
    hand-over (a thread wake-up) on every call.  (``time.sleep(0)`` measured
    ~220 us here; ``os.sched_yield`` ~1 us.)  Plain threads other than main
    are not looked at.  Nothing to do on a free-threaded build."""
    if not _gil_enabled:
        return
    now = _monotonic()
    try:
        if now - proc._tls.gilyield < GOSCHED_GIL_SLICE:
            return
    except AttributeError:
        pass
    mg = s.maing
    want = mg is not g and mg.status == _Grunning and not s.maingoexit
    if not want:
        mine = g.home
        for q in s.allp:
            if q is not mine and q.curg is not None:
                want = True
                break
    if want:
        _sched_yield()
        now = _monotonic()
    proc._tls.gilyield = now


def _gosched_thread(g):
    """gosched() in a thread G.  It has no P and so cannot queue itself behind
    the runnable Gs; it queues a marker G there instead and parks until the
    marker has run (the happens-before edge, see HACKING.md "gosched"):

    * a P with Gs in its runq or runnext: the marker goes to that P's runq tail;
    * else, if the global queue has Gs: a batch of them (as ``globrunqget``
      takes) moves to the runq of a spinning P, else of an idle one (else of
      any), the marker behind them;
    * else nothing is runnable: return at once.

    The marker is homed on that P before it is queued, so no other P steals it
    and it runs on that P after every G ahead of it there, homed ones
    certainly; a movable one ahead of it may be stolen by an idle P, which
    runs it next.  The marker readies the thread G (``goready``) and ends.
    Ctrl-C while parked withdraws the marker through ``sel`` (as a thread G's
    channel park does); so does the park's check every ``GOSCHED_CHECK`` when
    the P has retired with the marker still queued (GOMAXPROCS lowered
    meanwhile), the process is exiting, or one goroutine has held the P for
    ``GOSCHED_HOG_WAIT`` without a schedule (no preemption yet: a goroutine
    spinning until the caller acts must not block it for ever)."""
    s = proc._sched
    if s is None or s.exiting:
        return                           # no runtime yet: nothing is runnable
    target = None
    for q in s.allp:
        if not q.draining and (q.rq_len() or q.runnext is not None):
            target = q
            break
    batch = None
    with s.lock:
        if target is None and s.runq:
            live = [q for q in s.allp if not q.draining]
            if live:
                # a spinning P is already looking for this work; else an idle
                # one (put_remote wakes it); else any
                spin = [q for q in live if q.spinning]
                idle = [q for q in s.pidle if not q.draining]
                target = spin[0] if spin else idle[-1] if idle else live[0]
                n = len(s.runq)
                batch = [s.runq.popleft()
                         for _ in range(min(n, n // len(s.allp) + 1, proc.GLOBRUNQ_BATCH_MAX))]
        if target is not None:
            s.goidgen += 1
            goid = s.goidgen
    if target is None:
        _gosched_yield_gil(s, g)
        return
    sel = _Lock()
    marker = G(goid, _gosched_marker, (g, sel), {}, contextvars.Context(), None)
    marker.home = target                 # unstealable, runs on target
    g.status = _Grunnable
    g.waitsince = _monotonic()
    if batch:
        target.rq_extend(batch)
    sema = g.sema
    try:
        target.rq_put_remote(marker)     # wakes target if it sleeps
        last = None
        since = _monotonic()
        while not sema.acquire(True, GOSCHED_CHECK):
            if target.status == _Pdead or s.exiting:
                stop = True              # the marker will never run
            else:
                cur = (target.schedtick, target.curg)
                now = _monotonic()
                if cur != last:
                    last, since = cur, now
                stop = cur[1] is not None and now - since >= GOSCHED_HOG_WAIT
            if stop and sel.acquire(False):
                break                    # withdraw the marker and return
    except BaseException:
        if not sel.acquire(False):
            sema.acquire()               # the marker won: take the token it posts
        g.status = _Grunning
        raise
    g.status = _Grunning


def _gosched_marker(tg, sel):
    """Body of the marker G of ``_gosched_thread``: runs on its P after the Gs
    queued ahead of it, then readies the thread G that yielded."""
    p = proc.getg().home
    # The marker is no goroutine of the program: cancel the count its end
    # (gbody.c gdestroy) takes off, here on its P's own thread (p.ngdelta is the P's).
    p.ngdelta += 1
    if p.runnext is not None:
        # a runnext G that lost the runnext-streak cap to the marker: once more
        # to the tail, so it runs first
        gosched()
    if sel.acquire(False):
        proc.goready(tg)

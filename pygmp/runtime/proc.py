"""The scheduler (Go's proc.go): M, sched, newproc, schedule/findrunnable,
gopark/goready, work stealing, wakep, gomaxprocs and checkdead.

Invariants are written down in ../HACKING.md; the short version:

* A P's worker thread is the only thread that runs that P's Gs.  A G is homed on
  the P that first ran it and is always readied onto that P.
* ``gopark`` runs on the parking G's own thread.  The G has already published
  itself (a sudog on a channel queue, a timer, a semaphore waiter) under the lock
  that guards that structure and set ``status = _Gwaiting`` before releasing it.
  A waker removes the waiter under the same lock, so each park is readied at most
  once; ``goready`` only enqueues.  If the waker is fast and the G is dequeued by
  its own thread before it switched away, it simply continues.
* No Python user code runs while a runtime lock is held.
"""

import collections
import contextvars
import os
import random
import sys
import threading
import time

from greenlet import greenlet, getcurrent, GreenletExit

from . import panic as _panic
from . import settings as _settings
from .g import (G, new_thread_g, _Grunning, _Gwaiting, _Gdead)
from .p import P, RUNQ_MOVABLE_MAX, _Prunning, _Pdead
from .. import _hot

_monotonic = time.monotonic
runqput = _hot.runqput          # owner-only put; nxt: into runnext
runqget = _hot.runqget          # owner-only get: runnext (capped streak), then the runq
next_local_fast = _hot.next_local   # runqget + the slow cases via next_local below
gopark = _hot.gopark            # park the current G (caller published a waiter)
goready = _hot.goready          # make a parked G runnable on its home P
_switchto = _hot.switchto       # switch from the current G to nxt (None: to g0)
_trace_event = _hot.trace_event # pygmp.trace: a no-op unless a trace runs
_copy_context = contextvars.copy_context
_getframe = sys._getframe
_get_ident = threading.get_ident

GFREE_MAX = 1024           # per-P cache of finished greenlets (Go keeps every dead G)
STACK_CACHE_CHUNKS = 4096  # at most this many warm 16 KiB data-stack chunks (csrc/stackcache.c)
STACK_ROOT_BYTES = 1280    # a goroutine greenlet's first data-stack chunk (csrc/stackcache.c small roots)
SCAVENGE_PERIOD = 1.0      # seconds between stack-cache scavenges (sysmon)
GLOBRUNQ_BATCH_MAX = 128
GOIDCACHE = 16             # goids a P takes from sched at once (Go's _GoidCacheBatch)
FAIRNESS_TICKS = 61        # check the global queue every 61 schedticks
NETPOLL_BUSY_INTERVAL = 0.002   # a busy P polls its fds at least this often (checked every 61 ticks)
NETPOLL_STALE = 0.010      # an idle P polls a busy P's fds when they have not been polled for this long


class M:
    """An OS thread the runtime knows: a P's worker, or a thread G's thread."""
    __slots__ = ("kind", "p", "tg", "ident")

    def __init__(self, kind, p=None, tg=None):
        self.kind = kind       # "worker", "m0", "thread", "locked"
        self.p = p
        self.tg = tg           # thread G (m0 / plain / locked threads)
        self.ident = _get_ident()


class Sched:
    """Global scheduler state (Go's schedt).  Everything here is guarded by ``lock``
    unless noted."""

    def __init__(self):
        self.lock = threading.Lock()
        self.runq = collections.deque()      # global runqueue: movable Gs only
        self.pidle = []                      # idle Ps (not draining)
        self.nspinning = 0
        self.nidle = 0                       # Ps in their idle wait, draining ones too
        self.allp = []                       # copy-on-write: replaced, never mutated
        self.goidgen = 1                     # goid 1 is the main goroutine
        self.ngdelta = 0                     # goroutines created/exited off any P, or by retired Ps
        self.maing = None
        self.threadgs = {}                   # thread ident -> thread G
        self.runtime_idents = set()          # idents of threads the runtime owns
        self.nextpid = 0
        self.maxthreads = 10000
        self.nthreads = 0                    # threads the runtime started (workers, locked)
        self.pid = os.getpid()
        self.maingoexit = False
        # External wake sources (docs/design.md §3 checkdead): counts kept by their owners
        # under ``lock``: blocking calls in flight, fds with parked waiters, signal
        # subscriptions.
        self.nsyscall = 0
        self.nnetwait = 0
        self.nsignal = 0
        self.exiting = False                 # process shutdown: workers freeze (see _atexit)
        self.nworkers = 0                    # live worker threads
        self.nfrozen = 0
        self.stealcount = 0                  # Gs stolen by Ps that have since retired
        self.asyncpreempt = False            # asynchronous preemption available (sysmon.start)


_sched = None
_startlock = threading.Lock()
_tls = threading.local()
_old = []                  # runtimes orphaned by fork: kept alive, never run again
_start_hooks = []          # f(sched) run by start() for each new runtime (process.py: fork/exit hooks; sysmon.py: sysmon)


# ---------------------------------------------------------------------------
# start-up, Ms, getg

def _initial_procs(settings):
    if settings.GOMAXPROCS is not None:
        return settings.GOMAXPROCS
    from .cpu import num_cpu
    return num_cpu()


def start():
    """Start the runtime on first use (from any thread); return the Sched."""
    global _sched
    s = _sched
    if s is not None:
        return s
    with _startlock:
        if _sched is not None:
            return _sched
        s = Sched()
        s.settings = _settings.load()
        mt = threading.main_thread()
        m0 = M("m0")
        m0.ident = mt.ident
        s.maing = new_thread_g(1, m0)
        m0.tg = s.maing
        s.threadgs[mt.ident] = s.maing
        _sched = s
        _hot.set_globrunq(s.runq)
        _hot.install_stack_cache(STACK_CACHE_CHUNKS, STACK_ROOT_BYTES)
        _procresize(s, _initial_procs(s.settings))
        for hook in _start_hooks:
            hook(s)
        return s


def getm():
    try:
        return _tls.m
    except AttributeError:
        return _newm_thread()


def _newm_thread():
    """First runtime call on a thread the runtime does not own: give it a thread G."""
    s = _sched or start()
    ident = _get_ident()
    with s.lock:
        g = s.threadgs.get(ident)
        if g is None:
            s.goidgen += 1
            m = M("thread")
            g = new_thread_g(s.goidgen, m)
            m.tg = g
            s.threadgs[ident] = g
        else:
            m = g.m
            m.ident = ident
    _tls.m = m
    return m


def getg():
    """The current G: a goroutine, or the thread G of a non-worker thread.
    None only in a worker's scheduler greenlet (g0)."""
    try:
        m = _tls.m
    except AttributeError:
        m = _newm_thread()
    p = m.p
    if p is None:
        return m.tg
    return p.curg


# ---------------------------------------------------------------------------
# goroutine creation

def _newgoid_p(p, s):
    if p.goidcache == p.goidend:
        with s.lock:
            p.goidcache = s.goidgen + 1
            s.goidgen += GOIDCACHE
            p.goidend = s.goidgen + 1
    goid = p.goidcache
    p.goidcache += 1
    return goid


def go(fn, *args, **kwargs):
    """Start ``fn(*args, **kwargs)`` as a new goroutine (Go's newproc)."""
    if not callable(fn):
        raise TypeError("go: fn must be callable, not %s" % type(fn).__name__)
    s = _sched or start()
    try:
        m = _tls.m
    except AttributeError:
        m = _newm_thread()
    f = _getframe(1)
    p = m.p
    if p is not None and not p.draining:
        cur = p.curg
        goid = p.goidcache
        if goid == p.goidend:
            goid = _newgoid_p(p, s)
        else:
            p.goidcache = goid + 1
        g = G(goid, fn, args, kwargs or None, _copy_context(),
              (cur.goid if cur is not None else 0, f.f_code, f.f_lasti))
        p.ngdelta += 1
        runqput(p, g, True)
        if s.pidle and not s.nspinning and p.nmovable:
            wakep()
        return
    cur = getg()
    with s.lock:
        s.goidgen += 1
        g = G(s.goidgen, fn, args, kwargs or None, _copy_context(),
              (cur.goid if cur is not None else 0, f.f_code, f.f_lasti))
        s.ngdelta += 1
        s.runq.append(g)
    wakep()


# ---------------------------------------------------------------------------
# runqueues

def _runqputslow(p):
    """Local movable Gs overflowed: move half of them to the global queue."""
    batch = p.rq_grab_movable(RUNQ_MOVABLE_MAX // 2)
    if batch:
        s = _sched
        with s.lock:
            s.runq.extend(batch)


def globrunqget(p, maxn):
    """Take a batch from the global queue: one to return, the rest to p's runq."""
    s = _sched
    with s.lock:
        n = len(s.runq)
        if n == 0:
            return None
        k = min(n, n // max(1, len(s.allp)) + 1, GLOBRUNQ_BATCH_MAX)
        if maxn > 0:
            k = min(k, maxn)
        batch = [s.runq.popleft() for _ in range(k)]
    g = batch[0]
    if len(batch) > 1:
        p.rq_extend(batch[1:])
    return g


def next_local(p):
    """The next G this P can run without blocking or stealing; runs due timers.
    The C core's next_local calls this one every 61st tick, when a timer may be
    due, or when the global queue has work."""
    if (p.schedtick + 1) % FAIRNESS_TICKS == 0:
        p.schedtick += 1
        # a busy P polls its fds every few ms so I/O waiters are not starved
        if _monotonic() - p.lastpoll > NETPOLL_BUSY_INTERVAL:
            p.parker.poll()
        if _sched.runq and not p.draining:
            g = globrunqget(p, 1)        # fairness: the global queue is not starved
            if g is not None:
                p.streak = 0
                return g
    t0 = p.timer0
    if t0 is not None and t0 <= _monotonic():
        from .timers import runtimers
        runtimers(p)
    g = runqget(p)
    if g is None and _sched.runq and not p.draining:
        g = globrunqget(p, 0)
    return g


# ---------------------------------------------------------------------------
# running Gs: execute, the goroutine body, park and ready

def _bind(p, g, glet):
    """First run of ``g``: home it on ``p`` with greenlet ``glet``."""
    g.home = p
    g.glet = glet
    p.nhomed += 1
    with p.lock:
        p.gs.add(g)


def _glet_for(p, g):
    """Greenlet for ``g`` (g0 only: may create one)."""
    glet = g.glet
    if glet is None:
        gf = p.gfree
        glet = gf.pop() if gf else greenlet(_gbody_run, p.g0)
        _bind(p, g, glet)
    return glet


def _rung(g):
    fn, args, kwargs, ctx = g.fn, g.args, g.kwargs, g.ctx
    g.fn = g.args = g.kwargs = g.ctx = None
    try:
        if kwargs is None:            # go() keeps no empty dict (64 B a goroutine)
            ctx.run(fn, *args)
        else:
            ctx.run(fn, *args, **kwargs)
    except _panic.Goexit:
        pass
    except SystemExit as e:
        _panic.exit_from_goroutine(e)
    except GreenletExit:
        raise
    except BaseException as e:
        _panic.fatalpanic(g, e)


def _gdestroy(p, g):
    # A dead G keeps no reference that could close a cycle back to itself (the
    # C G is not GC-tracked): greenlet, function and arguments (cleared by
    # _rung), the sleep timer (whose arg is the G).
    g.status = _Gdead
    g.glet = None
    g.sleeptimer = None
    g.param = None
    p.nhomed -= 1
    p.ngdelta -= 1
    with p.lock:
        p.gs.discard(g)


def _gbody(g):
    """Body of every goroutine greenlet: run a G, then reuse this greenlet for the
    next unstarted G (Go's gFree list), so spawning rarely creates a greenlet."""
    me = getcurrent()
    while True:
        _rung(g)
        p = g.home
        _gdestroy(p, g)
        if _sched is not None and _sched.exiting:
            _freeze()
        nxt = next_local_fast(p)
        if nxt is not None and nxt.glet is None:
            _bind(p, nxt, me)
            p.curg = nxt
            nxt.status = _Grunning
            g = nxt
            continue
        if len(p.gfree) >= GFREE_MAX:
            if nxt is not None:
                runqput(p, nxt, True)
            p.curg = None
            return                       # greenlet ends; control goes to g0
        p.gfree.append(me)
        if nxt is not None:
            p.curg = nxt
            nxt.status = _Grunning
            g = nxt.glet.switch(nxt)
        else:
            p.curg = None
            g = p.g0.switch(None)


# a goroutine greenlet's run function: a small data-stack root, then _gbody
_gbody_run = _hot.with_small_root(_gbody)


def _park_thread(g):
    """A thread G blocks its OS thread (GIL released) until readied."""
    s = _sched
    if s.nidle == len(s.allp):
        checkdead()
    g.sema.acquire()


def park_current(reason):
    """Park the calling G with nothing published (callers that publish themselves
    elsewhere use gopark).  Raises RuntimeError where parking is impossible."""
    g = getg()
    if g is None:
        raise RuntimeError("pygmp: cannot park the scheduler greenlet")
    g.status = _Gwaiting
    gopark(g, reason)


# ---------------------------------------------------------------------------
# the worker loop (g0), findrunnable, stealing, idle

def _worker(p):
    m = M("worker", p)
    _tls.m = m
    _hot.set_current_p(p)
    _hot.sysmon_attach(p)      # sysmon watches this P; preemption gets this thread's state
    p.m = m
    p.g0 = getcurrent()
    p.ident = m.ident
    p.status = _Prunning
    try:
        while True:
            g = findrunnable(p)
            if g is None:
                break
            # A G that switches back to g0 may hand over an unstarted G: new
            # greenlets are only ever created here, on g0's shallow stack (a
            # greenlet starts at the recursion depth of whoever switched to it).
            while g is not None:
                glet = g.glet or _glet_for(p, g)
                p.curg = g
                g.status = _Grunning
                g = glet.switch(g)
    finally:
        _retire(p)


def _retire(p):
    s = _sched
    _hot.sysmon_detach(p)
    for gl in p.gfree:
        try:
            gl.throw(GreenletExit)
        except GreenletExit:
            pass
    p.gfree.clear()
    p.status = _Pdead
    # The P outlives its thread (dead Gs keep g.home): it must not keep the
    # thread's main greenlet, which greenlet tears down when the thread ends
    # (a GC pass that visited it through the P crashed: P_traverse ->
    # green_is_gc, ~1 run in 12 of GOMAXPROCS 4 -> 1 -> 4 on 3.13).
    p.g0 = None
    p.curg = None
    p.parker.close()
    if s is not None and not forked_stale_sched(s):
        from .timers import movetimers
        movetimers(p, s)
        with s.lock:
            if p.spinning:               # woken by wakep, then retired: not spinning any more
                p.spinning = False
                s.nspinning -= 1
            if p.idle:
                p.idle = False
                s.pidle.remove(p)
            s.allp = [q for q in s.allp if q is not p]
            s.ngdelta += p.ngdelta
            s.stealcount += p.stealcount
            p.ngdelta = 0
            s.runtime_idents.discard(p.ident)
            s.nthreads -= 1
            s.nworkers -= 1


def findrunnable(p):
    s = _sched
    while True:
        if s.exiting:
            _freeze()
        if p.draining:
            if p.spinning:
                _resetspinning(p)
            _drain(p)
            if p.nhomed == 0:
                return None
        g = next_local_fast(p)
        if g is not None:
            if p.spinning:
                _resetspinning(p)
            return g
        # non-blocking netpoll: ready Gs waiting on this P's fds
        if p.parker.poll():
            continue
        if not p.draining:
            g = _stealwork(p)
            if g is not None:
                if p.spinning:
                    _resetspinning(p)
                return g
        _idle(p)


def _drain(p):
    """A removed P gives away its movable Gs and then runs only its homed Gs."""
    moved = p.rq_grab_movable(1 << 30)
    with p.lock:
        nx = p.runnext
        if nx is not None and nx.home is None:
            p.runnext = None
            moved.append(nx)
    if moved:
        s = _sched
        with s.lock:
            s.runq.extend(moved)
        wakep()


def _resetspinning(p):
    s = _sched
    with s.lock:
        if p.spinning:
            p.spinning = False
            s.nspinning -= 1
        more = bool(s.runq)
    if more:
        wakep()


def _stealwork(p):
    s = _sched
    allp = s.allp
    if len(allp) < 2 and p.timer0 is None:
        return None
    now = _monotonic()
    victims = list(allp)
    random.shuffle(victims)
    for q in victims:
        if q is p:
            continue
        t0 = q.timer0
        if t0 is not None and t0 <= now:
            from .timers import runtimers
            runtimers(q)
        # a busy or blocked P must not hold up readiness of fds in its poller
        if q.sleeping is False and now - q.lastpoll > NETPOLL_STALE:
            q.parker.poll()
        if q.nmovable or (q.stuck and q.runnext is not None):
            taken = q.rq_steal()
            if taken:
                p.stealcount += len(taken)
                _trace_event(7, p, 0, len(taken), q)     # TR_STEAL (pygmp.trace)
                g = taken[0]
                if len(taken) > 1:
                    p.rq_extend(taken[1:])
                return g
    return runqget(p)     # other Ps' timers may have readied Gs homed here


def _next_deadline(s):
    d = None
    for q in s.allp:
        t = q.timer0
        if t is not None and (d is None or t < d):
            d = t
    return d


def _idle(p):
    """Nothing to run: publish idleness, recheck everything, then sleep until
    woken (new work) or the earliest timer of any P is due."""
    s = _sched
    with s.lock:
        if s.runq and not p.draining:
            return                                 # new global work: go round again
        if p.spinning:
            p.spinning = False
            s.nspinning -= 1
        if not p.draining:
            p.idle = True
            s.pidle.append(p)
        s.nidle += 1
        alldead = s.nidle == len(s.allp)
    try:
        _idle_sleep(p, s, alldead)
    finally:
        with s.lock:
            s.nidle -= 1
            if p.idle:
                p.idle = False
                try:
                    s.pidle.remove(p)
                except ValueError:
                    pass


def _idle_sleep(p, s, alldead):
    # Publish "sleeping, deadline unknown" first, then read the timers: a timer
    # added concurrently either is seen here or its adder sees us sleeping with
    # an unknown/later deadline and unparks us (timers.wake_for_timer).
    with p.lock:
        sleep = not p.rq_len() and p.runnext is None
        p.sleeping = sleep
        p.sleepuntil = SLEEP_UNKNOWN
    try:
        if sleep and not p.draining:
            if s.runq:
                sleep = False
            else:
                for q in s.allp:
                    if q is not p and q.nmovable:
                        sleep = False
                        break
        if not sleep:
            return
        deadline = _next_deadline(s)
        with p.lock:
            p.sleepuntil = deadline
        if deadline is None:
            if alldead:
                checkdead()
            p.parker.park(None)
        else:
            t = deadline - _monotonic()
            if t > 0:
                p.parker.park(t)
    finally:
        with p.lock:
            p.sleeping = False
            p.sleepuntil = SLEEP_UNKNOWN


SLEEP_UNKNOWN = -1.0


def wakep():
    """New movable work: wake one idle P unless one is already looking."""
    s = _sched
    if not s.pidle or s.nspinning:
        return
    with s.lock:
        if not s.pidle or s.nspinning:
            return
        p = s.pidle.pop()
        p.idle = False
        p.spinning = True
        s.nspinning += 1
    p.parker.unpark()


# ---------------------------------------------------------------------------
# GOMAXPROCS

def _newp(s):
    p = P(s.nextpid, _new_parker(s))
    p.parker.bind(p)          # the parker updates p.lastpoll
    s.nextpid += 1
    return p


def _new_parker(s):
    from . import park
    return park.new_parker(s.settings.PYGMP_NETPOLL_SHARED)


def _startworker(s, p):
    if s.nthreads + 1 > s.maxthreads:
        _panic.fatal("thread exhaustion (runtime: program exceeds %d-thread limit)"
                     % s.maxthreads)
    s.nthreads += 1
    s.nworkers += 1
    t = threading.Thread(target=_worker, args=(p,), name="pygmp-P%d" % p.id, daemon=True)
    p.thread = t
    t.start()
    s.runtime_idents.add(t.ident)


def _procresize(s, n):
    """Set the number of Ps to ``n`` (called under no lock; takes s.lock)."""
    with s.lock:
        live = [p for p in s.allp if not p.draining]
        old = len(live)
        if n > old:
            newps = [_newp(s) for _ in range(n - old)]
            s.allp = live + newps + [p for p in s.allp if p.draining]
            for p in newps:
                _startworker(s, p)
        elif n < old:
            keep, drop = live[:n], live[n:]
            for p in drop:
                p.draining = True
                if p.idle:
                    p.idle = False
                    s.pidle.remove(p)
            s.allp = keep + [p for p in s.allp if p.draining]
        s.gomaxprocs = n
        drained = [p for p in s.allp if p.draining]
    for p in drained:
        p.parker.unpark()
    return old


def gomaxprocs(n=0):
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError("gomaxprocs: n must be an int, not %s" % type(n).__name__)
    s = _sched or start()
    prev = s.gomaxprocs
    if n >= 1 and n != prev:
        _procresize(s, n)
    return prev


def num_goroutine():
    s = _sched or start()
    total = 1 + s.ngdelta            # the main goroutine
    if s.maingoexit:
        total -= 1
    for p in s.allp:
        total += p.ngdelta
    return total


# ---------------------------------------------------------------------------
# checkdead

def _plain_threads_running(s):
    # The main thread first: at shutdown threading marks it stopped before the
    # atexit handlers run, so is_alive() cannot be trusted for it.
    mg = s.maing
    if not s.maingoexit and mg.status != _Gwaiting:
        return True
    for t in threading.enumerate():
        ident = t.ident
        if ident in s.runtime_idents or not t.is_alive():
            continue
        tg = s.threadgs.get(ident)
        if tg is not None and (tg.status == _Gwaiting or tg.status == _Gdead):
            continue
        if t is threading.main_thread() and s.maingoexit:
            continue
        if getattr(t, "_pygmp_runtime", False):
            continue
        return True
    return False


def checkdead():
    """Every P idle and every G blocked with nothing that could wake one: fatal.
    Called when the last P goes idle with no timer to wait for, and when a
    thread G parks while every P is idle."""
    s = _sched
    with s.lock:
        if s.nidle != len(s.allp) or s.runq or s.exiting:
            return
        if s.nsyscall or s.nnetwait or s.nsignal:
            return
        allp = list(s.allp)
    for p in allp:
        with p.lock:
            if p.rq_len() or p.runnext is not None or not p.sleeping:
                return
        if p.ntimers or p.curg is not None:
            return
    if _plain_threads_running(s):
        return
    with s.lock:
        if s.nidle != len(s.allp) or s.runq:
            return
    if s.maingoexit and num_goroutine() == 0:
        _panic.fatal("no goroutines (main called runtime.Goexit) - deadlock!")
    _panic.fatal("all goroutines are asleep - deadlock!", s)


# ---------------------------------------------------------------------------
# fork and exit: what the scheduler's own state needs (the protocols are in
# process.py)

def _after_fork_child():
    """In a forked child: drop the parent's runtime; the next use starts one."""
    global _sched, _tls
    if _sched is not None:
        _old.append(_sched)
    _sched = None
    _tls = threading.local()
    _hot.set_current_p(None)
    _hot.set_globrunq(None)


def _freeze():
    s = _sched
    with s.lock:
        s.nfrozen += 1
    _forever = threading.Lock()
    _forever.acquire()
    while True:
        _forever.acquire()       # blocks in C with the GIL released; never returns


def forked_stale_sched(s):
    """True in a forked child for the parent's runtime."""
    return s is not _sched


# ---------------------------------------------------------------------------
# the C core (csrc/proc.c) and the named points where it calls back into Python
# (HACKING.md "The C/Python boundary")

from .chan import default as _default
_getg_slow = getg               # a thread with no P (main, plain, go_locked threads)
getg = _hot.getg
_hot.init(getg=_getg_slow, park_thread=_park_thread, next_local=next_local,
          bind=_bind, runqputslow=_runqputslow, park_current=park_current,
          panic_error=_panic.PanicError, default=_default)

"""The scheduler (Go's proc.go), Python half: M, Sched, start-up, newproc
(``go``), gomaxprocs, checkdead and the worker thread's life.  The worker loop
itself (schedule/findrunnable, stealing, wakep, spinning, draining, the idle
wait) is C: ``_hot.schedule`` (csrc/sched.c).

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
import sys
import threading
import time

from greenlet import getcurrent, GreenletExit

from . import panic as _panic
from . import settings as _settings
from .g import G, new_thread_g, _Gwaiting, _Gdead
from .p import P, _Prunning, _Pdead
from .. import _hot

_monotonic = time.monotonic
runqput = _hot.runqput          # owner-only put; nxt: into runnext
runqget = _hot.runqget          # owner-only get: runnext (capped streak), then the runq
next_local_fast = _hot.next_local   # runqget, fairness tick, own poller, timers, global queue
wakep = _hot.wakep              # new movable work: wake an idle P unless one spins
gopark = _hot.gopark            # park the current G (caller published a waiter)
goready = _hot.goready          # make a parked G runnable on its home P
_switchto = _hot.switchto       # switch from the current G to nxt (None: to g0)
_trace_event = _hot.trace_event # pygmp.trace: a no-op unless a trace runs
_copy_context = contextvars.copy_context
_getframe = sys._getframe
_get_ident = threading.get_ident

GFREE_MAX = _hot.GFREE_MAX  # per-P cache of finished goroutines' greenlets (csrc/gbody.c)
STACK_CACHE_CHUNKS = 4096  # at most this many warm 16 KiB data-stack chunks (csrc/stackcache.c)
STACK_ROOT_BYTES = 1280    # a goroutine greenlet's first data-stack chunk (csrc/stackcache.c small roots)
SCAVENGE_PERIOD = 1.0      # seconds between stack-cache scavenges (sysmon)
GLOBRUNQ_BATCH_MAX = 128   # Gs a P takes from the global queue at once (csrc/sched.c; gosched.py)
GOIDCACHE = 16             # goids a P takes from sched at once (Go's _GoidCacheBatch)
NETPOLL_BUSY_INTERVAL = 0.002   # a busy P polls its fds at least this often (csrc/proc.c next_local)
MAIN_SIGNAL_RECHECK = 0.25  # a parked main thread looks for a lost SIGINT this often (_park_thread)


class M:
    """An OS thread the runtime knows: a P's worker, or a thread G's thread."""
    __slots__ = ("kind", "p", "tg", "ident")

    def __init__(self, kind, p=None, tg=None):
        self.kind = kind       # "worker", "m0", "thread", "locked"
        self.p = p
        self.tg = tg           # thread G (m0 / plain / locked threads)
        self.ident = _get_ident()


class Sched(_hot.SchedBase):
    """Global scheduler state (Go's schedt).  Everything here is guarded by ``lock``
    unless noted.  The C base (csrc/sched.c, struct SchedObject) holds what the
    worker loop reads without the GIL: ``lock``, ``runq`` (the global queue,
    movable Gs only), ``allp`` (copy-on-write: replaced under ``lock``, never
    mutated), the idle list (``pidle``, ``npidle``), ``nspinning``, ``nidle``
    (Ps in their idle wait, draining ones too)."""

    def __init__(self):
        self.runq = collections.deque()
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
        # External wake sources (docs/design.md §3 checkdead): counts kept by
        # their owners under ``lock``: blocking calls in flight, signal
        # subscriptions; Gs parked on the network are counted per P in C
        # (``nnetwait`` below).
        self.nsyscall = 0
        self.nsignal = 0
        self.exiting = False                 # process shutdown: workers freeze (see _atexit)
        self.nworkers = 0                    # live worker threads
        self.nfrozen = 0
        self.stealcount = 0                  # Gs stolen by Ps that have since retired
        self.asyncpreempt = False            # asynchronous preemption available (sysmon.start)

    @property
    def nnetwait(self):
        """Gs parked waiting on a socket (per-P counters in C, summed)."""
        return _hot.nnetwait(self.allp)


_sched = None
_startlock = threading.Lock()
_Local = threading.local
_Thread = threading.Thread
_Lock = threading.Lock
_enumerate = threading.enumerate   # OS threads only (not pygmp.monkey's goroutine Threads)
_tls = _Local()
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
        _hot.set_sched(s)
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
        # No wakep: this P is running and gets to g; another P would only
        # take the GIL from it.  sysmon wakes an idle P for movable work that
        # waits on a P that has not scheduled for its period (a G in a long
        # stretch, or blocked outside Python): HACKING.md "Which P runs new work".
        runqput(p, g, True)
        return
    cur = getg()
    with s.lock:
        s.goidgen += 1
        g = G(s.goidgen, fn, args, kwargs or None, _copy_context(),
              (cur.goid if cur is not None else 0, f.f_code, f.f_lasti))
        s.ngdelta += 1
        s.runq.append(g)
    _hot.wakep_idle()


# ---------------------------------------------------------------------------
# running Gs: park and ready (a goroutine's life on its greenlet, from its
# first run to its end and the reuse of its greenlet, is csrc/gbody.c)


def _park_thread(g):
    """A thread G blocks its OS thread (GIL released) until readied."""
    s = _sched
    if s.nidle == len(s.allp):
        checkdead()
    if g is s.maing:
        # A SIGINT whose C handler runs on the main thread after the last
        # signal check and before the lock wait starts is not seen by the wait
        # (CPython's lock.acquire has that window; a main thread that waits for
        # the GIL behind busy workers sits in it long enough to be hit: measured
        # ~1 in 5 runs of test_echo_server_client_vanishes).  Wake now and then
        # so the pending KeyboardInterrupt is raised here at most that late.
        while not g.sema.acquire(True, MAIN_SIGNAL_RECHECK):
            pass
    else:
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
        _hot.schedule(p)      # the worker loop (csrc/sched.c); returns when p has drained
    finally:
        _retire(p)


def _trace_pulse():
    """Called by the C worker loop between two Gs while a trace function is
    set (csrc/sched.c m_schedule): its call and return events tell a tracer
    that keeps a stack per greenlet (coverage.py) that the greenlet changed."""


def _retire(p):
    s = _sched
    _hot.sysmon_detach(p)
    for gl in p.gfree:
        try:
            gl.throw(GreenletExit)
        except GreenletExit:
            pass
    p.gfree.clear()
    # The worker thread's main greenlet must die with the thread: held by the
    # retired P, it can outlive greenlet's cleanup of the dead thread's state,
    # and the P collected by the cyclic GC during that cleanup crashed the
    # process (test_timer_from_main_after_gomaxprocs_lowered_fires).
    p.g0 = None
    p.status = _Pdead
    # The P outlives its thread (dead Gs keep g.home): it must not keep the
    # thread's main greenlet, which greenlet tears down when the thread ends
    # (a GC pass that visited it through the P crashed: P_traverse ->
    # green_is_gc, ~1 run in 12 of GOMAXPROCS 4 -> 1 -> 4 on 3.13).
    p.g0 = None
    p.curg = None
    p.parker.close()
    if s is not None and not forked_stale_sched(s):
        live = [q for q in s.allp if q is not p and not q.draining]
        _hot.movetimers(p, live[0] if live else None)
        with s.lock:
            s.unidle_locked(p)           # woken by wakep, then retired: not spinning any more
            s.allp = [q for q in s.allp if q is not p]
            _hot.set_allp(s.allp)
            s.ngdelta += p.ngdelta
            s.stealcount += p.stealcount
            p.ngdelta = 0
            s.runtime_idents.discard(p.ident)
            s.nthreads -= 1
            s.nworkers -= 1


# ---------------------------------------------------------------------------
# GOMAXPROCS

def _newp(s):
    p = P(s.nextpid, _new_parker(s))
    p.parker.bind(p)          # the parker updates p.lastpoll
    s.nextpid += 1
    return p


def _new_parker(s):
    from . import park
    return park.new_parker()


def _startworker(s, p):
    if s.nthreads + 1 > s.maxthreads:
        _panic.fatal("thread exhaustion (runtime: program exceeds %d-thread limit)"
                     % s.maxthreads)
    s.nthreads += 1
    s.nworkers += 1
    t = _Thread(target=_worker, args=(p,), name="pygmp-P%d" % p.id, daemon=True)
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
                s.unidle_locked(p)
            s.allp = keep + [p for p in s.allp if p.draining]
        s.gomaxprocs = n
        _hot.set_allp(s.allp)
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
    for t in _enumerate():
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
    _tls = _Local()
    _hot.set_current_p(None)
    _hot.set_globrunq(None)
    _hot.set_sched(None)
    _hot.set_allp(())


def _freeze():
    s = _sched
    with s.lock:
        s.nfrozen += 1
    _forever = _Lock()
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
_hot.init(getg=_getg_slow, park_thread=_park_thread, checkdead=checkdead,
          park_current=park_current,
          panic_error=_panic.PanicError, default=_default,
          fatalpanic=_panic.fatalpanic, exit_from_goroutine=_panic.exit_from_goroutine,
          goexit=_panic.Goexit)


def sched_stats():
    """Per-P counters of the worker loop (bench/tail_diag.py; HACKING.md "Tail
    latency at the default GOMAXPROCS")."""
    s = _sched
    if s is None:
        return {}
    return {"P%d" % p.id: st for p, st in zip(s.allp, s.p_stats())}

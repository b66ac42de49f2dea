"""The blocking-call handoff (Go's entersyscall/exitsyscall; docs/design.md §5).

Go hands the *P* to another M while an M sits in the kernel.  A started
greenlet cannot leave its OS thread, so pygmp moves the *call* instead: the
calling goroutine publishes itself (status ``_Gsyscall``), the call is queued
on a pooled "syscall M" thread, and the goroutine parks; its worker thread
goes on running the P's other goroutines.  The syscall M runs the call, stores
the result (or the exception), then readies the goroutine.

Protocol (HACKING.md "The park/ready protocol"):

1. the caller sets ``g.status = _Gsyscall``, counts the call in
   ``sched.nsyscall`` (under ``sched.lock``: checkdead never fires while a
   blocking call could still wake someone), then queues the job;
2. it calls ``gopark(g, "syscall")``;
3. the syscall M runs the call, writes ``job.ok``/``job.res`` and only then
   calls ``goready(g)``; after that it never touches the job again.  Each job is
   readied exactly once (one M owns it).  Then, under ``sched.lock``, it drops
   the call from ``nsyscall``; if that was the last call in flight and every P
   is idle it runs ``checkdead`` itself (the readied G may already have parked
   again for good before the count dropped).

The pool: idle Ms are a LIFO stack (the most recently used is reused first, so
the cold ones reach their keep-alive).  sysmon retires them: the pool
publishes when its oldest idle M (the bottom of the stack) passes
``KEEPALIVE`` (``_hot.sysmon_retire_at``, under ``_plock``, whenever the
bottom changes); sysmon, which reads that time without the GIL and bounds
every sleep by it, calls ``retire_idle`` then, which ends every M idle for
``KEEPALIVE`` and publishes the next time.  An idle M waits on its semaphore
with no timeout: an idle pool costs no wake-ups.  A new M is started when none
is idle, counted in ``sched.nthreads`` against ``sched.maxthreads`` (exceeding
it is Go's fatal "thread exhaustion").  Pool threads are marked
``_pygmp_runtime`` and listed in ``sched.runtime_idents`` so checkdead does not
take them for user threads.  Nothing the callable raises can end a pool thread.

Fast path (docs/design.md §5): per call site, i.e. per function object (``__func__``
of a bound method), we count the consecutive calls that finished in under
``FAST_THRESHOLD`` (20 µs, Go's sysmon retake threshold) and the site's
*strikes* (calls that took longer, inline or handed off).  A site runs inline
on the worker (timed) once it has ``INLINE_AFTER * 4**min(strikes,
STRIKES_CAP)`` consecutive short calls (3, 12, 48, ... 12288); every call that
takes longer adds a strike and sends the site back to the handoff.  New sites
are always handed off first, so a call that blocks for seconds never blocks a
worker the first time; a site that always blocks is never run inline; a site
that blocks now and then blocks a worker at most once per thousands of calls.
``FORGIVE_AFTER`` consecutive short inline calls forgive one strike.

Why not docs/design.md §5's "ran long once, handed off forever": on a GIL build a
0.3 µs inline call is now and then measured at 50 µs and more because another
thread took the GIL in between, in bursts.  Measured (bench in the report of
this change): a no-op site got marked slow within 20,000 calls in 2 of 3 runs,
and reached 5 strikes in one run; a sticky mark would cost that hot short
site a 25-30 µs handoff per call for the rest of the process.  The site table
is bounded (``SITES_MAX``; cleared when full, which only costs handoffs).
Races between goroutines updating one site only affect this heuristic, never
correctness.
"""

import bisect
import contextvars
import os
import threading
import time

from . import proc
from .._hot import (checkpreempt as _checkpreempt, trace_event as _trace_event,
                   sysmon_retire_at as _retire_at)
from . import panic as _panic
from .g import _Gsyscall, _Grunning

_perf = time.perf_counter
_monotonic = time.monotonic
_copy_context = contextvars.copy_context
_Lock = threading.Lock
_Thread = threading.Thread   # (pygmp.monkey may replace the module's attributes)
_get_ident = threading.get_ident

KEEPALIVE = 10.0          # seconds an idle syscall M waits for work before sysmon retires it
FAST_THRESHOLD = 20e-6    # a call that finishes under this is "short" (Go's 20 µs)
INLINE_AFTER = 3          # consecutive short calls before a site runs inline (x 4**strikes)
STRIKES_CAP = 6           # the requirement stops growing here (3 * 4**6 = 12288 calls)
FORGIVE_AFTER = 10000     # consecutive short inline calls that forgive one strike
SITES_MAX = 4096          # call sites remembered (cleared when full)

# Counters (read by pygmp.metrics).  ``handoffs`` and ``inline`` are updated
# under _plock.
stats = {"handoffs": 0, "inline": 0, "started": 0, "exited": 0}

# Runnable->running latency of goroutines returning from a handed-off call:
# from the syscall M's goready to the goroutine running again (every handoff
# is recorded: it already costs two thread hops, a perf_counter is noise).
# Bucket upper bounds in seconds; the last is +inf.
LAT_BUCKETS = [1e-6 * 2 ** i for i in range(25)] + [float("inf")]   # 1 µs .. ~16.8 s
_lat_counts = [0] * len(LAT_BUCKETS)
_lat_lock = _Lock()

_sites = {}               # call-site key -> [consecutive short calls, strikes]
_plock = _Lock()          # guards _pool and the stats counters
_pool = None


class _Job:
    __slots__ = ("fn", "args", "kwargs", "ctx", "g", "ok", "res", "site", "readyat")

    def __init__(self, fn, args, kwargs, ctx, g, site):
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.ctx = ctx
        self.g = g
        self.ok = False
        self.res = None
        self.site = site
        self.readyat = 0.0


class _SysM:
    """One syscall M: a pool thread with a one-job slot and a wake semaphore."""
    __slots__ = ("sema", "job", "thread", "since")

    def __init__(self):
        self.sema = _Lock()
        self.sema.acquire()      # held = no work
        self.job = None
        self.thread = None
        self.since = 0.0         # when it went idle (monotonic), while on the idle stack


_EXIT = object()                 # the job that ends a retired M


class _Pool:
    """Syscall Ms of one runtime (one Sched; a forked child gets a new pool)."""

    def __init__(self, s):
        self.s = s
        self.pid = os.getpid()
        self.idle = []           # LIFO of idle _SysM, guarded by _plock
        self.nthreads = 0        # live pool threads, guarded by _plock


def _getpool(s):
    pool = _pool
    if pool is not None and pool.s is s:
        return pool
    return _newpool(s)


def _newpool(s):
    global _pool
    with _plock:
        if _pool is None or _pool.s is not s:
            _pool = _Pool(s)
        return _pool


def _key(fn):
    return getattr(fn, "__func__", fn)


def _site(key):
    st = _sites.get(key)
    if st is None:
        if len(_sites) >= SITES_MAX:
            _sites.clear()
        st = _sites[key] = [0, 0]
    return st


def _record_site(st, dt, inline=False):
    """Account one call of a site (``st`` = [short streak, strikes])."""
    if dt >= FAST_THRESHOLD:
        st[0] = 0
        st[1] += 1
        return
    n = st[0] + 1
    if inline and n >= FORGIVE_AFTER and st[1]:
        st[1] -= 1
        n = INLINE_AFTER << (2 * min(st[1], STRIKES_CAP))   # stay inline
    st[0] = n


def _inline_ok(st):
    return st[0] >= INLINE_AFTER << (2 * min(st[1], STRIKES_CAP))


def _record_latency(dt):
    i = bisect.bisect_left(LAT_BUCKETS, dt)
    with _lat_lock:
        _lat_counts[i] += 1


def latencies():
    """Snapshot of the syscall-return latency histogram: (bounds, counts)."""
    with _lat_lock:
        return list(LAT_BUCKETS), list(_lat_counts)


def pool_threads():
    """(live syscall Ms, idle ones) of the current runtime."""
    pool = _pool
    if pool is None or pool.s is not proc._sched:
        return 0, 0
    with _plock:
        return pool.nthreads, len(pool.idle)


def _current_goroutine():
    """The calling goroutine, or None for the main thread, a plain thread, a
    go_locked thread, a worker's scheduler greenlet, or no runtime at all."""
    if proc._sched is None:
        return None
    try:
        m = proc._tls.m
    except AttributeError:
        return None             # a thread that never entered pygmp
    if m.p is None:
        return None             # a thread G: it may block its own thread
    return m.p.curg


def call(fn, args, kwargs):
    g = _current_goroutine()
    if g is None or g.locked:
        return fn(*args, **kwargs)
    if g.preempt:
        _checkpreempt()          # a runtime entry (HACKING.md "Preemption")
    try:
        st = _site(_key(fn))
    except TypeError:            # unhashable callable: never inline
        st = None
    if st is not None and _inline_ok(st):
        with _plock:
            stats["inline"] += 1
        t0 = _perf()
        try:
            return fn(*args, **kwargs)
        finally:
            _record_site(st, _perf() - t0, True)
    return _handoff(g, fn, args, kwargs, st)


def _handoff(g, fn, args, kwargs, site):
    s = proc._sched
    job = _Job(fn, args, kwargs, _copy_context(), g, site)
    # publish the G before the work is queued (the M may finish at once)
    g.status = _Gsyscall
    g.waitsince = _monotonic()
    with s.lock:
        s.nsyscall += 1
    try:
        _submit(s, job)
    except BaseException:
        with s.lock:
            s.nsyscall -= 1
        g.status = _Grunning
        raise
    proc.gopark(g, "syscall")
    _record_latency(_perf() - job.readyat)
    if job.ok:
        return job.res
    e = job.res
    job.res = None
    try:
        raise e                  # its __traceback__ (the callable's frames) is kept
    finally:
        e = None


def _submit(s, job):
    pool = _getpool(s)
    with _plock:
        stats["handoffs"] += 1
        if pool.idle:
            m = pool.idle.pop()
            if not pool.idle:
                _retire_at(None)
            m.job = job
            m.sema.release()
            return
        pool.nthreads += 1
    # no idle M: start one (counted against the runtime's thread limit)
    with s.lock:
        over = s.nthreads + 1 > s.maxthreads
        if not over:
            s.nthreads += 1
        limit = s.maxthreads
    if over:
        with _plock:
            pool.nthreads -= 1
        _panic.fatal("thread exhaustion (runtime: program exceeds %d-thread limit)"
                     % limit)
    m = _SysM()
    m.job = job
    m.sema.release()
    t = _Thread(target=_mloop, args=(pool, m), name="pygmp-syscall", daemon=True)
    t._pygmp_runtime = True
    m.thread = t
    try:
        t.start()
    except BaseException:
        with s.lock:
            s.nthreads -= 1
        with _plock:
            pool.nthreads -= 1
        raise
    with _plock:
        stats["started"] += 1


def _mloop(pool, m):
    s = pool.s
    ident = _get_ident()
    with s.lock:
        s.runtime_idents.add(ident)
    try:
        while True:
            m.sema.acquire()
            job = m.job
            m.job = None
            if job is _EXIT:
                return               # retire_idle took it off the stack and counted it
            _run(s, job, pool, m)
            job = None
    finally:
        with s.lock:
            s.runtime_idents.discard(ident)
            s.nthreads -= 1


def _run(s, job, pool, m):
    fn, args, kwargs, ctx = job.fn, job.args, job.kwargs, job.ctx
    job.fn = job.args = job.kwargs = job.ctx = None
    goid = job.g.goid
    _trace_event(8, None, goid, 0, fn)       # TR_SYSCALL_BEGIN (pygmp.trace; no-op when off)
    t0 = _perf()
    try:
        job.res = ctx.run(fn, *args, **kwargs)
        job.ok = True
    except BaseException as e:   # noqa: BLE001 - handed to the caller
        job.res = e
    dt = _perf() - t0
    _trace_event(9, None, goid, 0, None)     # TR_SYSCALL_END
    fn = args = kwargs = ctx = None
    site = job.site
    job.site = None
    if site is not None:
        _record_site(site, dt)
    site = None
    g = job.g
    job.g = None
    job.readyat = _perf()
    # Back on the idle stack before the caller can run again: a goroutine that
    # makes its next blocking call at once finds this M instead of starting one.
    # (A submitter may hand us a job now; we only take it at m.sema.acquire.)
    with _plock:
        m.since = _monotonic()
        pool.idle.append(m)
        if len(pool.idle) == 1:
            _retire_at(KEEPALIVE)
    proc.goready(g)              # the job belongs to the G from here on
    job = None
    g = None
    with s.lock:
        s.nsyscall -= 1
        check = s.nsyscall == 0 and s.nidle == len(s.allp) and not s.exiting
    if check and proc._sched is s:
        proc.checkdead()


def retire_idle():
    """sysmon's action (GIL held): end every syscall M idle for ``KEEPALIVE``
    and publish when the next one will be."""
    pool = _pool
    if pool is None or pool.s is not proc._sched:
        return
    now = _monotonic()
    with _plock:
        idle = pool.idle
        n = 0
        while n < len(idle) and now - idle[n].since >= KEEPALIVE:
            n += 1
        gone, pool.idle[:n] = idle[:n], []
        pool.nthreads -= n
        stats["exited"] += n
        _retire_at(idle[0].since + KEEPALIVE - now if idle else None)
    for m in gone:
        m.job = _EXIT
        m.sema.release()

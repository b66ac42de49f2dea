"""``patch_threading()``: threading's primitives (and through them queue's
classes) park goroutines, never their worker thread (``patch_queue()``,
``queue.SimpleQueue``: ``_queue.py``).

How (HACKING.md "Monkey patching: threading, queue, subprocess"):

* One new primitive, ``Lock``, serves both kinds of waiter.  Its state
  (``_locked``, a FIFO of waiters) is guarded by an internal real lock ``_mu``
  that is held only for a few statements, never across a park or a block.  A
  goroutine waiter parks its G (``gopark``); a waiter that is not a goroutine
  (the main thread, a plain thread) blocks its own OS thread on a private real
  lock, exactly as an unpatched lock blocks.  ``release`` with waiters hands
  ownership to the first one (it stays locked) and wakes it after dropping
  ``_mu``; a timed-out waiter withdraws itself under ``_mu`` or, if a release
  claimed it first, owns the lock.  So each wake-up is claimed exactly once,
  under ``_mu``, and ``_mu``'s release/acquire orders the releaser's writes
  before the woken waiter's reads.
* Everything else is threading's own Python code over that lock:
  ``_allocate_lock``/``Lock`` are replaced, ``RLock`` becomes threading's
  ``_PyRLock`` (owner: ``get_ident()``, which is per goroutine), and
  ``Condition``, ``Event``, ``Semaphore``, ``BoundedSemaphore``, ``Barrier``
  and ``queue.Queue`` pick the patched names up when they are constructed.
* ``Thread.start`` starts a goroutine; ``current_thread()`` in a goroutine is
  its ``Thread`` or a per-goroutine dummy; ``local`` is keyed by that object.
"""

import _thread
import collections
import contextvars
import os
import threading
import time
import weakref

import importlib

# The runtime first: its modules bind the real threading names at import.
for _m in ("pygmp.runtime", "pygmp.runtime.syscall", "pygmp.signal", "pygmp.net",
           "pygmp.sync", "pygmp.context", "pygmp.metrics", "pygmp.trace"):
    importlib.import_module(_m)
del _m

from pygmp.runtime import proc as _proc  # noqa: E402
from pygmp.runtime import timers as _timers
from pygmp.runtime.g import _Gwaiting, _Grunning, _Gdead
from pygmp.runtime.panic import Goexit as _Goexit
from pygmp._hot import checkpreempt as _checkpreempt

from . import _core

__all__ = ["patch_threading", "Lock", "Thread", "local"]

_allocate = _thread.allocate_lock
_deque = collections.deque
_monotonic = time.monotonic
_gopark = _proc.gopark
_goready = _proc.goready
_RTimer = _timers.RTimer
_addtimer = _timers.addtimer
_deltimer = _timers.deltimer

_OThread = threading.Thread
_OTimer = threading.Timer
_o_current_thread = threading.current_thread
_o_enumerate = threading.enumerate
_o_get_ident = threading.get_ident
_o_get_native_id = getattr(threading, "get_native_id", None)
_PyRLock = threading._PyRLock
_Event = threading.Event      # a Python class: built from the patched Lock once patched


def _curg():
    """The running goroutine, or None on a thread that has no P (main thread,
    plain thread, go_locked thread) or on a worker's scheduler greenlet."""
    try:
        p = _proc._tls.m.p
    except AttributeError:
        return None
    if p is None:
        return None
    return p.curg


def _check_args(blocking, timeout):
    # The real lock's own argument checks, messages and all: a fresh lock
    # acquires at once for valid arguments and raises for bad ones.
    probe = _allocate()
    if probe.acquire(blocking, timeout):
        probe.release()


# ---------------------------------------------------------------------------
# Lock


class _Waiter:
    __slots__ = ("g", "tl", "done", "timedout", "lock")

    def __init__(self, g, lock):
        self.g = g            # the parked goroutine, or None: a thread waiter
        self.tl = None        # a thread waiter's private real lock (held)
        self.done = False     # claimed (under lock._mu) by a release or the timer
        self.timedout = False
        self.lock = lock


def _on_timeout(w, seq):
    # A timer firing for a goroutine waiter (any thread, outside runtime locks).
    lock = w.lock
    mu = lock._mu
    mu.acquire()
    if w.done:
        mu.release()
        return
    w.done = True
    w.timedout = True
    try:
        lock._waiters.remove(w)
    except ValueError:
        pass
    mu.release()
    _goready(w.g)


class Lock:
    """``threading.Lock`` that parks a goroutine and blocks a plain thread
    (see the module docstring).  Any thread or goroutine may release it."""

    __slots__ = ("_mu", "_locked", "_waiters", "__weakref__")

    def __init__(self):
        self._mu = _allocate()
        self._locked = False
        self._waiters = _deque()

    def __init_subclass__(cls, **kwargs):
        # as threading.Lock (a function before 3.13, a final type since)
        raise TypeError("type 'Lock' is not an acceptable base type")

    def acquire(self, blocking=True, timeout=-1):
        if blocking is not True or timeout != -1:
            _check_args(blocking, timeout)
        # A runtime entry, as pygmp.sync's: a goroutine whose slice is over
        # yields here, so a loop of non-blocking acquires (q.get(False) until
        # something comes) cannot keep its worker from the others.
        _checkpreempt()
        mu = self._mu
        mu.acquire()
        if not self._locked:
            self._locked = True
            mu.release()
            return True
        if not blocking or timeout == 0:
            mu.release()
            return False
        g = _curg()
        w = _Waiter(g, self)
        self._waiters.append(w)
        if g is None:
            return self._wait_thread(mu, w, timeout)
        return self._wait_g(mu, g, w, timeout)

    def _wait_thread(self, mu, w, timeout):
        tl = _allocate()
        tl.acquire()
        w.tl = tl
        mu.release()
        try:
            ok = tl.acquire(True, timeout)
        except BaseException:           # interrupted (KeyboardInterrupt in the main thread)
            if not self._withdraw(w):
                self.release()          # a release handed it to us meanwhile: pass it on
            raise
        if ok:
            return True
        return not self._withdraw(w)    # timed out, unless a release claimed us first

    def _withdraw(self, w):
        with self._mu:
            if w.done:
                return False
            w.done = True
            try:
                self._waiters.remove(w)
            except ValueError:
                pass
            return True

    def _wait_g(self, mu, g, w, timeout):
        g.status = _Gwaiting
        g.waitsince = _monotonic()
        mu.release()
        t = None
        if timeout > 0:
            t = _RTimer(_on_timeout, w)
            _addtimer(t, _monotonic() + timeout)
        try:
            _gopark(g, "threading.Lock")
        except BaseException:
            g.status = _Grunning
            if t is not None:
                _deltimer(t)
            if not self._withdraw(w) and not w.timedout:
                self.release()
            raise
        g.status = _Grunning
        if t is not None:
            _deltimer(t)
        return not w.timedout

    def release(self):
        mu = self._mu
        mu.acquire()
        if not self._locked:
            mu.release()
            raise RuntimeError("release unlocked lock")
        q = self._waiters
        if q:
            w = q.popleft()        # ownership passes to w: _locked stays True
            w.done = True
            mu.release()
            if w.g is None:
                w.tl.release()
            else:
                _goready(w.g)
            return
        self._locked = False
        mu.release()

    def locked(self):
        return self._locked

    def _at_fork_reinit(self):
        self._mu = _allocate()
        self._locked = False
        self._waiters = _deque()

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()

    # the old names (_thread.LockType has them)
    acquire_lock = acquire
    release_lock = release
    locked_lock = locked

    def __repr__(self):
        return "<%s %s.%s object at %#x>" % (
            "locked" if self._locked else "unlocked",
            type(self).__module__, type(self).__qualname__, id(self))


def RLock(*args, **kwargs):
    """``threading.RLock``: threading's own Python RLock over the patched Lock;
    its owner is ``get_ident()``, one per goroutine."""
    return _PyRLock(*args, **kwargs)


_forking = None     # the OS ident of a thread inside os.fork() (see _before_fork)


def get_ident():
    g = _curg()
    if g is None or (_forking is not None and _forking == _o_get_ident()):
        return _o_get_ident()
    return g.goid


# ---------------------------------------------------------------------------
# goroutine registry: the Thread object of each goroutine that asked

_reg_lock = _allocate()      # guards _gthreads, _live (held briefly)
_gthreads = {}               # G -> the started patched Thread it runs
_live = {}                   # patched Threads started and not yet finished (ordered)
# A goroutine's dummy Thread lives in its own contextvars context (every
# goroutine runs in a copy of its creator's): it goes when the goroutine ends
# and its context is released, with no registry to sweep.  The value is
# (G, Thread): a copy inherited from the creator names the creator's G, and
# is replaced, in the child's context only, on first use.
_dummy = contextvars.ContextVar("pygmp.monkey.current_thread")


class _ThreadMeta(type):
    """``isinstance(t, threading.Thread)`` stays true for the original
    threads (the main thread, threads of the original class)."""

    def __instancecheck__(cls, obj):
        if cls is Thread:
            return isinstance(obj, _OThread)
        return type.__instancecheck__(cls, obj)

    def __subclasscheck__(cls, sub):
        if cls is Thread:
            return issubclass(sub, _OThread)
        return type.__subclasscheck__(cls, sub)


class Thread(_OThread, metaclass=_ThreadMeta):
    """``threading.Thread`` whose ``start`` starts a goroutine.  The body runs
    in a fresh, empty ``contextvars`` context (as a new thread does); an
    exception escaping ``run`` goes to ``threading.excepthook`` (not a panic);
    ``join`` parks (or blocks a plain thread)."""

    _g_done = None

    def start(self):
        if not self._initialized:
            raise RuntimeError("thread.__init__() not called")
        with _reg_lock:
            if self._started.is_set() or self._g_done is not None:
                raise RuntimeError("threads can only be started once")
            self._g_done = _Event()
            _live[self] = None
        _proc.go(self._g_bootstrap)
        self._started.wait()

    def _g_bootstrap(self):
        g = _curg()
        self._ident = g.goid
        if _o_get_native_id is not None:
            self._native_id = _o_get_native_id()
        with _reg_lock:
            _gthreads[g] = self
        self._started.set()
        try:
            contextvars.Context().run(self._g_run)
        finally:
            with _reg_lock:
                _gthreads.pop(g, None)
                _live.pop(self, None)
            _drop_locals(self)
            self._g_done.set()

    def _g_run(self):
        try:
            self.run()
        except _Goexit:
            raise
        except BaseException:
            self._invoke_excepthook(self)

    def join(self, timeout=None):
        if not self._initialized:
            raise RuntimeError("Thread.__init__() not called")
        if self._g_done is None:
            raise RuntimeError("cannot join thread before it is started")
        if self is current_thread():
            raise RuntimeError("cannot join current thread")
        if timeout is not None:
            timeout = max(timeout, 0)
        self._g_done.wait(timeout)

    def is_alive(self):
        assert self._initialized, "Thread.__init__() not called"
        done = self._g_done
        return done is not None and self._started.is_set() and not done.is_set()

    def _g_status(self):
        if self._g_done is None:
            status = "initial"
        elif self.is_alive():
            status = "started"
        else:
            status = "stopped"
        if self._daemonic:
            status += " daemon"
        if self._ident is not None:
            status += " %s" % self._ident
        return status

    def __repr__(self):
        assert self._initialized, "Thread.__init__() was not called"
        return "<%s(%s, %s)>" % (self.__class__.__name__, self._name, self._g_status())


class _GoroutineThread(Thread):
    """``current_thread()`` in a goroutine that no patched ``Thread`` started
    (threading's ``_DummyThread`` for goroutines): alive while its goroutine
    runs, not joinable, not listed by ``enumerate()``.  Not daemonic, unlike
    ``_DummyThread``: a goroutine is a thread of the program, so the Threads it
    starts are joined at exit like those the main thread starts."""

    def __init__(self, g):
        Thread.__init__(self, name="goroutine-%d" % g.goid, daemon=False)
        self._g = g
        self._ident = g.goid
        if _o_get_native_id is not None:
            self._native_id = _o_get_native_id()
        self._started.set()

    def start(self):
        raise RuntimeError("threads can only be started once")

    def is_alive(self):
        return self._g.status != _Gdead

    def join(self, timeout=None):
        raise RuntimeError("cannot join a dummy thread")

    def _g_status(self):
        return "%s %s" % ("started" if self.is_alive() else "stopped", self._ident)


def current_thread():
    """In a goroutine: the patched ``Thread`` it runs, or its dummy (created on
    first use, the same object for the goroutine's life).  Elsewhere: as
    unpatched."""
    g = _curg()
    if g is None or (_forking is not None and _forking == _o_get_ident()):
        return _o_current_thread()
    t = _gthreads.get(g)
    if t is not None:
        return t
    cur = _dummy.get(None)
    if cur is not None and cur[0] is g:
        return cur[1]
    t = _GoroutineThread(g)
    _dummy.set((g, t))
    return t


def enumerate():
    """The unpatched list plus the patched ``Thread``s that are alive (or
    starting).  Goroutines that are not ``Thread``s are not listed."""
    out = _o_enumerate()
    with _reg_lock:
        out.extend(_live)
    return out


def active_count():
    return len(enumerate())


def _join_at_exit():
    # threading._shutdown runs this (threading._register_atexit) before the
    # interpreter finalizes: non-daemon patched Threads are joined as
    # threading joins non-daemon threads.
    me = current_thread()
    while True:
        with _reg_lock:
            ts = [t for t in _live if not t.daemon and t is not me]
        if not ts:
            return
        for t in ts:
            t.join()


# ---------------------------------------------------------------------------
# local


class _LocalImpl:
    __slots__ = ("dicts", "localargs", "locallock", "__weakref__")

    def __init__(self, args, kw):
        self.dicts = {}       # id(thread object) -> (weakref to it, its dict)
        self.localargs = (args, kw)
        self.locallock = _RLockInternal()

    def get_dict(self, t):
        return self.dicts[id(t)][1]

    def create_dict(self, t):
        d = {}
        idt = id(t)
        wrimpl = weakref.ref(self)

        def thread_deleted(_, idt=idt):
            impl = wrimpl()
            if impl is not None:
                impl.dicts.pop(idt, None)
        self.dicts[idt] = (weakref.ref(t, thread_deleted), d)
        if type.__instancecheck__(Thread, t):    # a patched Thread: dropped at its end
            lst = t.__dict__.get("_pygmp_locals")
            if lst is None:
                lst = t.__dict__["_pygmp_locals"] = []
            lst.append(wrimpl)
        return d


def _drop_locals(t):
    # a patched Thread ended: its goroutine-local values go now
    for wrimpl in t.__dict__.pop("_pygmp_locals", ()):
        impl = wrimpl()
        if impl is not None:
            e = impl.dicts.get(id(t))
            if e is not None and e[0]() is t:
                impl.dicts.pop(id(t), None)


class _RLockInternal:
    """A small reentrant lock for ``local`` (owner: the goroutine or thread)."""
    __slots__ = ("_block", "_owner", "_count")

    def __init__(self):
        self._block = Lock()
        self._owner = None
        self._count = 0

    def __enter__(self):
        me = get_ident()
        if self._owner == me:
            self._count += 1
            return
        self._block.acquire()
        self._owner = me
        self._count = 1

    def __exit__(self, *exc):
        self._count -= 1
        if not self._count:
            self._owner = None
            self._block.release()


def _local_dict(self):
    impl = object.__getattribute__(self, "_local__impl")
    t = current_thread()
    try:
        return impl, impl.get_dict(t)
    except KeyError:
        d = impl.create_dict(t)
        args, kw = impl.localargs
        with impl.locallock:
            prev = _getdict(self)
            object.__setattr__(self, "__dict__", d)
            try:
                type(self).__init__(self, *args, **kw)
            finally:
                object.__setattr__(self, "__dict__", prev)
        return impl, d


_BLANK = {}     # a local's __dict__ between two accesses (keeps no one's values alive)


def _getdict(self):
    return object.__getattribute__(self, "__dict__")


def _in_own_dict(self, op, *args):
    """``op(self, *args)`` with the calling thread's (or goroutine's) dict
    swapped in, under the local's lock; the previous dict is put back after."""
    impl, d = _local_dict(self)
    with impl.locallock:
        prev = _getdict(self)
        object.__setattr__(self, "__dict__", d)
        try:
            return op(self, *args)
        finally:
            object.__setattr__(self, "__dict__", prev)


class local:
    """``threading.local`` whose values belong to the current goroutine (or,
    outside goroutines, the current thread).  A patched ``Thread``'s values go
    when it ends; a bare goroutine's when its dummy thread object goes."""

    __slots__ = ("_local__impl", "__dict__")

    def __new__(cls, *args, **kw):
        if (args or kw) and (cls.__init__ is object.__init__):
            raise TypeError("Initialization arguments are not supported")
        self = object.__new__(cls)
        impl = _LocalImpl(args, kw)
        object.__setattr__(self, "_local__impl", impl)
        impl.create_dict(current_thread())
        object.__setattr__(self, "__dict__", _BLANK)
        return self

    def __getattribute__(self, name):
        return _in_own_dict(self, object.__getattribute__, name)

    def __setattr__(self, name, value):
        if name == "__dict__":
            raise AttributeError("%r object attribute '__dict__' is read-only"
                                 % self.__class__.__name__)
        return _in_own_dict(self, object.__setattr__, name, value)

    def __delattr__(self, name):
        if name == "__dict__":
            raise AttributeError("%r object attribute '__dict__' is read-only"
                                 % self.__class__.__name__)
        return _in_own_dict(self, object.__delattr__, name)


# threading.Timer over the patched Thread: threading's own methods
Timer = _ThreadMeta("Timer", (Thread,), {k: v for k, v in vars(_OTimer).items()
                                  if k not in ("__dict__", "__weakref__")})


def _before_fork():
    # threading's own fork handler (it runs in the child before ours) finds
    # the forking thread by get_ident() in threading._active: while a
    # goroutine forks, its thread answers with the OS ident, as unpatched.
    global _forking
    _forking = _o_get_ident()


def _after_fork_parent():
    global _forking
    _forking = None


def _after_fork_child():
    global _reg_lock, _forking
    _forking = None
    _reg_lock = _allocate()
    _gthreads.clear()
    _live.clear()


# ---------------------------------------------------------------------------
# the patch functions

_patch_lock = _allocate()


def patch_threading():
    """Make ``threading`` goroutine-aware (see the module docstring).  Idempotent."""
    with _patch_lock:
        if _core.is_module_patched("threading"):
            return
        T = threading
        _core.patch_item(T, "_allocate_lock", Lock)
        _core.patch_item(T, "Lock", Lock)
        _core.patch_item(T, "RLock", RLock)
        _core.patch_item(T, "get_ident", get_ident)
        _core.patch_item(T, "current_thread", current_thread)
        _core.patch_item(T, "enumerate", enumerate)
        _core.patch_item(T, "active_count", active_count)
        # (currentThread/activeCount stay: they warn, then call these names)
        _core.patch_item(T, "local", local)
        _core.patch_item(T, "Thread", Thread)
        _core.patch_item(T, "Timer", Timer)
        T._register_atexit(_join_at_exit)
        os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_parent,
                            after_in_child=_after_fork_child)
        _core.mark_patched("threading")

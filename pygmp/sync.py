"""Go's sync package: goroutine-aware primitives that park goroutines (never the
worker thread) and also work from plain threads (which simply block).

Each primitive has one internal lock guarding its state and FIFO wait queues
(see runtime/sema.py for the park/wake protocol).  Mutex follows Go's normal /
starvation modes (see its docstring); the others hand off directly: an unlock
that has waiters passes ownership to the first one, so none starves.
"""

import collections
import threading
import time

from .runtime.panic import PanicError
from .runtime import sema as _sema
from ._hot import checkpreempt as _checkpreempt

__all__ = ["Mutex", "RWMutex", "WaitGroup", "Once", "Cond", "Semaphore", "Locker"]

_Lock = threading.Lock
_monotonic = time.monotonic
_HANDOFF = -1          # Waiter.n of a Mutex waiter that was handed the lock


class Mutex:
    """A mutual exclusion lock.  ``lock``, ``unlock``, ``try_lock``; a context manager.

    Go's two modes (sync/mutex.go).  Normal mode: ``unlock`` releases the lock
    and wakes the first waiter, which then competes for it; a goroutine that is
    running may take the lock first (barging), so a lock passed around a hot
    loop does not convoy behind a cross-thread wake-up.  A woken waiter that
    loses goes back to the *front* of the queue.  Starvation mode: a waiter that
    has waited over 1 ms switches the mutex to direct hand-off: ``unlock``
    passes ownership to the first waiter and newcomers queue behind it, until
    the queue empties.  ``_woken`` (a waiter is awake and about to retry) keeps
    ``unlock`` from waking a second one meanwhile.
    """

    __slots__ = ("_mu", "_locked", "_q", "_woken", "_starving")

    STARVATION_S = 1e-3

    def __init__(self):
        self._mu = _Lock()
        self._locked = False
        self._q = collections.deque()
        self._woken = False
        self._starving = False

    def lock(self):
        _checkpreempt()       # a runtime entry (HACKING.md "Preemption")
        mu = self._mu
        mu.acquire()
        if not self._locked and not self._starving:
            self._locked = True
            mu.release()
            return
        self._lock_slow(mu)

    def _lock_slow(self, mu):
        # called with mu held; returns owning the lock, mu released
        g = _sema.current("Mutex.lock")
        start = _monotonic()
        woken_before = False
        while True:
            # A newcomer may barge in normal mode only; a woken waiter is first
            # in line in either mode, so a free lock is its.
            if not self._locked and (woken_before or not (self._starving and self._q)):
                self._locked = True
                mu.release()
                return
            w = _sema.Waiter(g)
            q = self._q
            if woken_before:
                q.appendleft(w)           # a woken waiter that lost keeps its turn
            else:
                q.append(w)
            try:
                _sema.park_queued(mu, q, w, "sync.Mutex.Lock")
            except BaseException:
                if w.ok:                  # woken or handed the lock as we were interrupted
                    if w.n == _HANDOFF:
                        self.unlock()
                    else:                 # pass the wake-up on, as unlock would have
                        mu.acquire()
                        self._woken = False
                        self._wake_one(mu)
                raise
            if w.n == _HANDOFF:           # starvation mode: ownership was passed to us
                return
            mu.acquire()
            self._woken = False
            woken_before = True
            if not self._starving and _monotonic() - start > self.STARVATION_S:
                self._starving = True

    def try_lock(self):
        with self._mu:
            if self._locked or self._starving:
                return False
            self._locked = True
            return True

    def unlock(self):
        mu = self._mu
        mu.acquire()
        if not self._locked:
            mu.release()
            raise PanicError("sync: unlock of unlocked mutex")
        q = self._q
        if self._starving:
            while q:
                w = q.popleft()
                if _sema.claim(w):
                    w.n = _HANDOFF        # ownership passes to w: _locked stays True
                    if not q:
                        self._starving = False
                    mu.release()
                    _sema.wake(w)
                    return
            self._starving = False
        self._locked = False
        self._wake_one(mu)

    def _wake_one(self, mu):
        # called with mu held; releases it.  Normal mode: wake the first waiter
        # unless one is already awake and about to retry.
        q = self._q
        if not self._locked and not self._woken:
            while q:
                w = q.popleft()
                if _sema.claim(w):
                    self._woken = True
                    mu.release()
                    _sema.wake(w)
                    return
        mu.release()

    def locked(self):
        return self._locked

    def __enter__(self):
        self.lock()
        return self

    def __exit__(self, *exc):
        self.unlock()


Locker = Mutex


class RWMutex:
    """A reader/writer lock.  A blocked ``lock`` keeps new readers out (as Go)."""

    __slots__ = ("_mu", "_readers", "_writer", "_rq", "_wq")

    def __init__(self):
        self._mu = _Lock()
        self._readers = 0
        self._writer = False
        self._rq = collections.deque()
        self._wq = collections.deque()

    def rlock(self):
        _checkpreempt()       # a runtime entry (HACKING.md "Preemption")
        mu = self._mu
        mu.acquire()
        if not self._writer and not self._wq:
            self._readers += 1
            mu.release()
            return
        _sema.park_on(mu, self._rq, _sema.Waiter(_sema.current("RWMutex.rlock")), "sync.RWMutex.RLock")

    def try_rlock(self):
        with self._mu:
            if self._writer or self._wq:
                return False
            self._readers += 1
            return True

    def runlock(self):
        mu = self._mu
        mu.acquire()
        if self._readers <= 0:
            mu.release()
            raise PanicError("sync: RUnlock of unlocked RWMutex")
        self._readers -= 1
        w = None
        if self._readers == 0:
            w = self._next_writer()
        mu.release()
        if w is not None:
            _sema.wake(w)

    def _next_writer(self):
        q = self._wq
        while q:
            w = q.popleft()
            if _sema.claim(w):
                self._writer = True
                return w
        return None

    def lock(self):
        _checkpreempt()       # a runtime entry (HACKING.md "Preemption")
        mu = self._mu
        mu.acquire()
        if not self._writer and self._readers == 0:
            self._writer = True
            mu.release()
            return
        _sema.park_on(mu, self._wq, _sema.Waiter(_sema.current("RWMutex.lock")), "sync.RWMutex.Lock")

    def try_lock(self):
        with self._mu:
            if self._writer or self._readers:
                return False
            self._writer = True
            return True

    def unlock(self):
        mu = self._mu
        mu.acquire()
        if not self._writer:
            mu.release()
            raise PanicError("sync: Unlock of unlocked RWMutex")
        self._writer = False
        wake = []
        rq = self._rq
        while rq:
            w = rq.popleft()
            if _sema.claim(w):
                self._readers += 1
                wake.append(w)
        if not wake:
            w = self._next_writer()
            if w is not None:
                wake.append(w)
        mu.release()
        for w in wake:
            _sema.wake(w)

    def rlocker(self):
        rw = self

        class _R:
            def lock(self):
                rw.rlock()

            def unlock(self):
                rw.runlock()

            __enter__ = lambda self: (rw.rlock(), self)[1]
            __exit__ = lambda self, *e: rw.runlock()
        return _R()

    def __enter__(self):
        self.lock()
        return self

    def __exit__(self, *exc):
        self.unlock()


class WaitGroup:
    """Waits for a collection of goroutines to finish."""

    __slots__ = ("_mu", "_n", "_q")

    def __init__(self):
        self._mu = _Lock()
        self._n = 0
        self._q = collections.deque()

    def add(self, delta):
        if isinstance(delta, bool) or not isinstance(delta, int):
            raise TypeError("WaitGroup.add: delta must be an int")
        mu = self._mu
        mu.acquire()
        n = self._n + delta
        if n < 0:
            mu.release()
            raise PanicError("sync: negative WaitGroup counter")
        self._n = n
        wake = None
        if n == 0 and self._q:
            wake = [w for w in self._q if _sema.claim(w)]
            self._q.clear()
        mu.release()
        if wake:
            for w in wake:
                _sema.wake(w)

    def done(self):
        self.add(-1)

    def wait(self):
        _checkpreempt()       # a runtime entry (HACKING.md "Preemption")
        mu = self._mu
        mu.acquire()
        if self._n == 0:
            mu.release()
            return
        _sema.park_on(mu, self._q, _sema.Waiter(_sema.current("WaitGroup.wait")), "sync.WaitGroup.Wait")


class Once:
    """Runs a function exactly once.  If it raises, it still counts as done (Go)."""

    __slots__ = ("_done", "_m")

    def __init__(self):
        self._done = False
        self._m = Mutex()

    def do(self, fn):
        if self._done:
            return
        self._m.lock()
        try:
            if not self._done:
                try:
                    fn()
                finally:
                    self._done = True
        finally:
            self._m.unlock()


class Cond:
    """A condition variable associated with ``locker`` (anything with lock/unlock)."""

    __slots__ = ("L", "_mu", "_q")

    def __init__(self, locker):
        if not (hasattr(locker, "lock") and hasattr(locker, "unlock")):
            raise TypeError("Cond: locker must have lock() and unlock() methods")
        self.L = locker
        self._mu = _Lock()
        self._q = collections.deque()

    def wait(self):
        """Atomically unlock L and wait for signal/broadcast; re-lock L before returning."""
        w = _sema.Waiter(_sema.current("Cond.wait"))
        w.parked = False
        mu = self._mu
        with mu:
            self._q.append(w)          # the ticket: a signal after L.unlock() finds it
        self.L.unlock()
        try:
            mu.acquire()
            if w.ok:                   # signalled before we parked: nothing to wait for
                mu.release()
            else:
                w.parked = True
                # park_on expects to append; we are already queued, so park directly
                _sema.park_queued(mu, self._q, w, "sync.Cond.Wait")
        finally:
            self.L.lock()

    def signal(self):
        mu = self._mu
        mu.acquire()
        q = self._q
        while q:
            w = q.popleft()
            if _sema.claim(w):
                w.ok = True
                parked = w.parked
                mu.release()
                if parked:
                    _sema.wake(w)
                return
        mu.release()

    def broadcast(self):
        mu = self._mu
        mu.acquire()
        wake = [w for w in self._q if _sema.claim(w)]
        self._q.clear()
        for w in wake:
            w.ok = True
        wake = [w for w in wake if w.parked]
        mu.release()
        for w in wake:
            _sema.wake(w)


class Semaphore:
    """A weighted semaphore of ``n`` units (Go's x/sync/semaphore): FIFO, so a
    large waiting request is not starved by later small ones."""

    __slots__ = ("_mu", "_size", "_cur", "_q")

    def __init__(self, n):
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError("Semaphore: n must be an int")
        if n < 0:
            raise ValueError("Semaphore: n must be >= 0")
        self._mu = _Lock()
        self._size = n
        self._cur = 0
        self._q = collections.deque()

    def _check(self, k):
        if isinstance(k, bool) or not isinstance(k, int):
            raise TypeError("Semaphore: k must be an int")
        if k < 0:
            raise ValueError("Semaphore: k must be >= 0")
        if k > self._size:
            raise ValueError("Semaphore: cannot acquire %d of a semaphore of size %d (it would block forever)" % (k, self._size))

    def acquire(self, k=1):
        self._check(k)
        _checkpreempt()       # a runtime entry (HACKING.md "Preemption")
        mu = self._mu
        mu.acquire()
        if self._size - self._cur >= k and not self._q:
            self._cur += k
            mu.release()
            return True
        _sema.park_on(mu, self._q, _sema.Waiter(_sema.current("Semaphore.acquire"), k), "semacquire")
        return True

    def try_acquire(self, k=1):
        self._check(k)
        with self._mu:
            if self._size - self._cur >= k and not self._q:
                self._cur += k
                return True
            return False

    def release(self, k=1):
        if isinstance(k, bool) or not isinstance(k, int):
            raise TypeError("Semaphore: k must be an int")
        if k < 0:
            raise ValueError("Semaphore: k must be >= 0")
        mu = self._mu
        mu.acquire()
        if k > self._cur:
            mu.release()
            raise PanicError("semaphore: released more than held")
        self._cur -= k
        wake = []
        q = self._q
        while q:
            w = q[0]
            if w.sel is not None and w.sel.locked():
                q.popleft()              # cancelled waiter
                continue
            if self._size - self._cur < w.n:
                break
            q.popleft()
            if _sema.claim(w):
                self._cur += w.n
                wake.append(w)
        mu.release()
        for w in wake:
            _sema.wake(w)

"""The idle worker's wait: a wake token per P, and the netpoller behind it.

Every P has a *parker* with this interface (proc.py uses nothing else):

``park(timeout)``
    Owner worker only.  Blocks the worker thread with the GIL released until
    ``unpark()``, an I/O event, or the timeout (seconds; None = forever).  I/O
    events it got are dispatched (their waiters readied) before it returns.
``unpark()``
    Any thread.  Makes the park in progress return, or the next one return at
    once: a wake-up is never lost, only ever spurious.
``poll()``
    Any thread, non-blocking.  Dispatches ready I/O events and returns how many
    Gs were readied; returns 0 at once when another thread is inside this
    parker's poller (``Poller.wait`` is single-caller).  Updates ``p.lastpoll``.
``close()``
    The owner, when its P retires.

``PollParker`` (one epoll/kqueue per P) is what ``new_parker()`` hands out when
the compiled netpoller is importable; ``LockParker`` (a plain lock, no I/O) is
the fallback.  ``SharedPollParker`` puts every P on one shared poller: it exists
for the measurement in HACKING.md (``## Netpoller``) and is selected with
``PYGMP_NETPOLL_SHARED=1``.

Registration (used by netfd.py): ``parker.register(fd, pd)`` adds ``fd`` to
the poller under ``pd.token`` and returns the object to pass to
``unregister(fd, pd)`` later.  When a per-P poller closes (its P retired), the
pollDescs registered on it are told (``netfd.poller_gone``) so they register
again, on the P of their next waiter.

Lost wake-ups: ``unpark`` sets ``_notified`` and then breaks the poller.  A
non-blocking ``poll()`` from another thread may swallow that break (np_wait
consumes it), so after its wait it re-posts the break when ``_notified`` is
set; ``park`` checks ``_notified`` while holding the wait lock, so a break
posted before that check is seen through the flag, and one posted after it
interrupts the wait (or is re-posted by the thread that swallowed it).
"""

import os
import threading
import time
import weakref

_monotonic = time.monotonic

_dispatch = None        # netfd.netpollready, imported on first use (import cycle)
_gone = None            # netfd.poller_gone


def _netfd_hooks():
    global _dispatch, _gone
    from . import netfd
    _dispatch = netfd.netpollready
    _gone = netfd.poller_gone


class LockParker:
    __slots__ = ("_mu", "_sem", "_notified", "p")

    def __init__(self):
        self._mu = threading.Lock()
        self._sem = threading.Lock()
        self._sem.acquire()          # held: no token
        self._notified = False       # guarded by _mu: a token is posted
        self.p = None

    def bind(self, p):
        self.p = p

    def park(self, timeout):
        """Wait for a token; ``timeout`` in seconds, None = forever."""
        if timeout is None:
            got = self._sem.acquire()
        elif timeout <= 0:
            got = self._sem.acquire(False)
        else:
            got = self._sem.acquire(True, timeout)
        if got:
            with self._mu:
                self._notified = False

    def unpark(self):
        with self._mu:
            if self._notified:
                return
            self._notified = True
            self._sem.release()

    def poll(self):
        """Non-blocking: dispatch ready I/O events (goready their waiters) and
        return how many Gs were readied.  Any thread may call it; it returns 0
        if another thread is in this parker's poller.  No I/O source here."""
        return 0

    def close(self):
        pass


class PollParker:
    """One kernel poller per P: the P's fds are registered here and its worker
    sleeps in it, so an event wakes the home P of the waiter directly."""

    __slots__ = ("p", "_poller", "_wl", "_mu", "_notified", "_pds", "closed", "npolls")

    def __init__(self):
        from .netpoll import Poller
        self._poller = Poller(128)
        self._wl = threading.Lock()      # held by whoever is inside _poller.wait
        self._mu = threading.Lock()      # guards _notified
        self._notified = False
        self._pds = weakref.WeakSet()    # pollDescs registered here (guarded by _mu)
        self.closed = False
        self.p = None
        self.npolls = 0                  # events dispatched (diagnostics)

    def bind(self, p):
        self.p = p

    # -- the wait ------------------------------------------------------------
    def park(self, timeout):
        wl = self._wl
        wl.acquire()                     # a concurrent poll() is non-blocking: short
        try:
            with self._mu:
                if self._notified:
                    self._notified = False
                    timeout = 0          # still consume the posted break (and poll)
            if self.closed:
                return
            evs = self._poller.wait(timeout)
            with self._mu:
                self._notified = False
        finally:
            wl.release()
        p = self.p
        if p is not None:
            p.lastpoll = _monotonic()
        if evs:
            if _dispatch is None:
                _netfd_hooks()
            self.npolls += len(evs)
            _dispatch(evs)

    def unpark(self):
        with self._mu:
            if self._notified:
                return
            self._notified = True
        self._poller.wake()

    def poll(self):
        wl = self._wl
        if not wl.acquire(False):
            return 0
        try:
            if self.closed:
                return 0
            evs = self._poller.wait(0)
            if self._notified:
                self._poller.wake()      # we may have swallowed the owner's break
        finally:
            wl.release()
        p = self.p
        if p is not None:
            p.lastpoll = _monotonic()
        if not evs:
            return 0
        if _dispatch is None:
            _netfd_hooks()
        self.npolls += len(evs)
        return _dispatch(evs)

    # -- registration (netfd) ----------------------------------------------------
    def register(self, fd, pd):
        with self._mu:
            if self.closed:
                raise ValueError("poller closed")
            self._poller.add(fd, pd.token)
            self._pds.add(pd)
        return self

    def unregister(self, fd, pd):
        with self._mu:
            self._pds.discard(pd)
            if self.closed:
                return
        try:
            self._poller.delete(fd)
        except (OSError, ValueError):
            pass

    def close(self):
        with self._wl:
            with self._mu:
                if self.closed:
                    return
                self.closed = True
                pds = list(self._pds)
                self._pds.clear()
            self._poller.close()
        if pds:
            if _gone is None:
                _netfd_hooks()
            for pd in pds:
                _gone(pd, self)


class _SharedPoller:
    """The one poller of ``PYGMP_NETPOLL_SHARED=1`` mode (per process)."""

    def __init__(self):
        from .netpoll import Poller
        self.poller = Poller(128)
        self.wl = threading.Lock()       # held by the P inside poller.wait
        self.pid = os.getpid()
        self.closed = False

    def unregister(self, fd, pd):
        try:
            self.poller.delete(fd)
        except (OSError, ValueError):
            pass


_shared = None
_shared_lock = threading.Lock()


def _get_shared():
    global _shared
    with _shared_lock:
        if _shared is None or _shared.pid != os.getpid():
            _shared = _SharedPoller()
        return _shared


class SharedPollParker:
    """Every P shares one poller: the first idle P blocks in it, the others
    sleep on their own token; events are dispatched by whoever polls and readied
    onto each waiter's home P (a thread hop when that is another P)."""

    __slots__ = ("p", "_sh", "_mu", "_sem", "_posted", "_notified", "_inpoll", "closed", "npolls")

    def __init__(self):
        self._sh = _get_shared()
        self._mu = threading.Lock()
        self._sem = threading.Lock()
        self._sem.acquire()              # held: no token
        self._posted = False             # _sem released (guarded by _mu)
        self._notified = False
        self._inpoll = False
        self.closed = False
        self.p = None
        self.npolls = 0

    def bind(self, p):
        self.p = p

    def _consume_locked(self):
        self._notified = False
        if self._posted:
            self._posted = False
            self._sem.acquire(False)

    def park(self, timeout):
        sh = self._sh
        if sh.wl.acquire(False):
            try:
                with self._mu:
                    if self._notified:
                        self._consume_locked()
                        return
                    self._inpoll = True
                try:
                    evs = sh.poller.wait(timeout)
                finally:
                    with self._mu:
                        self._inpoll = False
                        self._consume_locked()
            finally:
                sh.wl.release()
            if self.p is not None:
                self.p.lastpoll = _monotonic()
            if evs:
                if _dispatch is None:
                    _netfd_hooks()
                self.npolls += len(evs)
                _dispatch(evs)
            return
        if timeout is None:
            self._sem.acquire()
            got = True
        elif timeout <= 0:
            got = self._sem.acquire(False)
        else:
            got = self._sem.acquire(True, timeout)
        with self._mu:
            if got:
                self._posted = False
            self._consume_locked()

    def unpark(self):
        with self._mu:
            if self._notified:
                return
            self._notified = True
            if self._inpoll:
                self._sh.poller.wake()
            else:
                self._posted = True
                self._sem.release()

    def poll(self):
        sh = self._sh
        if not sh.wl.acquire(False):
            return 0
        try:
            evs = sh.poller.wait(0)
        finally:
            sh.wl.release()
        if self.p is not None:
            self.p.lastpoll = _monotonic()
        if not evs:
            return 0
        if _dispatch is None:
            _netfd_hooks()
        self.npolls += len(evs)
        return _dispatch(evs)

    def register(self, fd, pd):
        self._sh.poller.add(fd, pd.token)
        return self._sh                  # the registration outlives any one P

    def close(self):
        self.closed = True


def new_parker(shared=False):
    """The parker a new P gets: the netpoller's when it is available (one shared
    by every P with ``shared``: settings.PYGMP_NETPOLL_SHARED)."""
    try:
        from . import netpoll  # noqa: F401  (the compiled module)
    except ImportError:
        return LockParker()
    if shared:
        return SharedPollParker()
    return PollParker()

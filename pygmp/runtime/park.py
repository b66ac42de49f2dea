"""The idle worker's wait: a wake token per P (Tokio's park/unpark).

``park(timeout)`` blocks the calling worker thread with the GIL released until
``unpark()`` is called or the timeout passes.  A token posted while nobody is
parked is kept, so the next ``park`` returns at once: a wake-up is never lost,
only ever spurious.  Only the owning worker calls ``park``; any thread may call
``unpark``.

This is the interim idle wait.  The netpoller replaces it with one that blocks
in epoll/kqueue with the same timeout and whose ``unpark`` breaks that wait
(see ``netpoll.py``); the scheduler only uses ``park``/``unpark``/``poll``.
"""

import threading


class LockParker:
    __slots__ = ("_mu", "_sem", "_notified")

    def __init__(self):
        self._mu = threading.Lock()
        self._sem = threading.Lock()
        self._sem.acquire()          # held: no token
        self._notified = False       # guarded by _mu: a token is posted

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
        """Non-blocking readiness check (no I/O source in this parker)."""
        return None

    def close(self):
        pass


def new_parker():
    """The parker a new P gets: the netpoller's when it is available."""
    try:
        from .netpoll import PollParker
    except ImportError:
        return LockParker()
    return PollParker()

"""Wait queues for the sync package (Go's sema.go): FIFO lists of parked Gs.

Every queue is guarded by its owner's lock (passed in).  A waiter is enqueued
and its G marked waiting under that lock; the lock is released; the G parks.
A waker pops the waiter under the same lock (one waker per waiter), and readies
it after releasing the lock.  Thread Gs can be interrupted (Ctrl-C) while
parked: their waiters carry a ``sel`` flag that the waker must win first,
exactly like channel sudogs, and an interrupted G withdraws its waiter.
"""

import threading
import time

from . import proc
from .g import _Gwaiting, _Grunning

_Lock = threading.Lock
_monotonic = time.monotonic


class Waiter:
    __slots__ = ("g", "n", "sel", "ok", "parked")

    def __init__(self, g, n=1):
        self.g = g
        self.n = n
        self.sel = _Lock() if g.locked else None
        self.ok = False
        self.parked = True     # Cond tickets start unparked


def park_on(lock, q, w, reason):
    """Enqueue ``w`` on ``q`` and park.  Called with ``lock`` held; returns with
    it released, once a waker popped ``w`` and readied its G."""
    q.append(w)
    park_queued(lock, q, w, reason)


def park_queued(lock, q, w, reason):
    """Like park_on, for a waiter already on ``q``."""
    g = w.g
    g.status = _Gwaiting
    g.waitsince = _monotonic()
    lock.release()
    try:
        proc.gopark(g, reason)
    except BaseException:
        if w.sel is not None and w.sel.acquire(False):
            with lock:
                try:
                    q.remove(w)
                except ValueError:
                    pass
        elif w.sel is not None:
            g.sema.acquire()
        g.status = _Grunning
        raise
    g.status = _Grunning


def claim(w):
    """Called by a waker holding the queue lock after popping ``w``: False if the
    waiter's park was cancelled (skip it)."""
    sel = w.sel
    return sel is None or sel.acquire(False)


def wake(w):
    """Ready ``w``'s G; call after releasing the queue lock."""
    w.ok = True
    proc.goready(w.g)


def current(what):
    g = proc.getg()
    if g is None:
        raise RuntimeError("pygmp: %s from the scheduler greenlet" % what)
    return g

"""``patch_queue()``: ``queue.SimpleQueue`` parks goroutines (the other
queue classes are built from threading's names when constructed, and park
goroutines once ``patch_threading()`` ran: ``pygmp.monkey._threading``).
"""

import collections
import queue as _queue
import time

from . import _core
from ._threading import Lock, _patch_lock

_deque = collections.deque
_monotonic = time.monotonic

# ---------------------------------------------------------------------------
# queue.SimpleQueue


class SimpleQueue:
    """``queue.SimpleQueue`` (unbounded FIFO) whose ``get`` parks a goroutine.
    ``put`` never blocks and takes no lock of its own (a deque append, then a
    waiter popped and released).  A getter publishes its waiter and re-checks
    the deque before it waits, so a ``put`` either is seen by that check or
    sees the waiter."""

    def __init__(self):
        self._queue = _deque()
        self._waiters = _deque()     # patched Locks, held; put releases one

    def put(self, item, block=True, timeout=None):
        self._queue.append(item)
        try:
            w = self._waiters.popleft()
        except IndexError:
            return
        w.release()

    def put_nowait(self, item):
        return self.put(item, block=False)

    def get(self, block=True, timeout=None):
        q = self._queue
        if block and timeout is not None:
            if timeout < 0:
                raise ValueError("'timeout' must be a non-negative number")
            deadline = _monotonic() + timeout
        try:
            return q.popleft()
        except IndexError:
            pass
        if not block:
            raise _queue.Empty
        while True:
            try:
                return q.popleft()
            except IndexError:
                pass
            if timeout is None:
                remaining = -1
            else:
                remaining = deadline - _monotonic()
                if remaining <= 0:
                    raise _queue.Empty
            w = Lock()
            w.acquire()
            self._waiters.append(w)
            if q:                              # a put between our check and the append
                self._withdraw(w)
                continue
            if not w.acquire(True, remaining):
                self._withdraw(w)

    def _withdraw(self, w):
        try:
            self._waiters.remove(w)
        except ValueError:
            pass                               # a put released it: the wake-up is ours

    def get_nowait(self):
        return self.get(False)

    def empty(self):
        return len(self._queue) == 0

    def qsize(self):
        return len(self._queue)

    __class_getitem__ = classmethod(lambda cls, item: cls)


def patch_queue():
    """``queue.SimpleQueue`` parks goroutines.  ``Queue``, ``LifoQueue`` and
    ``PriorityQueue`` are built from ``threading.Lock``/``Condition`` when
    constructed, so they park goroutines once ``threading`` is patched too
    (``patch_all`` does both).  Idempotent."""
    import queue
    with _patch_lock:
        if _core.is_module_patched("queue"):
            return
        _core.patch_item(queue, "SimpleQueue", SimpleQueue)
        _core.mark_patched("queue")

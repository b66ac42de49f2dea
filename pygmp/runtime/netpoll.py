"""Thin Python wrapper over the C netpoller (``pygmp.runtime._netpoll``).

The C side (csrc/netpoll.h) is epoll on Linux and kqueue on macOS/BSD, built
by cffi at install time.  This module holds no scheduler logic: it opens a
poller, registers fds with tokens, waits, and wakes a waiter.  The runtime
itself does not go through it: the core (csrc/netpoll.c) calls the same
``np_*`` functions directly, compiled into ``pygmp._hot``; this wrapper serves
their tests (tests/test_netpoll.py) and bench/netpoll_wake.py.

Contract
--------
Registration
    ``Poller.add(fd, token)`` registers ``fd`` once for *both* directions,
    **edge-triggered**.  An event is reported when the fd *becomes* readable or
    writable, not while it stays so: after an event the caller must read (or
    write) until ``EAGAIN``/``BlockingIOError`` before it may count on another
    event.  A newly registered fd that is already writable (a connected
    socket) or readable reports that at once.  The fd should be non-blocking
    and must be ``delete()``-d before it is closed (epoll keeps a closed fd's
    registration while a duplicate of it is open; kqueue drops it).

Tokens
    A token is an ``int`` with ``0 <= token < 2**64 - 1`` chosen by the caller
    (e.g. an index into a table of pollDesc objects); ``2**64 - 1`` is reserved
    for the wake-up channel.  It is handed back unchanged with the fd's events.
    On kqueue one fd may show up twice in one batch (read and write come as
    separate kernel events); callers must tolerate duplicate tokens.  Adding an
    fd twice fails with ``EEXIST`` on epoll and updates the token on kqueue.

Events
    ``wait()`` returns a list of ``(token, readable, writable)``.  As in Go,
    ``readable`` is also set on hang-up, peer shutdown (EOF) and error, and
    ``writable`` on hang-up and error, so a waiter in either direction wakes
    and discovers the condition from its next read/write.

Timeouts
    ``wait(None)`` blocks until an event or a ``wake()``; ``wait(0)`` polls;
    ``wait(t)`` waits up to ``t`` seconds, rounded *up* to whole milliseconds
    (so a small positive timeout never becomes a busy poll); a negative ``t``
    polls.  ``wait`` may return an empty list early: on ``wake()``, on a signal
    (``EINTR``), or when events were consumed internally.  Callers re-check
    their own state and deadlines after every return.

Threads
    * ``wait()`` is **single-caller**: it reuses one preallocated event buffer,
      so only one thread may be inside ``wait()`` on a given Poller at a time
      (a second concurrent caller gets ``RuntimeError``).  The GIL is released
      while it blocks (cffi API mode does that for every C call).
    * ``wake()`` may be called from any thread at any time, also while another
      thread blocks in ``wait()``: it makes the wait in progress return, or the
      next one return at once.  Wakes coalesce: many calls before the waiter
      runs cost one syscall and yield one early return.
    * ``add()``/``delete()`` may be called from any thread, also during a
      ``wait()`` in another thread.
    * ``close()`` must not be called while a ``wait()`` is in progress (it
      raises ``RuntimeError``; wake the waiter and let it return first).  After
      ``close()`` every method raises ``ValueError`` except ``close()`` itself
      and ``wake()``, which do nothing.
    * A Poller belongs to the process that opened it (``Poller.pid``): after
      ``fork()`` the child opens its own.

Errors from the kernel are raised as ``OSError`` (or its errno subclasses)
with the errno set, e.g. ``FileNotFoundError`` for deleting an fd that is not
registered and ``OSError(EBADF)`` for a bad fd.
"""

from __future__ import annotations

import os
import threading

from pygmp.runtime._netpoll import ffi, lib

# The real classes, bound at import: pygmp.monkey may replace the module's
# attributes later, and the runtime's own threads and locks must stay real.
_Lock = threading.Lock

__all__ = ["Poller", "BACKEND", "READ", "WRITE", "ERR", "HUP", "MAX_EVENTS"]

#: "epoll" or "kqueue": which C backend this build compiled.
BACKEND = "kqueue" if lib.NP_KQUEUE else "epoll"

READ = lib.NP_READ
WRITE = lib.NP_WRITE
ERR = lib.NP_ERR
HUP = lib.NP_HUP
MAX_EVENTS = lib.NP_MAX_EVENTS
_TOKEN_LIMIT = 2**64 - 1  # exclusive; the value itself is reserved
_INT_MAX_MS = 2**31 - 1

_np_open = lib.np_open
_np_close = lib.np_close
_np_add = lib.np_add
_np_del = lib.np_del
_np_wait = lib.np_wait
_np_break = lib.np_break
_NULL = ffi.NULL


def _raise_errno(what: str):
    err = ffi.errno
    raise OSError(err, f"{what}: {os.strerror(err)}")


def _timeout_ms(timeout) -> int:
    if timeout is None:
        return -1
    if timeout <= 0:
        return 0
    ms = timeout * 1000.0
    ims = int(ms)
    if ims < ms:
        ims += 1  # round up
    return ims if ims < _INT_MAX_MS else _INT_MAX_MS


class Poller:
    """One kernel poller (an epoll or kqueue instance) plus its wake channel."""

    __slots__ = ("_p", "_evs", "_max", "_wait_lock", "_lock", "pid")

    def __init__(self, max_events: int = 128):
        if not 1 <= max_events <= MAX_EVENTS:
            raise ValueError(f"max_events must be in 1..{MAX_EVENTS}")
        p = _np_open()
        if p == _NULL:
            _raise_errno("np_open")
        self._p = p
        self._max = max_events
        self._evs = ffi.new("np_event[]", max_events)
        self._wait_lock = _Lock()  # held for the whole of a wait()
        self._lock = _Lock()       # add/delete/wake vs close()
        self.pid = os.getpid()

    @property
    def closed(self) -> bool:
        return self._p is None

    def add(self, fd: int, token: int) -> None:
        """Register ``fd`` for read+write readiness (edge-triggered) under ``token``."""
        if not 0 <= token < _TOKEN_LIMIT:
            raise ValueError("token must be in range 0 <= token < 2**64 - 1")
        with self._lock:
            p = self._p
            if p is None:
                raise ValueError("I/O operation on closed poller")
            if _np_add(p, fd, token) < 0:
                _raise_errno(f"netpoll add fd {fd}")

    def delete(self, fd: int) -> None:
        """Unregister ``fd``; call it before closing the fd."""
        with self._lock:
            p = self._p
            if p is None:
                raise ValueError("I/O operation on closed poller")
            if _np_del(p, fd) < 0:
                _raise_errno(f"netpoll delete fd {fd}")

    def wait(self, timeout: float | None = None) -> list[tuple[int, bool, bool]]:
        """Wait for readiness; see the module docstring for the contract."""
        ms = _timeout_ms(timeout)
        wl = self._wait_lock
        if not wl.acquire(False):
            raise RuntimeError("Poller.wait() is single-caller: another thread is waiting")
        try:
            p = self._p
            if p is None:
                raise ValueError("I/O operation on closed poller")
            evs = self._evs
            n = _np_wait(p, evs, self._max, ms)
            if n <= 0:
                if n < 0:
                    _raise_errno("netpoll wait")
                return []
            out = []
            for i in range(n):
                ev = evs[i]
                f = ev.flags
                out.append((ev.token, bool(f & 1), bool(f & 2)))
            return out
        finally:
            wl.release()

    def wake(self) -> None:
        """Make the current (or else the next) ``wait()`` return; any thread."""
        with self._lock:
            p = self._p
            if p is not None and _np_break(p) < 0:
                _raise_errno("netpoll wake")

    def close(self) -> None:
        """Release the kernel poller.  Idempotent; not while a wait() runs."""
        if not self._wait_lock.acquire(False):
            raise RuntimeError("Poller.close() while another thread is in wait(); wake it first")
        try:
            with self._lock:
                p, self._p = self._p, None
                if p is not None:
                    _np_close(p)
        finally:
            self._wait_lock.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        p = getattr(self, "_p", None)
        if p is not None:
            self._p = None
            _np_close(p)

    def __repr__(self):
        state = "closed" if self._p is None else "open"
        return f"<pygmp.runtime.netpoll.Poller {state} max_events={self._max}>"

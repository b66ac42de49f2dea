"""The waits the patched modules share (HACKING.md "Monkey patching").

* ``in_goroutine()``: the caller is a goroutine running on a P's worker
  thread.  Everywhere else (the main thread, a plain thread, a ``go_locked``
  goroutine: threads that may block themselves) the patched calls run the
  original code.
* ``FD.wait(mode, timeout)`` (csrc/netfd.c) on a ``pygmp._hot.FD`` that owns
  a duplicate of the waited-on fd number parks the goroutine until the fd is
  ready; the caller saw EAGAIN first (the runtime's pollDesc is
  edge-triggered).  ``ErrClosed`` and the runtime's ``TimeoutError`` come
  out as they are; callers translate them.
* ``wait_fds(regs, timeout)``: park until any of several fds is ready, for
  ``select``/``poll``/``os.read``: a throw-away level-triggered epoll holds
  the fds and the goroutine waits on the epoll's own fd (an epoll fd is
  readable while one of its fds is ready).  The caller re-checks with the
  original call (timeout 0) after every return: results always come from the
  stdlib's own ``select``/``poll``.
* ``thread_wait(fileno, mode, deadline)``: the same wait for a thread that is
  not a goroutine (blocks its thread, as the unpatched call would).
"""

import errno as _errno
import os as _os
import select as _select
import time as _time

from .. import _hot
from ..runtime import netfd as _netfd
from ..runtime import proc as _proc
from ._core import get_original as _get_original

READ = _netfd.READ
WRITE = _netfd.WRITE
FD = _hot.FD
ErrClosed = _netfd.ErrClosed
RTTimeout = _netfd.TimeoutError

_tls = _proc._tls
monotonic = _time.monotonic

# the originals, taken before any patching (this module is imported by
# patch_<name>() before it patches anything)
_orig_poll = _get_original("select", "poll")
_orig_epoll = _get_original("select", "epoll") if hasattr(_select, "epoll") else None
_POLLIN = _select.POLLIN | _select.POLLPRI
_POLLOUT = _select.POLLOUT
EPOLLIN = getattr(_select, "EPOLLIN", 1)
EPOLLPRI = getattr(_select, "EPOLLPRI", 2)
EPOLLOUT = getattr(_select, "EPOLLOUT", 4)


def in_goroutine():
    """True in a goroutine on a P's worker thread (the patched paths)."""
    m = getattr(_tls, "m", None)
    return m is not None and m.p is not None


def wait_dup(fileno, timeout):
    """Park until ``fileno`` is readable, on an FD over a duplicate of it
    made for this wait (``TimeoutError`` after ``timeout`` seconds)."""
    w = FD(_os.dup(fileno), 0, 0)
    try:
        w.wait(READ, timeout)
    finally:
        w.close()


def remaining(deadline):
    """Seconds left before ``deadline`` (a monotonic time), or None."""
    if deadline is None:
        return None
    return deadline - monotonic()


def wait_fds(regs, timeout):
    """Park until one of ``regs`` ({fd: epoll mask}) may be ready, or
    ``timeout`` seconds (None: no limit) pass; the caller re-checks.  False
    (at once) when epoll cannot watch one of them (EPERM: a regular file,
    which is always ready)."""
    if _orig_epoll is None:             # not Linux: a short park, then re-check
        _hot.sleep(0.001 if timeout is None else max(0.0, min(timeout, 0.001)))
        return True
    ep = _orig_epoll()
    try:
        for fd, mask in regs.items():
            try:
                ep.register(fd, mask)
            except PermissionError:     # EPERM: a regular file, always ready
                return False
            except FileExistsError:
                continue
        w = FD(_os.dup(ep.fileno()), 0, 0)
        try:
            w.wait(READ, timeout)
        except RTTimeout:
            pass
        finally:
            w.close()
    finally:
        ep.close()
    return True


def thread_wait(fileno, mode, deadline):
    """A thread (not a goroutine) waits for ``fileno`` with the original
    ``poll``.  False when ``deadline`` passed first."""
    p = _orig_poll()
    p.register(fileno, _POLLIN if mode == READ else _POLLOUT)
    while True:
        if deadline is None:
            ms = None
        else:
            left = deadline - monotonic()
            if left <= 0:
                return False
            ms = max(1, int(left * 1000.0 + 0.999))
        try:
            if p.poll(ms):
                return True
        except InterruptedError:
            continue


def ebadf():
    return OSError(_errno.EBADF, _os.strerror(_errno.EBADF))

"""``patch_os()`` (``os.read``/``os.write``) and ``patch_time()`` (``time.sleep``).

``os.read``/``os.write`` in a goroutine: a non-blocking fd is left alone (the
call raises ``BlockingIOError`` as it would); on a blocking fd the goroutine
first parks on the netpoller until the fd is readable/writable (an fd epoll can
watch: a pipe, FIFO, socket, tty), then makes the call, which then does not
block.  A write larger than ``select.PIPE_BUF`` to a pipe or socket goes out in
``PIPE_BUF`` pieces, each after a readiness wait, and returns the full count
as the blocking call would.  Regular files are always "ready": their reads and
writes run on the worker thread as before (the disk wait is not parked).  An
fd the netpoller cannot watch goes through the handoff (``pygmp.syscall``).
"""

import os as _osmod
import select as _selectmod
import stat as _stat
import time as _timemod

from .. import _hot
from . import _wait
from ._core import get_original, mark_patched, patch_item

_orig_read = get_original("os", "read")
_orig_write = get_original("os", "write")
_orig_sleep = get_original("time", "sleep")
_orig_poll = _wait._orig_poll
_get_blocking = _osmod.get_blocking
_in_goroutine = _wait.in_goroutine
_POLLIN = _selectmod.POLLIN | _selectmod.POLLPRI | _selectmod.POLLHUP | _selectmod.POLLERR
_POLLOUT = _selectmod.POLLOUT | _selectmod.POLLHUP | _selectmod.POLLERR
_PIPE_BUF = getattr(_selectmod, "PIPE_BUF", 512)


def _ready(fd, pollmask, epmask):
    """Park until ``fd`` is ready; False if the netpoller cannot watch it."""
    p = _orig_poll()
    p.register(fd, pollmask)
    while not p.poll(0):
        if not _wait.wait_fds({fd: epmask}, None) and not p.poll(0):
            return False
    return True


def read(fd, n):
    """os.read: a goroutine parks until a blocking fd is readable."""
    if not _in_goroutine():
        return _orig_read(fd, n)
    try:
        blocking = _get_blocking(fd)
    except (OSError, TypeError, ValueError, OverflowError):
        return _orig_read(fd, n)        # the original's error
    if not blocking:
        return _orig_read(fd, n)
    if not _ready(fd, _POLLIN, _wait.EPOLLIN):
        from .. import syscall
        return syscall.call(_orig_read, fd, n)
    return _orig_read(fd, n)


def write(fd, data):
    """os.write: a goroutine parks until a blocking fd is writable."""
    if not _in_goroutine():
        return _orig_write(fd, data)
    try:
        blocking = _get_blocking(fd)
    except (OSError, TypeError, ValueError, OverflowError):
        return _orig_write(fd, data)
    if not blocking:
        return _orig_write(fd, data)
    with memoryview(data) as view:
        total = view.nbytes
        if total > _PIPE_BUF and _stat.S_ISREG(_osmod.fstat(fd).st_mode):
            return _orig_write(fd, data)
        if not _ready(fd, _POLLOUT, _wait.EPOLLOUT):
            from .. import syscall
            return syscall.call(_orig_write, fd, data)
        if total <= _PIPE_BUF:
            return _orig_write(fd, data)
        with view.cast("B") as bv:
            sent = 0
            while True:
                sent += _orig_write(fd, bv[sent:sent + _PIPE_BUF])
                if sent >= total:
                    return sent
                _ready(fd, _POLLOUT, _wait.EPOLLOUT)


def sleep(secs):
    """time.sleep: a goroutine parks on a runtime timer (pygmp.time.sleep);
    ``sleep(0)`` lets the other runnable goroutines run first (gosched)."""
    if (type(secs) is float or type(secs) is int) and 0 <= secs < 1e9 and _in_goroutine():
        if secs:
            _hot.sleep(secs)
        else:
            from ..runtime import gosched
            gosched()
        return None
    return _orig_sleep(secs)


def patch_os():
    patch_item(_osmod, "read", read)
    patch_item(_osmod, "write", write)
    mark_patched("os")


def patch_time():
    patch_item(_timemod, "sleep", sleep)
    mark_patched("time")

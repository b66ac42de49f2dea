"""``patch_select()`` and ``patch_selectors()``.

In a goroutine, ``select.select``, ``poll().poll`` and ``epoll().poll`` first
ask the original call with timeout 0; if nothing is ready and the timeout
allows, the goroutine parks on the netpoller (``_wait.wait_fds``: a throw-away
epoll of the fds; for an ``epoll`` object its own fd) and asks again.  The
answer is always the original call's.  A thread that is not a goroutine calls
the original with the timeout it gave.  ``select.epoll`` and ``select.poll``
are replaced by wrapper classes (the C types cannot be subclassed) with the
same methods.  ``selectors``' ``SelectSelector``, ``PollSelector``,
``EpollSelector`` and ``DefaultSelector`` become subclasses that use them.
"""

import select as _selectmod
import selectors as _selectorsmod
import threading as _threading

from .. import _hot
from . import _wait
from ._core import get_original, mark_patched, patch_item

_orig_select = get_original("select", "select")
_orig_poll = get_original("select", "poll")
_orig_epoll = get_original("select", "epoll") if hasattr(_selectmod, "epoll") else None
_in_goroutine = _wait.in_goroutine
_monotonic = _wait.monotonic
_EPOLLIN, _EPOLLPRI, _EPOLLOUT = _wait.EPOLLIN, _wait.EPOLLPRI, _wait.EPOLLOUT
_WAITMASK = _EPOLLIN | _EPOLLPRI | _EPOLLOUT
_lock = _threading.Lock()


def _fileno(obj):
    if isinstance(obj, int):
        return obj
    return obj.fileno()


def _seconds(timeout, what, negative_blocks):
    """A timeout in seconds as the C call parses it: None (no limit) or >= 0."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        try:
            timeout = float(timeout)
        except (TypeError, ValueError):
            raise TypeError("%s must be an integer or float or None" % what) from None
    if timeout != timeout:
        raise ValueError("Invalid value NaN (not a number)")
    if timeout < 0:
        if negative_blocks:
            return None
        raise ValueError("%s must be non-negative" % what)
    return float(timeout)


def _park(regs, deadline):
    """Park until one of ``regs`` may be ready or ``deadline``: False when the
    deadline passed."""
    if deadline is None:
        left = None
    else:
        left = deadline - _monotonic()
        if left <= 0:
            return False
    if not regs:
        _hot.sleep(3600.0 if left is None else left)
    else:
        _wait.wait_fds(regs, left)
    return True


def select(rlist, wlist, xlist, timeout=None):
    """select.select: in a goroutine parks instead of blocking its thread."""
    if not _in_goroutine() or timeout == 0:
        return _orig_select(rlist, wlist, xlist, timeout)
    # the C call takes any iterable: a one-shot one is read once, here
    if type(rlist) not in (list, tuple):
        rlist = list(rlist)
    if type(wlist) not in (list, tuple):
        wlist = list(wlist)
    if type(xlist) not in (list, tuple):
        xlist = list(xlist)
    t = _seconds(timeout, "timeout", False)
    r = _orig_select(rlist, wlist, xlist, 0)
    if r[0] or r[1] or r[2]:
        return r
    deadline = None if t is None else _monotonic() + t
    regs = {}
    for objs, mask in ((rlist, _EPOLLIN), (wlist, _EPOLLOUT), (xlist, _EPOLLPRI)):
        for o in objs:
            fd = _fileno(o)
            regs[fd] = regs.get(fd, 0) | mask
    while _park(regs, deadline):
        r = _orig_select(rlist, wlist, xlist, 0)
        if r[0] or r[1] or r[2]:
            return r
    return [], [], []


_INT_MAX = 2**31 - 1


class PollObject:
    """What the patched ``select.poll()`` returns: ``poll(timeout_ms)`` parks
    a goroutine.  Like the C type, it cannot be instantiated directly."""

    __slots__ = ("_p", "_regs")

    def __new__(cls, *args, **kwargs):
        raise TypeError("cannot create '%s.%s' instances" % (cls.__module__, cls.__name__))

    def register(self, fd, eventmask=_selectmod.POLLIN | _selectmod.POLLPRI | _selectmod.POLLOUT):
        self._p.register(fd, eventmask)
        self._regs[_fileno(fd)] = eventmask

    def modify(self, fd, eventmask):
        self._p.modify(fd, eventmask)
        self._regs[_fileno(fd)] = eventmask

    def unregister(self, fd):
        self._p.unregister(fd)
        self._regs.pop(_fileno(fd), None)

    def poll(self, timeout=None):
        if not _in_goroutine() or timeout == 0:
            return self._p.poll(timeout)
        ms = _seconds(timeout, "timeout", True)
        if ms is not None and ms > _INT_MAX:
            raise OverflowError("Timeout value is too large")
        r = self._p.poll(0)
        if r:
            return r
        deadline = None if ms is None else _monotonic() + ms / 1000.0
        regs = {fd: (m & _WAITMASK) for fd, m in self._regs.items()}
        while _park(regs, deadline):
            r = self._p.poll(0)
            if r:
                return r
        return []


def poll():
    """select.poll(): a polling object whose ``poll()`` parks a goroutine."""
    self = object.__new__(PollObject)
    self._p = _orig_poll()
    self._regs = {}
    return self


if _orig_epoll is not None:
    class epoll:
        """select.epoll objects: ``poll(timeout)`` parks a goroutine on the
        epoll's own fd."""

        __slots__ = ("_ep", "_wfd", "__weakref__")

        def __init__(self, sizehint=-1, flags=0):
            self._ep = _orig_epoll(sizehint, flags)
            self._wfd = None

        @classmethod
        def fromfd(cls, fd):
            self = cls.__new__(cls)
            self._ep = _orig_epoll.fromfd(fd)
            self._wfd = None
            return self

        @property
        def closed(self):
            return self._ep.closed

        def fileno(self):
            return self._ep.fileno()

        def register(self, *args, **kwargs):
            return self._ep.register(*args, **kwargs)

        def modify(self, *args, **kwargs):
            return self._ep.modify(*args, **kwargs)

        def unregister(self, *args, **kwargs):
            return self._ep.unregister(*args, **kwargs)

        def close(self):
            with _lock:
                w, self._wfd = self._wfd, None
            if w is not None:
                w.close()
            self._ep.close()

        def __enter__(self):
            self._ep.__enter__()
            return self

        def __exit__(self, *exc):
            self.close()

        def _waitfd(self):
            w = self._wfd
            if w is None:
                with _lock:
                    w = self._wfd
                    if w is None:
                        import os
                        w = self._wfd = _wait.FD(os.dup(self._ep.fileno()), 0, 0)
            return w

        def poll(self, timeout=None, maxevents=-1):
            if not _in_goroutine() or timeout == 0:
                return self._ep.poll(timeout, maxevents)
            t = _seconds(timeout, "timeout", True)
            r = self._ep.poll(0, maxevents)
            if r:
                return r
            deadline = None if t is None else _monotonic() + t
            while True:
                left = None if deadline is None else deadline - _monotonic()
                if left is not None and left <= 0:
                    return []
                try:
                    if not self._waitfd().wait(_wait.READ, left):
                        _wait.wait_dup(self._ep.fileno(), left)  # another goroutine polls it too
                except _wait.RTTimeout:
                    return []
                except _wait.ErrClosed:
                    raise ValueError("I/O operation on closed epoll object") from None
                r = self._ep.poll(0, maxevents)
                if r:
                    return r
else:
    epoll = None


# ---------------------------------------------------------------------------
# selectors

class SelectSelector(get_original("selectors", "SelectSelector")):
    _select = staticmethod(select)


_selector_classes = {"SelectSelector": SelectSelector}

if hasattr(_selectorsmod, "PollSelector"):
    class PollSelector(get_original("selectors", "PollSelector")):
        _selector_cls = staticmethod(poll)
    _selector_classes["PollSelector"] = PollSelector

if epoll is not None and hasattr(_selectorsmod, "EpollSelector"):
    class EpollSelector(get_original("selectors", "EpollSelector")):
        _selector_cls = epoll
    _selector_classes["EpollSelector"] = EpollSelector


def patch_select():
    patch_item(_selectmod, "select", select)
    patch_item(_selectmod, "poll", poll)
    if epoll is not None:
        patch_item(_selectmod, "epoll", epoll)
    mark_patched("select")


def patch_selectors():
    default = get_original("selectors", "DefaultSelector")
    for name, cls in _selector_classes.items():
        patch_item(_selectorsmod, name, cls)
        if get_original("selectors", name) is default:
            patch_item(_selectorsmod, "DefaultSelector", cls)
    mark_patched("selectors")

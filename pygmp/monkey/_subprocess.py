"""``patch_subprocess()``: ``subprocess`` waits and pipe I/O park goroutines.

Mechanism: the handoff (``pygmp.syscall``, DESIGN.md section 5).  In a
goroutine, ``Popen.wait`` and ``Popen.communicate`` run the unpatched method on
a pooled syscall thread while the goroutine parks, and the pipe file objects
(``Popen.stdin``/``stdout``/``stderr``) are thin proxies whose blocking methods
(``read``, ``readline``, ``write``, iteration, ...) do the same.  So
``run``/``call``/``check_output`` and a ``Popen`` used by hand never hold a
worker thread; each wait in flight holds one pool thread (Go's ``os/exec``
holds an M in ``wait4`` the same way).  From a thread that is not a goroutine
everything runs inline, unpatched.

Why not pidfd + the netpoller: the netpoller waits on fds through ``FD``
objects built for sockets, and pipe I/O would still need a non-blocking rewrite
of ``communicate``; the handoff reuses the unpatched code paths (timeouts,
``TimeoutExpired``, the kill-and-wait of ``run``) exactly.  Cost measured in
``tests/test_monkey_subprocess.py``: 20 concurrent ``run`` calls at
GOMAXPROCS=1 finish in about the time of one (HACKING.md).
"""

import subprocess
import threading

from pygmp.runtime import syscall as _rt
from . import _core

__all__ = ["patch_subprocess", "Popen"]

_OPopen = subprocess.Popen
_current_goroutine = _rt._current_goroutine
_handoff = _rt._handoff
_lock = threading.Lock()   # the real one: taken at patch time only


def _blocking(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` on a pool thread while the goroutine parks;
    inline on a thread that may block itself.  Always handed off (no inline
    fast path as ``syscall.call`` has): a wait or a pipe read that was quick
    ten times may block the eleventh for as long as the child likes."""
    g = _current_goroutine()
    if g is None or g.locked:
        return fn(*args, **kwargs)
    return _handoff(g, fn, args, kwargs, None)


class _Pipe:
    """A ``Popen`` pipe file object whose blocking calls are handed off when
    made in a goroutine; everything else is the file object's own."""

    __slots__ = ("_f",)

    def __init__(self, f):
        object.__setattr__(self, "_f", f)

    def __getattr__(self, name):
        return getattr(self._f, name)

    @property
    def __class__(self):         # isinstance(p.stdout, io.BufferedReader) still holds
        return type(self._f)

    def __setattr__(self, name, value):
        setattr(self._f, name, value)

    def __iter__(self):
        return self

    def __next__(self):
        return _blocking(next, self._f)

    def __enter__(self):
        self._f.__enter__()
        return self

    def __exit__(self, *exc):
        return _blocking(self._f.__exit__, *exc)

    def __repr__(self):
        return repr(self._f)

    def __hash__(self):
        return hash(self._f)

    def __eq__(self, other):
        if isinstance(other, _Pipe):
            other = other._f
        return self._f == other


def _pipe_method(name):
    def method(self, *args, **kwargs):
        return _blocking(getattr(self._f, name), *args, **kwargs)
    method.__name__ = name
    return method


for _name in ("read", "read1", "readline", "readlines", "readinto", "readinto1",
              "write", "writelines", "flush", "close", "peek"):
    setattr(_Pipe, _name, _pipe_method(_name))
del _name


class Popen(_OPopen):
    """``subprocess.Popen`` whose waits and pipe I/O park a goroutine."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in ("stdin", "stdout", "stderr"):
            f = getattr(self, name, None)
            if f is not None:
                setattr(self, name, _Pipe(f))

    def wait(self, timeout=None):
        if self.returncode is not None:
            return self.returncode
        return _blocking(_OPopen.wait, self, timeout)

    def communicate(self, input=None, timeout=None):
        return _blocking(_OPopen.communicate, self, input, timeout)


def patch_subprocess():
    """Replace ``subprocess.Popen`` (``run``, ``call``, ``check_call``,
    ``check_output``, ``getoutput`` use it).  Idempotent."""
    with _lock:
        if _core.is_module_patched("subprocess"):
            return
        _core.patch_item(subprocess, "Popen", Popen)
        _core.mark_patched("subprocess")

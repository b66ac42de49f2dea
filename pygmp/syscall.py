"""pygmp.syscall: blocking calls that do not hold up other goroutines
(Go's entersyscall/exitsyscall; docs/design.md §5).

    from pygmp import syscall
    data = syscall.call(blocking_read, fd, 4096)

    @syscall.blocking
    def query(sql): ...

``call(fn, *args, **kwargs)`` runs ``fn`` on a pooled "syscall" OS thread while
the calling goroutine parks (``goroutine N [syscall]`` in a stack dump); the
goroutine's worker thread keeps running its other goroutines.  The result comes
back, or the exception is re-raised in the caller with its traceback (the
frames of ``fn`` included).  ``fn`` runs in a copy of the caller's
``contextvars`` context: it sees the caller's values, and its own changes do
not come back.

* From the main thread, a plain thread or a ``go_locked`` goroutine (threads
  that may block themselves) ``fn`` simply runs inline.
* Short calls skip the two thread hops: a call site (the function object) whose
  last calls all finished in under 20 µs runs inline; one that ever took longer
  is handed off from then on.  A new call site is always handed off first.
* The thread count grows with the blocking calls in flight (up to
  ``pygmp.runtime.set_max_threads``; beyond it the process dies with Go's
  ``fatal error: thread exhaustion``) and idle pool threads exit after
  ``pygmp.runtime.syscall.KEEPALIVE`` seconds (10 s).
* While a call is in flight the runtime never reports a deadlock: it may still
  wake someone.
"""

import functools as _functools

from .runtime import syscall as _rt

__all__ = ["call", "blocking"]


def call(fn, *args, **kwargs):
    """Run the blocking callable ``fn(*args, **kwargs)`` with the handoff and
    return its result, or raise its exception, in the calling goroutine."""
    if not callable(fn):
        raise TypeError("syscall.call: fn must be callable, not %s" % type(fn).__name__)
    return _rt.call(fn, args, kwargs)


def blocking(fn):
    """Decorator: every call of ``fn`` goes through ``call`` (the handoff)."""
    if not callable(fn):
        raise TypeError("syscall.blocking: fn must be callable, not %s" % type(fn).__name__)

    @_functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return _rt.call(fn, args, kwargs)
    return wrapper

"""pygmp.runtime: the scheduler's public controls (Go's runtime package).

The modules beside this file are the runtime (see ../HACKING.md for the map):
proc (sched, M, schedule, park/ready, stealing, gomaxprocs, checkdead),
process (fork, exit), locked (go_locked), g, p, chan, timers, sema, sysmon,
park (idle wait), netpoll, netfd, stack, panic, cpu, settings.
"""

from . import proc as _proc
from . import process as _process  # noqa: F401  (installs the fork/exit hooks at start)
from . import sysmon as _sysmon  # noqa: F401  (starts sysmon with the runtime)
from . import locked as _locked
from . import gosched as _gosched
from .cpu import num_cpu
from .panic import PanicError, Goexit as _Goexit
from .stack import current_text as _current_text, format_all as _format_all

__all__ = ["gomaxprocs", "num_cpu", "num_goroutine", "gosched", "goexit",
           "lock_os_thread", "unlock_os_thread", "go_locked", "stack",
           "set_max_threads", "PanicError"]

gomaxprocs = _proc.gomaxprocs
num_goroutine = _proc.num_goroutine


def gosched():
    """Yield the processor to other runnable goroutines; returns at once if
    none.  In a goroutine, as Go's Gosched: its P runs its other runnable Gs
    and the global queue's before this one again.  In the main goroutine or a
    plain thread (no P), a runnable goroutine runs before it returns, also at
    GOMAXPROCS=1 (see HACKING.md "gosched")."""
    _gosched.gosched()


def goexit():
    """End the calling goroutine, running its finally blocks.  In the main
    goroutine, the program goes on until the other goroutines end (Go)."""
    if _proc._sched is None:
        _proc.start()           # installs the hook that handles Goexit in main
    raise _Goexit()


def lock_os_thread():
    """Pin the calling goroutine to its OS thread (reference-counted).  A pygmp
    goroutine never leaves its thread anyway; other goroutines homed on the same
    worker may still run there: use go_locked() for an exclusive thread."""
    g = _proc.getg()
    if g is not None:
        g.lockedcount += 1


def unlock_os_thread():
    g = _proc.getg()
    if g is not None and g.lockedcount > 0:
        g.lockedcount -= 1


def go_locked(fn, *args, **kwargs):
    """Start ``fn`` as a goroutine on a dedicated new OS thread that runs nothing
    else and ends with it (Go's LockOSThread at the top of a goroutine)."""
    if not callable(fn):
        raise TypeError("go_locked: fn must be callable, not %s" % type(fn).__name__)
    _locked.go_locked(fn, args, kwargs)


def stack(all=False):
    """The current goroutine's stack (or every goroutine's) in Go's format."""
    if all:
        return _format_all(_proc._sched, 3)
    return _current_text()


def set_max_threads(n):
    """Set the limit on OS threads the runtime may create; returns the previous one."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError("set_max_threads: n must be an int")
    if n < 1:
        raise ValueError("set_max_threads: n must be >= 1")
    s = _proc._sched or _proc.start()
    with s.lock:
        prev = s.maxthreads
        s.maxthreads = n
    return prev

"""G: the goroutine descriptor (Go's runtime2.go `g`).

A G owns a greenlet once it first runs.  Until then it is *movable*: it sits in
some runqueue as a plain record (fn, args, kwargs, context) and any P may take
it.  When it first runs, it becomes *homed* on that P (``g.home``) and stays
there for life, because a started greenlet cannot leave its OS thread.

Thread Gs (``g.locked``) belong to an OS thread that has no P: the main thread
(goroutine 1), any plain thread that calls into pygmp, and ``go_locked``
threads.  They park by blocking their thread on ``g.sema`` with the GIL
released; readying them releases it.
"""

import threading

from .. import _hot

# The real classes, bound at import: pygmp.monkey may replace the module's
# attributes later, and the runtime's own threads and locks must stay real.
_Lock = threading.Lock

# G statuses, Go's names (runtime2.go).
_Gidle = 0
_Grunnable = 1
_Grunning = 2
_Gsyscall = 3
_Gwaiting = 4
_Gdead = 6
_Gpreempted = 9

STATUS_NAMES = {
    _Gidle: "idle", _Grunnable: "runnable", _Grunning: "running",
    _Gsyscall: "syscall", _Gwaiting: "waiting", _Gdead: "dead",
    _Gpreempted: "preempted",
}


# ``G(goid, fn, args, kwargs, ctx, creator)``: every field and the constructor
# live in C (csrc/proc.c, struct GObject in csrc/runtime.h), and Gs are not
# tracked by the cyclic GC (see gdestroy in csrc/gbody.c for why that is safe).
G = _hot.GBase


def new_thread_g(goid, m):
    """A G for an OS thread without a P (main thread, plain thread, go_locked)."""
    g = G(goid, None, None, None, None, None)
    g.status = _Grunning
    g.locked = True
    g.m = m
    sema = _Lock()
    sema.acquire()            # held = no wake token; goready releases it
    g.sema = sema
    return g

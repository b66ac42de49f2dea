"""G: the goroutine descriptor (Go's runtime2.go `g`), and the sudog waiter.

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

from .hot import _hot

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


_FIELDS = ("status", "locked", "glet", "home", "param", "sema", "waitreason",
           "waitsince", "goid", "fn", "args", "kwargs", "ctx", "creator",
           "sleeptimer", "lockedcount", "m")


if _hot is not None:
    # ``G(goid, fn, args, kwargs, ctx, creator)``: every field and the
    # constructor live in C (csrc/hot.c), and Gs are not tracked by the cyclic
    # GC (see _gdestroy for why that is safe).
    G = _hot.GBase

else:
    class G:
        __slots__ = _FIELDS + ("__weakref__",)

        def __init__(self, goid, fn, args, kwargs, ctx, creator):
            self.goid = goid
            self.status = _Grunnable
            self.glet = None          # greenlet, bound at first run (homing)
            self.fn = fn
            self.args = args
            self.kwargs = kwargs
            self.ctx = ctx            # contextvars.Context copy of the creator's
            self.home = None          # P, set at first run; never changes after
            self.waitreason = ""
            self.waitsince = 0.0
            self.param = None         # set by the waker: the sudog that completed
            self.creator = creator    # (goid, code, lasti) of the go() call site
            self.locked = False       # a thread G (parks on sema, has no P)
            self.sema = None
            self.sleeptimer = None    # reused timer for sleep()
            self.lockedcount = 0      # lock_os_thread depth
            self.m = None             # thread Gs: the M (OS thread) they belong to


    def __repr__(self):
        return "<G %d %s>" % (self.goid, STATUS_NAMES.get(self.status, self.status))


def new_thread_g(goid, m):
    """A G for an OS thread without a P (main thread, plain thread, go_locked)."""
    g = G(goid, None, None, None, None, None)
    g.status = _Grunning
    g.locked = True
    g.m = m
    sema = threading.Lock()
    sema.acquire()            # held = no wake token; goready releases it
    g.sema = sema
    return g


class Sudog:
    """A waiter queued on a channel (Go's sudog).

    Lives on the heap and is referenced from the channel's queue while the G
    waits.  ``sel`` is the per-park "done" flag shared by every sudog of one
    park (a select parks on several channels at once, and a thread G's park can
    be cancelled by an exception): a waker must win ``sel.acquire(False)``
    before it may complete the sudog, so a G is readied at most once per park.
    Plain goroutine sends/receives have ``sel = None``: only one waker can ever
    dequeue that sudog, under the channel lock.
    """

    __slots__ = ("g", "elem", "c", "sel", "success", "idx")

    def __init__(self, g, elem, c, sel, idx):
        self.g = g
        self.elem = elem
        self.c = c
        self.sel = sel
        self.success = False
        self.idx = idx

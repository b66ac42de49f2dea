"""P: a processor context and its local runqueue (Go's runtime2.go `p`, proc.go runq*).

Ownership (see HACKING.md):
- ``streak``, ``schedtick``, ``curg``, ``gfree``, ``nhomed``, ``ngdelta``,
  ``goidcache`` are owned by the P's worker thread: only it writes them (other
  threads read ``curg``/``schedtick`` for diagnostics and sysmon only).
- ``runq``, ``runnext``, ``nmovable``, ``sleeping``, ``sleepuntil`` are guarded
  by ``p.lock``: other threads push homed Gs readied for this P and steal
  movable Gs (runnext only while sysmon has marked the P ``stuck``).
- ``gs`` (every started G homed here, the runtime's strong reference to each
  live goroutine) is written by the owner under ``p.lock`` so that diagnostic
  readers on other threads can copy it.
- timers: ``timers``, ``ntimers``, ``timer0`` are guarded by ``p.tlock``.
"""

import threading

from .. import _hot

_Pidle = 0
_Prunning = 1
_Psyscall = 2
_Pgcstop = 3
_Pdead = 4

RUNQ_MOVABLE_MAX = 256     # Go's local ring size: movable Gs beyond it spill to the global queue
RUNNEXT_STREAK_MAX = 3     # at most this many consecutive runnext picks (Tokio's LIFO-slot cap)


_PYFIELDS = ("id", "status", "gs", "ngdelta", "goidcache", "goidend",
             "timers", "tlock", "ntimers", "timerseq",
             "thread", "ident", "m", "__weakref__")


class P(_hot.PBase):
    """A processor.  The runqueue, runnext, the lock and the fields the
    scheduler's C path touches live in the C base (csrc/proc.c, struct PObject
    in csrc/runtime.h); the ``rq_*`` methods are the narrow interface the
    Python side uses for the runqueue."""

    __slots__ = _PYFIELDS

    def __init__(self, pid, parker=None):
        # parker: the idle wait (park.py); None only for Ps used as plain
        # runqueues (tests)
        self.id = pid
        self.status = _Pidle
        self.parker = parker
        self.m = None
        self.gs = set()
        self.ngdelta = 0
        self.goidcache = 0
        self.goidend = 0
        self.timers = []
        self.tlock = threading.Lock()
        self.ntimers = 0
        self.timerseq = 0
        self.thread = None
        self.ident = None

    def __repr__(self):
        return "<P %d>" % self.id

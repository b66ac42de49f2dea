"""P: a processor context and its local runqueue (Go's runtime2.go `p`, proc.go runq*).

Ownership (see HACKING.md):
- ``streak``, ``schedtick``, ``curg``, ``gfree``, ``nhomed``, ``ngdelta``,
  ``goidcache`` are owned by the P's worker thread: only it writes them (other
  threads read ``curg``/``schedtick`` for diagnostics and sysmon only).
  ``nhomed`` and ``ngdelta`` live in C (csrc/gbody.c keeps them).
- ``runq``, ``runnext``, ``nmovable``, ``sleeping``, ``sleepuntil`` are guarded
  by ``p.lock``: other threads push homed Gs readied for this P and steal
  movable Gs (runnext only while sysmon has marked the P ``stuck``).
- the started Gs homed here (the runtime's strong reference to each live
  goroutine) are written by the owner under ``p.lock``; other threads copy
  them with ``gs_snapshot()``.
- timers: the P's heap lives in C (csrc/timers.c, under its own lock);
  ``timer0`` (earliest deadline or None) and ``ntimers`` are read-only views.
"""

from .. import _hot

_Pidle = 0
_Prunning = 1
_Psyscall = 2
_Pgcstop = 3
_Pdead = 4

RUNQ_MOVABLE_MAX = 256     # Go's local ring size: movable Gs beyond it spill to the global queue
RUNNEXT_STREAK_MAX = 3     # at most this many consecutive runnext picks (Tokio's LIFO-slot cap)


_PYFIELDS = ("id", "status", "goidcache", "goidend",
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
        self.goidcache = 0
        self.goidend = 0
        self.thread = None
        self.ident = None

    def __repr__(self):
        return "<P %d>" % self.id

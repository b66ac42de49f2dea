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

import collections
import threading

from .hot import _hot
from .park import LockParker

_Pidle = 0
_Prunning = 1
_Psyscall = 2
_Pgcstop = 3
_Pdead = 4

RUNQ_MOVABLE_MAX = 256     # Go's local ring size: movable Gs beyond it spill to the global queue
RUNNEXT_STREAK_MAX = 3     # at most this many consecutive runnext picks (Tokio's LIFO-slot cap)


_CFIELDS = ("lock", "runq", "runnext", "nmovable", "schedtick", "streak", "stuck",
            "sleeping", "draining", "curg", "g0", "gfree", "timer0", "parker",
            "sleepuntil", "lastpoll")
_PYFIELDS = ("id", "status", "nhomed", "gs", "ngdelta", "goidcache", "goidend",
             "timers", "tlock", "ntimers", "timerseq", "idle", "spinning",
             "thread", "ident", "stealcount", "m", "__weakref__")


class P(_hot.PBase if _hot is not None else object):
    """A processor.  With the C extension, the runqueue, runnext, the lock and
    the fields the hot path touches live in the C base (csrc/hot.c PBase); the
    ``rq_*`` methods are the narrow interface the Python scheduler uses for the
    runqueue either way."""

    __slots__ = _PYFIELDS if _hot is not None else _CFIELDS + _PYFIELDS

    def __init__(self, pid, parker=None):
        self.id = pid
        self.status = _Pidle
        if _hot is None:
            self.lock = threading.Lock()
            self.runq = collections.deque()
            self.runnext = None
            self.nmovable = 0
            self.streak = 0
            self.schedtick = 0
            self.stuck = False       # set by sysmon: no schedule for a while; runnext may be stolen
            self.sleeping = False    # guarded by lock: the worker is (about to be) parked
            self.draining = False    # set by gomaxprocs() when this P is removed
            self.curg = None
            self.g0 = None
            self.gfree = []
            self.timer0 = None
            self.sleepuntil = -1.0   # guarded by lock: deadline of the current sleep (None = forever)
            self.lastpoll = 0.0
        self.parker = parker if parker is not None else LockParker()
        self.m = None
        self.nhomed = 0
        self.gs = set()
        self.ngdelta = 0
        self.goidcache = 0
        self.goidend = 0
        self.timers = []
        self.tlock = threading.Lock()
        self.ntimers = 0
        self.timerseq = 0
        self.idle = False        # guarded by sched.lock: on sched.pidle
        self.spinning = False    # guarded by sched.lock
        self.thread = None
        self.ident = None
        self.stealcount = 0

    def __repr__(self):
        return "<P %d>" % self.id

    if _hot is None:
        # -- the runqueue interface (the C base implements the same) ----------
        def rq_len(self):
            return len(self.runq)

        def rq_extend(self, gs):
            with self.lock:
                self.runq.extend(gs)
                self.nmovable += sum(1 for g in gs if g.home is None)

        def rq_append(self, g):
            with self.lock:
                self.runq.append(g)
                if g.home is None:
                    self.nmovable += 1

        def rq_put_remote(self, g):
            """Any thread: put ``g`` at the tail and wake the P if it sleeps."""
            with self.lock:
                self.runq.append(g)
                if g.home is None:
                    self.nmovable += 1
                sleeping = self.sleeping
            if sleeping:
                self.parker.unpark()

        def rq_steal(self, maxn):
            """Take up to ``maxn`` movable (never run) Gs, oldest first; the
            movable runnext too while sysmon has marked this P stuck."""
            with self.lock:
                taken = self._take_movable(maxn)
                if not taken:
                    nx = self.runnext
                    if self.stuck and nx is not None and nx.home is None:
                        self.runnext = None
                        taken = [nx]
            return taken or None

        def rq_grab_movable(self, maxn):
            with self.lock:
                return self._take_movable(maxn)

        def _take_movable(self, maxn):
            if self.nmovable == 0:
                return []
            taken = []
            keep = []
            q = self.runq
            while q:
                g = q.popleft()
                if len(taken) < maxn and g.home is None:
                    taken.append(g)
                else:
                    keep.append(g)
            q.extend(keep)
            self.nmovable -= len(taken)
            return taken

        def rq_snapshot(self):
            with self.lock:
                return list(self.runq)

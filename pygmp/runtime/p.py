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

from .park import LockParker

_Pidle = 0
_Prunning = 1
_Psyscall = 2
_Pgcstop = 3
_Pdead = 4

RUNQ_MOVABLE_MAX = 256     # Go's local ring size: movable Gs beyond it spill to the global queue
RUNNEXT_STREAK_MAX = 3     # at most this many consecutive runnext picks (Tokio's LIFO-slot cap)


class P:
    __slots__ = (
        "id", "status", "lock", "runq", "runnext", "nmovable", "streak",
        "schedtick", "curg", "g0", "m", "gfree", "nhomed", "gs", "ngdelta",
        "goidcache", "goidend", "timers", "tlock", "timer0", "ntimers",
        "timerseq", "parker", "sleeping", "idle", "spinning", "draining",
        "thread", "ident", "lastpoll", "stealcount", "sleepuntil", "stuck",
    )

    def __init__(self, pid, parker=None):
        self.id = pid
        self.status = _Pidle
        self.lock = threading.Lock()
        self.runq = collections.deque()
        self.runnext = None
        self.nmovable = 0
        self.streak = 0
        self.schedtick = 0
        self.curg = None
        self.g0 = None
        self.m = None
        self.gfree = []
        self.nhomed = 0
        self.gs = set()
        self.ngdelta = 0
        self.goidcache = 0
        self.goidend = 0
        self.timers = []
        self.tlock = threading.Lock()
        self.timer0 = None
        self.ntimers = 0
        self.timerseq = 0
        self.parker = parker if parker is not None else LockParker()
        self.sleeping = False    # guarded by lock: the worker is (about to be) parked
        self.idle = False        # guarded by sched.lock: on sched.pidle
        self.spinning = False    # guarded by sched.lock
        self.draining = False    # set by gomaxprocs() when this P is removed
        self.thread = None
        self.ident = None
        self.lastpoll = 0.0
        self.stealcount = 0
        self.stuck = False       # set by sysmon: no schedule for a while; runnext may be stolen
        self.sleepuntil = -1.0   # guarded by lock: deadline of the current sleep (None = forever)

    def __repr__(self):
        return "<P %d>" % self.id


def runqput_remote(p, g):
    """Put ``g`` on ``p``'s runqueue from any thread and wake ``p`` if it sleeps."""
    with p.lock:
        p.runq.append(g)
        if g.home is None:
            p.nmovable += 1
        sleeping = p.sleeping
    if sleeping:
        p.parker.unpark()


def runqsteal_movable(victim, maxn):
    """Take up to half of ``victim``'s movable (never run) Gs, oldest first."""
    with victim.lock:
        n = victim.nmovable
        if n == 0:
            nx = victim.runnext
            if victim.stuck and nx is not None and nx.home is None:
                victim.runnext = None
                return [nx]
            return None
        n = min(maxn, n - n // 2)
        taken = []
        keep = collections.deque()
        q = victim.runq
        while q:
            g = q.popleft()
            if len(taken) < n and g.home is None:
                taken.append(g)
            else:
                keep.append(g)
        victim.runq = keep
        victim.nmovable -= len(taken)
    return taken


def runqgrab_movable(p, maxn):
    """Remove up to ``maxn`` movable Gs from ``p``'s own runq (owner or gomaxprocs)."""
    with p.lock:
        if p.nmovable == 0:
            return []
        taken = []
        keep = collections.deque()
        q = p.runq
        while q:
            g = q.popleft()
            if len(taken) < maxn and g.home is None:
                taken.append(g)
            else:
                keep.append(g)
        p.runq = keep
        p.nmovable -= len(taken)
    return taken

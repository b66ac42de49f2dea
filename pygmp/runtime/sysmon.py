"""sysmon (Go's proc.go sysmon): a thread with no P that watches the Ps.

In this version it does one job: wake an idle P when runnable movable work has
waited while every running P is busy or blocked (a worker blocked in a call that
is not handed off, or one P running a long stretch of Python while another P
sleeps), i.e. Go's "wake a P when the global queue has work and nobody spins".
It backs off from 1 ms to 10 ms, and when every P is idle it sleeps deep
until wakep pokes it (at most one wake-up a second: an idle process costs ~0 CPU).  Preemption arrives in a later issue.
"""

import threading
import time

from . import proc

_DELAY_MIN = 0.001
_DELAY_MAX = 0.010


def start(s):
    t = threading.Thread(target=_sysmon, args=(s,), name="pygmp-sysmon", daemon=True)
    t._pygmp_runtime = True
    t.start()
    with s.lock:
        s.runtime_idents.add(t.ident)


_DEEP_SLEEP = 1.0


def _sysmon(s):
    delay = _DELAY_MIN
    last = {}
    while True:
        if s.nidle == len(s.allp) and not s.runq:
            # everything idle: sleep deep until wakep pokes us (Go's sysmonnote)
            s.sysmonidle = True
            s.sysmonwake.wait(_DEEP_SLEEP)
            s.sysmonwake.clear()
            s.sysmonidle = False
            delay = _DELAY_MIN
        else:
            time.sleep(delay)
        if proc._sched is not s:       # forked child / replaced runtime
            return
        if not s.pidle:
            delay = min(delay * 2, _DELAY_MAX)
            continue
        waiting = bool(s.runq)
        for p in s.allp:
            tick = p.schedtick
            nx = p.runnext
            if (p.nmovable or (nx is not None and nx.home is None)) and last.get(p.id) == tick:
                # queued movable work, and p did not schedule since the last look:
                # it is busy or blocked; let an idle P take that work
                p.stuck = True
                waiting = True
            last[p.id] = tick
        if waiting:
            proc.wakep()
            delay = _DELAY_MIN
        else:
            delay = min(delay * 2, _DELAY_MAX)


proc._start_hooks.append(start)

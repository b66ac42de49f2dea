"""sysmon (Go's proc.go sysmon): a thread with no P that watches the Ps.

The loop is C (``csrc/sysmon.c``, ``_hot.sysmon_run``): it reads the Ps'
counters without the GIL and takes the GIL only to act.  This module starts it
and holds the Python half of its actions, the one named point where sysmon
calls back into Python (``_act``): the stall report, a poll of a busy P's fds,
waking an idle P, the ``GODEBUG=schedtrace`` lines, and retiring the syscall
Ms idle past their keep-alive.  About once a second
(``proc.SCAVENGE_PERIOD``) the loop also runs the data-stack cache's
scavenger (``stackcache_scavenge``, csrc/stackcache.c), without the GIL.
Preemption itself is C
(``csrc/preempt.c``); ``configure`` hands it the safe-point rules (HACKING.md
"Preemption").
"""

import os
import sys
import sysconfig
import threading
import time

from .. import _hot
from . import proc

# The real classes, bound at import: pygmp.monkey may replace the module's
# attributes later, and the runtime's own threads and locks must stay real.
_Thread = threading.Thread
_active_count = threading.active_count

_start_mono = time.monotonic()


def _unsafe_prefixes():
    """Files whose frames are never preempted asynchronously: the runtime
    itself, and the stdlib modules that hold locks that are not goroutine-aware
    while running (threading, queue, logging, the import machinery, ...)."""
    pkg = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    std = sysconfig.get_paths()["stdlib"]
    out = [pkg, "<frozen importlib.", "<frozen zipimport"]
    names = ["threading.py", "queue.py", "subprocess.py", "tempfile.py", "_pyio.py", "sched.py",
             "_threading_local.py", "logging" + os.sep, "importlib" + os.sep,
             "concurrent" + os.sep, "multiprocessing" + os.sep]
    if sys.version_info < (3, 12):
        names.append("functools.py")     # cached_property holds an RLock around user code
    for n in names:
        out.append(os.path.join(std, n))
        real = os.path.realpath(os.path.join(std, n.rstrip(os.sep)))
        if real != os.path.join(std, n.rstrip(os.sep)):
            out.append(real + (os.sep if n.endswith(os.sep) else ""))
    return tuple(out)


def configure(s):
    """Hand the safe-point rules to the C side; returns whether asynchronous
    preemption is available (and not turned off by GODEBUG=asyncpreemptoff=1)."""
    transparent = set()           # the goroutine body is C (csrc/gbody.c): no runtime frames
    return _hot.preempt_config(_unsafe_prefixes(), transparent,
                               not s.settings.asyncpreemptoff)


def start(s):
    st = s.settings
    from . import syscall
    syscall.KEEPALIVE = st.PYGMP_SYSCALL_KEEPALIVE_MS / 1000.0
    s.asyncpreempt = configure(s)
    t = _Thread(target=_run, args=(s,), name="pygmp-sysmon", daemon=True)
    t._pygmp_runtime = True
    t.start()
    with s.lock:
        s.runtime_idents.add(t.ident)


def _run(s):
    st = s.settings
    _hot.sysmon_run(lambda kind, p, arg: _act(s, kind, p, arg),
                    st.PYGMP_TIMESLICE_US, st.PYGMP_STALL_MS, st.schedtrace,
                    int(sys.getswitchinterval() * 1e6),
                    int(min(proc.SCAVENGE_PERIOD, 1e6) * 1000))


def _act(s, kind, p, arg):
    """sysmon's actions that need Python (called from the C loop, GIL held)."""
    if proc._sched is not s:          # a forked child's replaced runtime
        return 0
    if kind == "netpoll":
        return p.parker.poll()
    if kind == "wakep":
        proc.wakep()
    elif kind == "stall":
        if s.settings.schedstall:
            _stall_report(s, p, arg)
    elif kind == "schedtrace":
        _write(schedtrace(s, s.settings.scheddetail))
    elif kind == "retire":
        from . import syscall
        syscall.retire_idle()
    return 0


def _write(text):
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass


# ---------------------------------------------------------------------------
# the stall report (GODEBUG=schedstall=1)

def _stall_report(s, p, held):
    from .stack import _user_frames, creator_text
    g = p.curg
    if g is None:
        return
    frame = sys._current_frames().get(p.ident)
    frames = _user_frames(frame) if frame is not None else []
    fn = frames[0].name if frames else "?"
    ms = held * 1000.0
    lines = ["pygmp: schedstall: goroutine %d (%s) has held P%d's worker thread for %.0f ms "
             "where it cannot be preempted (a blocking call made inline, C code that holds "
             "the GIL, or a lock that is not goroutine-aware)\n" % (g.goid, fn, p.id, ms),
             "goroutine %d [running, %.0f ms]:\n" % (g.goid, ms)]
    if frames:
        import traceback
        lines.append("".join(traceback.format_list(frames)))
    lines.append(creator_text(g))
    _write("".join(lines) + "\n")


# ---------------------------------------------------------------------------
# GODEBUG=schedtrace=MS[,scheddetail=1] (Go's schedtrace)

def _os_threads():
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        try:
            import psutil
            return psutil.Process().num_threads()
        except Exception:          # noqa: BLE001
            return _active_count()


def schedtrace(s, detail=False):
    """Go's SCHED line (and with ``detail`` the P, M and G lines) as text."""
    from . import syscall
    ms = int((time.monotonic() - _start_mono) * 1000)
    allp = list(s.allp)
    with s.lock:
        idle = len(s.pidle)
        spinning = s.nspinning
        runq = len(s.runq)
    nsys, nidle = syscall.pool_threads()
    head = ("SCHED %dms: gomaxprocs=%d idleprocs=%d threads=%d spinningthreads=%d "
            "needspinning=0 idlethreads=%d runqueue=%d"
            % (ms, s.gomaxprocs, idle, _os_threads(), spinning, nidle, runq))
    if not detail:
        return "%s [%s] schedticks=[%s]\n" % (
            head, " ".join(str(p.rq_len()) for p in allp),
            " ".join(str(p.schedtick) for p in allp))
    out = [head + " gcwaiting=false nmidlelocked=0 stopwait=0 sysmonwait=%s\n"
           % ("true" if _hot.sysmon_stats()["deep"] else "false")]
    for p in allp:
        m = p.m
        out.append("  P%d: status=%d schedtick=%d syscalltick=0 m=%s runqsize=%d "
                   "gfreecnt=%d timerslen=%d\n"
                   % (p.id, 0 if p.idle else p.status, p.schedtick, _mid(m), p.rq_len(),
                      len(p.gfree), p.ntimers))
    ms_ = []
    with s.lock:
        tgs = list(s.threadgs.values())
    for g in tgs:
        if g.m is not None:
            ms_.append((g.m, None, g))
    for p in allp:
        if p.m is not None:
            ms_.append((p.m, p, None))
    for m, p, tg in sorted(ms_, key=lambda t: _mid(t[0])):
        cur = p.curg if p is not None else (tg if tg is not None and tg.status == 2 else None)
        out.append("  M%s: p=%s curg=%s mallocing=0 throwing=0 preemptoff= locks=0 dying=0 "
                   "spinning=%s blocked=%s lockedg=%s\n"
                   % (_mid(m), p.id if p is not None else "nil",
                      cur.goid if cur is not None else "nil",
                      "true" if p is not None and p.spinning else "false",
                      "true" if p is not None and p.sleeping else "false",
                      tg.goid if tg is not None else "nil"))
    for g in _allgs(s, allp, tgs):
        reason = g.waitreason if g.status == 4 else ""
        m = g.m if g.locked else (g.home.m if g.home is not None and g.status == 2 else None)
        out.append("  G%d: status=%d(%s) m=%s lockedm=%s\n"
                   % (g.goid, g.status, reason, _mid(m) if m is not None else "nil",
                      _mid(g.m) if g.locked and g.m is not None else "nil"))
    nsys_line = "  syscall Ms: %d (%d idle)\n" % (nsys, nidle)
    out.append(nsys_line)
    return "".join(out)


_mids = {}


def _mid(m):
    if m is None:
        return "nil"
    k = id(m)
    v = _mids.get(k)
    if v is None or v[0] is not m:
        if m.kind == "m0":
            n = 0
        else:
            n = 2 + len(_mids)          # M1 is sysmon, as usual in Go
        v = _mids[k] = (m, n)
    return v[1]


def _allgs(s, allp, tgs):
    gs = list(tgs)
    for p in allp:
        gs.extend(p.gs_snapshot())
    with s.lock:
        gs.extend(s.runq)
    for p in allp:
        gs.extend(p.rq_snapshot())
        nx = p.runnext
        if nx is not None and nx.home is None:
            gs.append(nx)
    seen = set()
    out = []
    for g in gs:
        if id(g) not in seen:
            seen.add(id(g))
            out.append(g)
    out.sort(key=lambda g: g.goid)
    return out


def stats():
    """Counters of sysmon and preemption (read by pygmp.metrics)."""
    d = dict(_hot.sysmon_stats())
    d.update(_hot.preempt_stats())
    return d


proc._start_hooks.append(start)

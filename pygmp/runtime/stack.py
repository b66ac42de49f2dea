"""Goroutine stack dumps in Go's format (Go's traceback.go).

    goroutine 7 [chan receive, 2 minutes]:
      File "...", line N, in f
        code
    created by worker in goroutine 1
    	/path/app.py:12

Frames inside pygmp's runtime are left out, as Go hides runtime frames.
"""

import os
import sys
import time
import traceback

from .. import _hot
from .g import _Grunnable, _Grunning, _Gwaiting, _Gsyscall, _Gdead

_RUNTIME_DIR = os.path.dirname(os.path.abspath(__file__))
_PKG_DIR = os.path.dirname(_RUNTIME_DIR)
_HIDE = (_RUNTIME_DIR + os.sep, os.path.join(_PKG_DIR, "sync.py"),
         os.path.join(_PKG_DIR, "time.py"), "<frozen", os.path.join(os.path.dirname(__file__), ""))


def _user_frames(frame):
    frames = traceback.extract_stack(frame)
    out = [f for f in frames if not f.filename.startswith(_HIDE[0])
           and f.filename not in (_HIDE[1], _HIDE[2])]
    return out or frames[-1:]


def _line_of(code, lasti):
    """Line of the instruction at byte offset ``lasti`` (go() records the offset,
    not the line: computing f_lineno on every go() scans the line table)."""
    for start, end, line in code.co_lines():
        if start <= lasti < end:
            return line if line is not None else code.co_firstlineno
    return code.co_firstlineno


def creator_text(g):
    c = g.creator
    if not c:
        return ""
    goid, code, lasti = c
    lineno = _line_of(code, lasti)
    return "created by %s in goroutine %d\n\t%s:%d\n" % (
        getattr(code, "co_qualname", code.co_name), goid, code.co_filename, lineno)


def _state(g):
    st = g.status
    if st == _Gwaiting:
        s = g.waitreason or "waiting"
        if g.waitsince:
            mins = int((time.monotonic() - g.waitsince) // 60)
            if mins >= 1:
                s += ", %d minute%s" % (mins, "" if mins == 1 else "s")
        return s
    if st == _Grunnable:
        return "runnable"
    if st == _Gsyscall:
        return "syscall"
    if st == _Gdead:
        return "dead"
    return "running"


def format_g(g, frame=None):
    head = "goroutine %d [%s]:\n" % (g.goid, _state(g))
    body = ""
    if frame is None and g.glet is not None and not g.locked:
        frame = g.glet.gr_frame
    if frame is not None:
        body = "".join(traceback.format_list(_user_frames(frame)))
    elif g.fn is not None:
        fn = g.fn
        body = "  (not started) %s\n" % getattr(fn, "__qualname__", repr(fn))
    return head + body + creator_text(g)


def _caller_frame(depth):
    """The frame ``depth`` levels up, or the outermost one if the stack is
    shallower (stack() called at module level)."""
    f = sys._getframe(1)
    for _ in range(depth - 1):
        if f.f_back is None:
            break
        f = f.f_back
    return f


def current_text():
    g = _hot.getg()
    if g is None:
        return "goroutine 0 [running]:\n" + "".join(traceback.format_stack(_caller_frame(3)))
    return format_g(g, _caller_frame(3))


def all_gs(s):
    """Snapshot of every G of Sched ``s``: thread Gs, started goroutines,
    runnable unstarted ones."""
    if s is None:
        return []
    with s.lock:
        gs = list(s.threadgs.values())
        gs.extend(s.runq)
        allp = list(s.allp)
    for p in allp:
        gs.extend(p.gs_snapshot())
        gs.extend(g for g in p.rq_snapshot() if g.glet is None)
        nx = p.runnext
        if nx is not None and nx.glet is None:
            gs.append(nx)
    seen = set()
    out = []
    for g in gs:
        if id(g) not in seen and g.status != _Gdead:
            seen.add(id(g))
            out.append(g)
    out.sort(key=lambda g: g.goid)
    return out


def format_all(s, skip_current_depth=2):
    """Every goroutine of Sched ``s`` in Go's format."""
    frames = sys._current_frames()
    me = _hot.getg()
    parts = []
    for g in all_gs(s):
        frame = None
        if g is me:
            frame = _caller_frame(skip_current_depth + 1)
        elif g.locked:
            m = g.m
            frame = frames.get(m.ident) if m is not None else None
        elif g.status == _Grunning and g.home is not None:
            p = g.home
            if p.curg is g:
                frame = frames.get(p.ident)
        parts.append(format_g(g, frame))
    return "\n".join(parts)

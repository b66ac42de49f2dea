"""go_locked: a goroutine on a dedicated OS thread that runs nothing else and
ends with it (Go's LockOSThread at the top of a goroutine; DESIGN §7).

The goroutine is a thread G (``g.locked``): it parks by blocking its own
thread, has no P, and its thread counts against ``set_max_threads``.
"""

import contextvars
import sys
import threading

from . import panic as _panic
from . import proc
from .g import new_thread_g, _Gdead

# The real classes, bound at import: pygmp.monkey may replace the module's
# attributes later, and the runtime's own threads and locks must stay real.
_Event = threading.Event
_Thread = threading.Thread


def go_locked(fn, args, kwargs):
    s = proc._sched or proc.start()
    cur = proc.getg()
    f = sys._getframe(2)
    with s.lock:
        if s.nthreads + 1 > s.maxthreads:
            s.lock.release()
            try:
                _panic.fatal("thread exhaustion (runtime: program exceeds %d-thread limit)"
                             % s.maxthreads)
            finally:
                s.lock.acquire()
        s.nthreads += 1
        s.goidgen += 1
        goid = s.goidgen
        s.ngdelta += 1
    ctx = contextvars.copy_context()
    creator = (cur.goid if cur is not None else 0, f.f_code, f.f_lasti)
    started = _Event()

    def run():
        m = proc.M("locked")
        g = new_thread_g(goid, m)
        g.creator = creator
        g.lockedcount = 1
        m.tg = g
        proc._tls.m = m
        with s.lock:
            s.threadgs[m.ident] = g
        started.set()
        try:
            ctx.run(fn, *args, **kwargs)
        except _panic.Goexit:
            pass
        except SystemExit as e:
            _panic.exit_from_goroutine(e)
        except BaseException as e:
            _panic.fatalpanic(g, e)
        finally:
            g.status = _Gdead
            g.m = None                  # break the G <-> M cycle (Gs are not GC-tracked)
            with s.lock:
                s.threadgs.pop(m.ident, None)
                s.ngdelta -= 1
                s.nthreads -= 1

    t = _Thread(target=run, name="pygmp-locked-%d" % goid, daemon=True)
    t.start()
    started.wait()

"""Process life around the runtime: fork, exit and the main goroutine's Goexit
(docs/design.md §3 "Process life").

Installed once, when the runtime starts (``proc._start_hooks``):

* ``os.register_at_fork``: the child drops the parent's runtime
  (``proc._after_fork_child``) and starts a fresh one on first use.
* ``atexit``: the exit protocol below.
* ``sys.excepthook``: ``goexit()`` escaping the main goroutine lets the other
  goroutines run on; any other exception sets the exit status to 1.

Process exit.  Workers are daemon threads.  Once the interpreter starts
finalizing, a daemon thread that wants the GIL back is ended with
pthread_exit, whose unwinding through a goroutine's greenlet frames runs
greenlet's C++ destructors without the GIL and crashes the process.  So, from
an atexit handler (which runs before finalization, after non-daemon threads
were joined), every worker is brought to a safe point and frozen there
(``proc._freeze``: blocked forever in C with the GIL released, never to
wake).  Safe points: the scheduler loop, every park, the end of every
goroutine.  No exception is thrown into any goroutine.
"""

import atexit
import os
import sys
import time

from .. import _hot
from . import panic as _panic
from . import proc
from .g import _Gdead

EXIT_FREEZE_WAIT = 0.5     # how long exit waits for every worker to reach a safe point
_exit_status = 0           # 1 once an exception escaped the main goroutine
_installed = False


def _install(s):
    global _installed
    if _installed:
        return
    _installed = True
    os.register_at_fork(after_in_child=proc._after_fork_child)
    atexit.register(_atexit)
    prev = sys.excepthook

    def excepthook(tp, val, tb):
        global _exit_status
        if tp is _panic.Goexit and proc._sched is not None:
            main_goexit_wait()
            return
        _exit_status = 1
        prev(tp, val, tb)
    sys.excepthook = excepthook


def _atexit():
    s = proc._sched
    if s is None or s.pid != os.getpid():
        return
    s.exiting = True
    _hot.set_exiting(proc._freeze)
    for p in list(s.allp):
        p.parker.unpark()
    deadline = time.monotonic() + EXIT_FREEZE_WAIT
    while time.monotonic() < deadline:
        with s.lock:
            if s.nfrozen >= s.nworkers:
                return
        time.sleep(0.002)
    # A goroutine is running code that never enters the runtime: finalizing now
    # would kill its worker mid-greenlet.  Leave without finalizing (atexit
    # handlers registered after the runtime started have already run).
    _panic._flush()
    os._exit(_exit_status)


def main_goexit_wait():
    """The main goroutine called goexit(): let the others run on; the process ends
    when they all deadlock or finish (checkdead), or one exits it."""
    s = proc._sched
    with s.lock:
        s.maingoexit = True
        s.maing.status = _Gdead
    if s.nidle == len(s.allp):
        proc.checkdead()
    while True:                  # the workers' checkdead ends the process
        time.sleep(3600)


proc._start_hooks.append(_install)

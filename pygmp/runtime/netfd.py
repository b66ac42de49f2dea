"""Network file descriptors: the Python face of the C network core.

The mechanism is C, in two concerns (Go's split):

* ``csrc/netfd.c``, the fd (internal/poll's ``FD`` and ``fdMutex``): ``FD``
  owns a non-blocking socket's fd number and runs the read/write/accept/
  connect loops around the syscall: try it; on EAGAIN park on the pollDesc;
  retry when readied.  Reads are serialized with reads and writes with writes
  (a FIFO of parked Gs each); ``close()`` wakes every waiter with
  ``ErrClosed``, waits for the operations in flight, unregisters the fd and
  only then closes it.
* ``csrc/netpoll.c``, its wait (runtime's ``pollDesc`` and the per-P poller):
  per-direction states pdNil/pdReady/a parked G, deadlines on runtime timers,
  tokens that make events for a closed fd stale, and ``netpollready``, which
  applies the kernel's events without running Python.

This module holds only what Python must: the error types (``pygmp.net``
re-exports them), the timer API the deadlines use until the timers are in C,
and the counters ``pygmp.metrics`` reads.
"""

import builtins
from collections.abc import Mapping

from .. import _hot
from .timers import RTimer, addtimer, deltimer

READ = 1
WRITE = 2

FD = _hot.FD     # FD(fileno, family, type) owns fileno; FD(sock) works on a dup of sock's


def fd_from(sock):
    """An FD that takes over ``sock``'s fd number (``sock`` is detached)."""
    family, type_ = sock.family, sock.type
    return FD(sock.detach(), family, type_)


class ErrClosed(OSError):
    """Use of a closed network connection or listener (Go's net.ErrClosed)."""

    def __init__(self, msg="use of closed network connection"):
        OSError.__init__(self, msg)


class TimeoutError(builtins.TimeoutError):
    """An I/O deadline passed (Go's os.ErrDeadlineExceeded, "i/o timeout")."""

    def __init__(self, msg="i/o timeout"):
        builtins.TimeoutError.__init__(self, msg)


class _Stats(Mapping):
    """Live counters of the network wait (read from C on every access):
    ``ready_local`` / ``ready_remote``: Gs readied by an I/O event on their home
    P's own thread vs from another thread (a thread hop); ``accept_backoff``:
    accept's EMFILE-style back-offs."""

    def __getitem__(self, key):
        return _hot.netpoll_stats()[key]

    def __iter__(self):
        return iter(_hot.netpoll_stats())

    def __len__(self):
        return len(_hot.netpoll_stats())


stats = _Stats()

_hot.netpoll_init(errclosed=ErrClosed, timeouterror=TimeoutError,
                  rtimer=RTimer, addtimer=addtimer, deltimer=deltimer)

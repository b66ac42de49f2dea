"""The idle worker's wait: every P's *parker* is its kernel poller.

``Poller`` (``csrc/netpoll.c``, one epoll/kqueue per P) is the only parker;
proc.py uses nothing but this interface:

``bind(p)``
    Once, when the P is made: the poller updates ``p.lastpoll`` and threads
    that wait on a socket without a P of their own may register there.
``park(timeout)``
    Owner worker only.  Blocks the worker thread with the GIL released until
    ``unpark()``, an I/O event, or the timeout (seconds; None = forever).  The
    events it got are applied in C (their waiters readied) before it returns.
``unpark()``
    Any thread.  Makes the park in progress return, or the next one return at
    once: a wake-up is never lost, only ever spurious.
``poll()``
    Any thread, non-blocking.  Applies ready I/O events and returns how many Gs
    were readied; returns 0 at once when another thread is inside this poller.
    Updates ``p.lastpoll``.
``close()``
    The owner, when its P retires: the fds registered there wake their waiters,
    who register again on their own P.

Lost wake-ups: ``unpark`` sets ``notified`` and posts the poller's break under
the poller's lock; ``park`` checks ``notified`` before it waits (and then only
polls); a ``poll()`` from another thread that may have swallowed the break
re-posts it while ``notified`` is set.  (HACKING.md "Netpoller".)
"""

from .. import _hot

Poller = _hot.Poller
PollParker = Poller          # the name the tests and older notes use


def new_parker():
    """The parker a new P gets."""
    return Poller()

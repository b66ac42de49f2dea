"""Channels (Go's chan.go) and select (select.go): the Python face of the C
implementation in csrc/chan.c and csrc/select.c.

A channel has one lock guarding its buffer, its closed flag and its two FIFO
queues of waiting sudogs; a value goes straight from a sender to a waiting
receiver under that lock and the woken G is readied after it is released.
``select`` locks its channels in address order, polls the cases in a uniformly
random order and parks on all of them at once.  The invariants are in
csrc/runtime.h and ../HACKING.md; the executable sequential model that pins
the semantics is tests/test_chan_model.py.
"""

from .. import _hot


class Chan(_hot.ChanBase):
    """A Go channel.  ``chan(size=0)``."""

    __slots__ = ()

    def __repr__(self):
        if self._isnil:
            return "nilchan"
        return "<chan cap=%d len=%d%s>" % (self.cap(), len(self), " closed" if self._closed else "")

    def __iter__(self):
        recv_ = self.recv_
        while True:
            v, ok = recv_()
            if not ok:
                return
            yield v


class _Default:
    """The ``default`` select case."""
    __slots__ = ()

    def __repr__(self):
        return "default"


default = _Default()
nilchan = Chan(0, _nil=True)
"""The nil channel: never ready; closing it panics."""
select = _hot.select

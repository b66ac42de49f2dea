"""Channels (Go's chan.go) and select (select.go).

A channel has one lock guarding its buffer, its closed flag and its two FIFO
queues of waiting sudogs.  A value goes straight from a sender to a waiting
receiver (or the reverse) under that lock; the woken G is readied only after the
lock is released.  ``close`` completes every waiter with success=False.

A sudog whose ``sel`` is set belongs to a park that several wakers may race for
(a select, or a thread G whose wait an exception can cancel): the waker must win
``sel.acquire(False)`` first, and losers skip the sudog.  Such sudogs left on
other channels after the park completes are removed by their G when it wakes
(``_dequeue_stale``), or skipped and compacted lazily.
"""

import collections
import random
import threading
import time

from .g import Sudog, _Gwaiting, _Grunning
from .panic import PanicError
from . import proc
from .hot import _hot

_Lock = threading.Lock
_getrandbits = random.getrandbits
_monotonic = time.monotonic


def _park(g, sg, c, reason):
    """Park ``g`` waiting on sudog ``sg`` (already queued on ``c``); for thread
    Gs, undo the wait if an exception (Ctrl-C) interrupts it."""
    if not g.locked:
        proc.gopark(g, reason)
        return
    try:
        proc.gopark(g, reason)
    except BaseException:
        sel = sg.sel
        if sel.acquire(False):          # nobody completed us: withdraw
            with c._lock:
                _remove(c._recvq if sg.idx < 0 else c._sendq, sg)
        else:                           # a waker won: consume its wake token
            g.sema.acquire()
        g.status = _Grunning
        raise
    g.status = _Grunning


def _remove(q, sg):
    try:
        q.remove(sg)
    except ValueError:
        pass


class Chan:
    """A Go channel.  ``chan(size=0)``."""

    __slots__ = ("_lock", "_buf", "_cap", "_closed", "_recvq", "_sendq", "__weakref__")

    def __init__(self, size=0):
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError("chan: size must be an int, not %s" % type(size).__name__)
        if size < 0:
            raise ValueError("chan: size must be >= 0, got %d (makechan: size out of range)" % size)
        self._lock = _Lock()
        self._buf = collections.deque()
        self._cap = size
        self._closed = False
        self._recvq = collections.deque()    # sudogs of parked receivers (idx < 0 marks recv for _park)
        self._sendq = collections.deque()

    def __repr__(self):
        return "<chan cap=%d len=%d%s>" % (self._cap, len(self._buf), " closed" if self._closed else "")

    # -- send ---------------------------------------------------------------
    def send(self, v):
        lock = self._lock
        lock.acquire()
        if self._closed:
            lock.release()
            raise PanicError("send on closed channel")
        rq = self._recvq
        while rq:
            sg = rq.popleft()
            sel = sg.sel
            if sel is not None and not sel.acquire(False):
                continue
            sg.elem = v
            sg.success = True
            lock.release()
            g = sg.g
            g.param = sg
            proc.goready(g)
            return
        if len(self._buf) < self._cap:
            self._buf.append(v)
            lock.release()
            return
        g = proc.getg()
        if g is None:
            lock.release()
            raise RuntimeError("pygmp: channel send from the scheduler greenlet")
        sg = Sudog(g, v, self, _Lock() if g.locked else None, 1)
        self._sendq.append(sg)
        g.status = _Gwaiting
        g.waitsince = _monotonic()
        lock.release()
        _park(g, sg, self, "chan send")
        if not sg.success:
            raise PanicError("send on closed channel")

    # -- receive ------------------------------------------------------------
    def _recv(self):
        """Returns (value, ok)."""
        lock = self._lock
        lock.acquire()
        buf = self._buf
        sq = self._sendq
        while sq:
            sg = sq.popleft()
            sel = sg.sel
            if sel is not None and not sel.acquire(False):
                continue
            if buf:
                # full buffer: take the head, the sender's value goes to the tail
                v = buf.popleft()
                buf.append(sg.elem)
            else:
                v = sg.elem
            sg.elem = None
            sg.success = True
            lock.release()
            g = sg.g
            g.param = sg
            proc.goready(g)
            return v, True
        if buf:
            v = buf.popleft()
            lock.release()
            return v, True
        if self._closed:
            lock.release()
            return None, False
        g = proc.getg()
        if g is None:
            lock.release()
            raise RuntimeError("pygmp: channel receive from the scheduler greenlet")
        sg = Sudog(g, None, self, _Lock() if g.locked else None, -1)
        self._recvq.append(sg)
        g.status = _Gwaiting
        g.waitsince = _monotonic()
        lock.release()
        _park(g, sg, self, "chan receive")
        v = sg.elem
        sg.elem = None
        return v, sg.success

    def recv(self):
        return self._recv()[0]

    def recv_(self):
        return self._recv()

    # -- close --------------------------------------------------------------
    def close(self):
        lock = self._lock
        lock.acquire()
        if self._closed:
            lock.release()
            raise PanicError("close of closed channel")
        self._closed = True
        wake = []
        for q in (self._recvq, self._sendq):
            while q:
                sg = q.popleft()
                sel = sg.sel
                if sel is not None and not sel.acquire(False):
                    continue
                sg.elem = None
                sg.success = False
                wake.append(sg)
        lock.release()
        for sg in wake:
            g = sg.g
            g.param = sg
            proc.goready(g)

    # -- inspection ---------------------------------------------------------
    def __len__(self):
        return len(self._buf)

    def cap(self):
        return self._cap

    def __iter__(self):
        recv = self._recv
        while True:
            v, ok = recv()
            if not ok:
                return
            yield v

    def _drain(self):
        """Discard buffered values (timer channels on stop/reset); True if any."""
        with self._lock:
            had = bool(self._buf)
            self._buf.clear()
        return had

    def _try_send(self, v):
        """Send without blocking (timer channels); False if it would block."""
        lock = self._lock
        lock.acquire()
        if self._closed:
            lock.release()
            return False
        rq = self._recvq
        while rq:
            sg = rq.popleft()
            sel = sg.sel
            if sel is not None and not sel.acquire(False):
                continue
            sg.elem = v
            sg.success = True
            lock.release()
            g = sg.g
            g.param = sg
            proc.goready(g)
            return True
        if len(self._buf) < self._cap:
            self._buf.append(v)
            lock.release()
            return True
        lock.release()
        return False


class NilChan(Chan):
    """The nil channel: never ready."""
    __slots__ = ()

    def __init__(self):
        Chan.__init__(self, 0)

    def __repr__(self):
        return "nilchan"

    def send(self, v):
        proc.park_current("chan send (nil chan)")
        raise AssertionError("unreachable: nil channel send woke")

    def recv(self):
        proc.park_current("chan receive (nil chan)")
        raise AssertionError("unreachable: nil channel receive woke")

    def recv_(self):
        return self.recv()

    def close(self):
        raise PanicError("close of nil channel")

    def __iter__(self):
        while True:
            yield self.recv()


nilchan = NilChan()


# ---------------------------------------------------------------------------
# select

class _Default:
    """The ``default`` select case."""
    __slots__ = ()

    def __repr__(self):
        return "default"


default = _Default()

_RECV, _RECV_, _SEND = 0, 1, 2
_recv_names = {"recv": _RECV, "recv_": _RECV_}


def _parse(cases):
    """Return (list of (kind, chan, value), default index or -1)."""
    out = []
    dflt = -1
    for i, c in enumerate(cases):
        if c is default:
            if dflt >= 0:
                raise TypeError("select: multiple default cases")
            dflt = i
            out.append(None)
            continue
        if type(c) is tuple:
            if len(c) != 2:
                raise TypeError("select: case %d: a send case is (ch.send, value), got a %d-tuple" % (i, len(c)))
            m, v = c
            ch = getattr(m, "__self__", None)
            if not isinstance(ch, Chan) or getattr(m, "__name__", None) != "send":
                raise TypeError("select: case %d: a send case is (ch.send, value), got (%r, ...)" % (i, m))
            out.append((_SEND, ch, v))
            continue
        ch = getattr(c, "__self__", None)
        kind = _recv_names.get(getattr(c, "__name__", None)) if isinstance(ch, Chan) else None
        if kind is None:
            if isinstance(ch, Chan) and getattr(c, "__name__", None) == "send":
                raise TypeError("select: case %d: a send case is (ch.send, value), not ch.send alone" % i)
            raise TypeError("select: case %d: not a select case: %r (want ch.recv, ch.recv_, (ch.send, v) or default)" % (i, c))
        out.append((kind, ch, None))
    return out, dflt


def select(*cases):
    """Go's select.  Returns ``(index, value)``; see API.md."""
    parsed, dflt = _parse(cases)
    n = len(parsed)
    # poll order: a uniformly random permutation of the non-default, non-nil cases
    order = [i for i in range(n) if parsed[i] is not None and not isinstance(parsed[i][1], NilChan)]
    k = len(order)
    if k > 1:
        if k == 2:
            if _getrandbits(1):
                order[0], order[1] = order[1], order[0]
        else:
            random.shuffle(order)
    if k == 0:
        if dflt >= 0:
            return dflt, None
        proc.park_current("select (no cases)")
        raise AssertionError("unreachable: empty select woke")
    # lock order: by address, each channel once
    chans = []
    seen = set()
    for i in order:
        c = parsed[i][1]
        if id(c) not in seen:
            seen.add(id(c))
            chans.append(c)
    if len(chans) > 1:
        chans.sort(key=id)
    for c in chans:
        c._lock.acquire()

    # pass 1: look for a ready case in poll order
    for i in order:
        kind, c, v = parsed[i]
        if kind == _SEND:
            if c._closed:
                _unlock_all(chans)
                raise PanicError("send on closed channel")
            rq = c._recvq
            while rq:
                sg = rq.popleft()
                sel = sg.sel
                if sel is not None and not sel.acquire(False):
                    continue
                sg.elem = v
                sg.success = True
                _unlock_all(chans)
                g = sg.g
                g.param = sg
                proc.goready(g)
                return i, None
            if len(c._buf) < c._cap:
                c._buf.append(v)
                _unlock_all(chans)
                return i, None
        else:
            buf = c._buf
            sq = c._sendq
            while sq:
                sg = sq.popleft()
                sel = sg.sel
                if sel is not None and not sel.acquire(False):
                    continue
                if buf:
                    val = buf.popleft()
                    buf.append(sg.elem)
                else:
                    val = sg.elem
                sg.elem = None
                sg.success = True
                _unlock_all(chans)
                g = sg.g
                g.param = sg
                proc.goready(g)
                return i, ((val, True) if kind == _RECV_ else val)
            if buf:
                val = buf.popleft()
                _unlock_all(chans)
                return i, ((val, True) if kind == _RECV_ else val)
            if c._closed:
                _unlock_all(chans)
                return i, ((None, False) if kind == _RECV_ else None)

    if dflt >= 0:
        _unlock_all(chans)
        return dflt, None

    # pass 2: enqueue on every channel and park
    g = proc.getg()
    if g is None:
        _unlock_all(chans)
        raise RuntimeError("pygmp: select from the scheduler greenlet")
    sel = _Lock()
    sgs = []
    for i in order:
        kind, c, v = parsed[i]
        if kind == _SEND:
            sg = Sudog(g, v, c, sel, i)
            c._sendq.append(sg)
        else:
            sg = Sudog(g, None, c, sel, i)
            c._recvq.append(sg)
        sgs.append(sg)
    g.param = None
    g.status = _Gwaiting
    g.waitsince = _monotonic()
    _unlock_all(chans)
    try:
        proc.gopark(g, "select")
    except BaseException:
        # thread G interrupted (Ctrl-C): withdraw unless a waker already won
        if not sel.acquire(False):
            g.sema.acquire()
        g.status = _Grunning
        _dequeue_stale(chans, parsed, sgs, None)
        raise
    g.status = _Grunning
    win = g.param
    g.param = None
    # pass 3: dequeue from the channels that did not fire
    _dequeue_stale(chans, parsed, sgs, win)
    i = win.idx
    kind = parsed[i][0]
    if kind == _SEND:
        if not win.success:
            raise PanicError("send on closed channel")
        return i, None
    val = win.elem
    win.elem = None
    if kind == _RECV_:
        return i, (val, win.success)
    return i, val


def _unlock_all(chans):
    for c in chans:
        c._lock.release()


def _dequeue_stale(chans, parsed, sgs, win):
    for c in chans:
        c._lock.acquire()
    for sg in sgs:
        if sg is win:
            continue
        c = sg.c
        q = c._sendq if parsed[sg.idx][0] == _SEND else c._recvq
        # most often our sudog is the newest or oldest entry: O(1) there
        if q and q[-1] is sg:
            q.pop()
        elif q and q[0] is sg:
            q.popleft()
        else:
            _remove(q, sg)
    _unlock_all(chans)


# ---------------------------------------------------------------------------
# the C hot path (csrc/hot.c): same semantics, same names

if _hot is not None:
    _PyChan = Chan

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

    NilChan = Chan
    nilchan = Chan(0, _nil=True)
    select = _hot.select

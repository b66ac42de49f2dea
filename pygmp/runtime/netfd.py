"""Network file descriptors: Go's runtime pollDesc and internal/poll's FD
(fdMutex) in one object, ``FD``, over a non-blocking ``socket.socket``.

The I/O loop is Go's: try the syscall; on EAGAIN park on the pollDesc; retry
when readied.  Everything below is guarded by ``fd.lock`` (a leaf lock, except
that a deadline timer is armed/disarmed under it: fd.lock -> p.tlock/p.lock).

Per direction (read ``rg``, write ``wg``) the state is Go's:
    None       idle: nobody waits and no readiness is pending
    READY      an event arrived with nobody waiting (pdReady): the next wait
               consumes it and returns at once, so an edge that lands between
               EAGAIN and the park is never lost
    a _Waiter  a G is parked waiting (pdWait/G)
A waker (event, deadline timer, close) takes the waiter out of the slot under
the lock and readies its G after releasing it, so a G is readied at most once
per park.  Thread Gs (main thread, plain threads) park on their semaphore and
can be interrupted (Ctrl-C): their waiter carries a ``sel`` lock that a waker
must win first, and an interrupted G withdraws its waiter (as chan/sema do).

Events and reuse of fd numbers: the fd is registered (edge-triggered, both
directions) lazily, in the poller of the P of the first G that has to wait on
it (a thread G: a P picked by its thread id).  Its token is ``id << 16 | seq``;
``_pdtab`` maps id -> FD; close bumps ``seq`` and drops the id, so an event
queued for a closed fd whose number the kernel has reused is discarded and never
wakes the new owner.

fdMutex: read operations are serialized with each other, and so are write
operations (a FIFO of parked Gs per direction, handed the lock in turn); a
reader and a writer run concurrently.  ``refs`` counts operations in flight;
``close`` marks the FD closing, wakes both waiters with ``ErrClosed``, waits
for ``refs`` to drop to 0, unregisters the fd and only then closes it.

Deadlines (``rd``/``wd``): 0.0 none, > 0 a monotonic deadline armed as a
runtime timer, -1.0 passed.  A passed deadline fails the pending and every
later operation in that direction with ``TimeoutError`` until it is moved.

``Sched.nnetwait`` counts Gs parked here (an I/O wait, not a lock-queue wait),
so checkdead never fires while a network event could wake someone.
"""

import builtins
import errno
import itertools
import socket
import threading
import time
import weakref

from . import proc
from . import sema as _sema
from .g import _Gwaiting, _Grunning
from .timers import RTimer, addtimer, deltimer

_monotonic = time.monotonic
_walltime = time.time
_Lock = threading.Lock

READ = 0
WRITE = 1

_MSG_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)


class ErrClosed(OSError):
    """Use of a closed network connection or listener (Go's net.ErrClosed)."""

    def __init__(self, msg="use of closed network connection"):
        OSError.__init__(self, msg)


class TimeoutError(builtins.TimeoutError):
    """An I/O deadline passed (Go's os.ErrDeadlineExceeded, "i/o timeout")."""

    def __init__(self, msg="i/o timeout"):
        builtins.TimeoutError.__init__(self, msg)


class _Ready:
    __slots__ = ()

    def __repr__(self):
        return "pdReady"


READY = _Ready()

_ids = itertools.count(1)
# id -> weakref to the FD, for registered, open FDs.  Weak: a conn dropped
# without close() is collected (its socket closes the fd, which also leaves
# epoll) instead of being kept alive here.
_pdtab = {}

# counters (diagnostics, tests)
# ready_local / ready_remote: Gs readied by an I/O event on their home P's own
# thread vs from another thread (a thread hop: the HACKING.md measurement).
stats = {"accept_backoff": 0, "ready_local": 0, "ready_remote": 0}


class _Waiter:
    """A G parked on one direction of one FD."""
    __slots__ = ("g", "sel")

    def __init__(self, g):
        self.g = g
        self.sel = _Lock() if g.locked else None


def _claim(w):
    sel = w.sel
    return sel is None or sel.acquire(False)


def _take_locked(fd, mode):
    """Remove the waiter of ``mode`` (if any) and return it if we won it."""
    if mode == READ:
        st = fd.rg
        if st is None or st is READY:
            return None
        fd.rg = None
    else:
        st = fd.wg
        if st is None or st is READY:
            return None
        fd.wg = None
    return st if _claim(st) else None


def _netwait_add(n):
    s = proc._sched
    if s is not None:
        with s.lock:
            s.nnetwait += n


def _current_g():
    g = proc.getg()
    if g is None:
        raise RuntimeError("pygmp: network I/O from the scheduler greenlet")
    return g


def _parker_for(g):
    """The parker whose poller a fd first waited on by ``g`` registers in."""
    if not g.locked:
        p = g.home
        if p is not None:
            return p.parker
    s = proc._sched or proc.start()
    allp = s.allp
    return allp[threading.get_ident() % len(allp)].parker


def wall_to_mono(t):
    """An absolute time.time() deadline -> 0.0 (none), -1.0 (passed) or monotonic."""
    if t is None:
        return 0.0
    now = _monotonic()
    d = now + (t - _walltime())
    return d if d > now else -1.0


class FD:
    """A pollDesc + fdMutex around a non-blocking socket."""

    __slots__ = (
        "sock", "sysfd", "family", "lock", "rg", "wg", "rd", "wd", "rt", "wt",
        "rtseq", "wtseq", "closing", "closed", "refs", "rlocked", "wlocked",
        "rq", "wq", "closeq", "id", "seq", "token", "reg", "sched", "__weakref__",
    )

    def __init__(self, sock):
        sock.setblocking(False)
        self.sock = sock
        self.sysfd = sock.fileno()
        self.family = sock.family
        self.lock = _Lock()
        self.rg = None
        self.wg = None
        self.rd = 0.0
        self.wd = 0.0
        self.rt = None
        self.wt = None
        self.rtseq = -1
        self.wtseq = -1
        self.closing = False
        self.closed = False
        self.refs = 0
        self.rlocked = False
        self.wlocked = False
        self.rq = []              # parked Gs waiting for the read lock (sema.Waiter)
        self.wq = []
        self.closeq = []
        self.id = next(_ids)
        self.seq = 0
        self.token = self.id << 16
        self.reg = None           # the parker/poller this fd is registered on
        self.sched = None

    def __repr__(self):
        return "<FD %d%s>" % (self.sysfd, " closing" if self.closing else "")

    # -- errors ---------------------------------------------------------------
    def _err_locked(self, mode):
        if self.closing:
            return ErrClosed()
        d = self.rd if mode == READ else self.wd
        if d:
            if d < 0 or d <= _monotonic():
                return TimeoutError()
        return None

    # -- fdMutex ----------------------------------------------------------------
    def _lock_op(self, mode):
        """Start an operation in ``mode``: a reference, then the direction's lock
        (parking in FIFO order behind other readers/writers)."""
        lock = self.lock
        lock.acquire()
        if self.closing:
            lock.release()
            raise ErrClosed()
        self.refs += 1
        held = self.rlocked if mode == READ else self.wlocked
        if not held:
            if mode == READ:
                self.rlocked = True
            else:
                self.wlocked = True
            err = self._err_locked(mode)
            lock.release()
            if err is not None:
                self._unlock_op(mode)
                raise err
            return
        g = proc.getg()
        if g is None:
            self.refs -= 1
            lock.release()
            raise RuntimeError("pygmp: network I/O from the scheduler greenlet")
        w = _sema.Waiter(g)
        try:
            _sema.park_on(lock, self.rq if mode == READ else self.wq, w, "IO wait")
        except BaseException:
            if w.ok:                      # the lock was handed to us after all
                self._unlock_op(mode)
            else:
                self._drop_ref()
            raise
        # we hold the direction lock (handed over by _unlock_op)
        with lock:
            err = self._err_locked(mode)
        if err is not None:
            self._unlock_op(mode)
            raise err

    def _unlock_op(self, mode):
        lock = self.lock
        lock.acquire()
        q = self.rq if mode == READ else self.wq
        nxt = None
        while q:
            w = q.pop(0)
            if _sema.claim(w):
                nxt = w
                break
        if nxt is None:
            if mode == READ:
                self.rlocked = False
            else:
                self.wlocked = False
        self.refs -= 1
        closers = None
        if self.refs == 0 and self.closeq:
            closers = [w for w in self.closeq if _sema.claim(w)]
            self.closeq.clear()
        lock.release()
        if nxt is not None:
            _sema.wake(nxt)
        if closers:
            for w in closers:
                _sema.wake(w)

    def _drop_ref(self):
        lock = self.lock
        lock.acquire()
        self.refs -= 1
        closers = None
        if self.refs == 0 and self.closeq:
            closers = [w for w in self.closeq if _sema.claim(w)]
            self.closeq.clear()
        lock.release()
        if closers:
            for w in closers:
                _sema.wake(w)

    # -- the pollDesc wait -----------------------------------------------------
    def _register_locked(self, g):
        parker = _parker_for(g)
        reg = getattr(parker, "register", None)
        if reg is None:
            raise RuntimeError("pygmp.net: the compiled netpoller (pygmp.runtime._netpoll) "
                               "is not available")
        if self.reg is not None:
            self.reg.unregister(self.sysfd, self)
            self.reg = None
        fid = self.id
        if fid not in _pdtab:
            _pdtab[fid] = weakref.ref(self, lambda r, fid=fid: _pdtab.pop(fid, None))
        self.reg = reg(self.sysfd, self)
        self.sched = proc._sched

    def _wait(self, mode, until=0.0):
        """Park until ``mode`` is ready (or, with ``until``, that monotonic time
        passes).  Raises ErrClosed / TimeoutError; returns to retry the syscall."""
        g = _current_g()
        lock = self.lock
        lock.acquire()
        err = self._err_locked(mode)
        if err is not None:
            lock.release()
            raise err
        st = self.rg if mode == READ else self.wg
        if st is READY:
            if mode == READ:
                self.rg = None
            else:
                self.wg = None
            lock.release()
            return
        if st is not None:
            lock.release()
            raise RuntimeError("pygmp: two goroutines waiting on one fd direction")
        reg = self.reg
        if reg is None or reg.closed or self.sched is not proc._sched:
            try:
                self._register_locked(g)
            except BaseException:
                lock.release()
                raise
        w = _Waiter(g)
        # Count the wait before it is visible: once status is _Gwaiting a thread
        # G counts as parked for checkdead, so nnetwait must already cover it.
        _netwait_add(1)
        if mode == READ:
            self.rg = w
        else:
            self.wg = w
        g.status = _Gwaiting
        g.waitsince = _monotonic()
        lock.release()
        t = None
        if until:
            t = RTimer(_sleep_fire, (self, mode, w))
            addtimer(t, until)
        try:
            proc.gopark(g, "IO wait")
        except BaseException:
            # a thread G interrupted (Ctrl-C): withdraw, or consume the wake token
            if w.sel is not None and w.sel.acquire(False):
                with lock:
                    if mode == READ and self.rg is w:
                        self.rg = None
                    elif mode == WRITE and self.wg is w:
                        self.wg = None
            elif w.sel is not None:
                g.sema.acquire()
            g.status = _Grunning
            raise
        finally:
            _netwait_add(-1)
            if t is not None:
                deltimer(t)
        g.status = _Grunning
        if self.closing:
            raise ErrClosed()
        if self.rd if mode == READ else self.wd:
            with lock:
                err = self._err_locked(mode)
            if err is not None:
                raise err

    def _ready(self, tseq, r, w):
        """An event for this fd (netpollready); returns the number of Gs readied."""
        lock = self.lock
        lock.acquire()
        if (self.seq & 0xFFFF) != tseq or self.closing:
            lock.release()
            return 0
        rw = ww = None
        if r:
            st = self.rg
            if st is None:
                self.rg = READY
            elif st is not READY:
                self.rg = None
                if _claim(st):
                    rw = st
        if w:
            st = self.wg
            if st is None:
                self.wg = READY
            elif st is not READY:
                self.wg = None
                if _claim(st):
                    ww = st
        lock.release()
        n = 0
        if rw is not None:
            _count_hop(rw.g)
            proc.goready(rw.g)
            n += 1
        if ww is not None:
            _count_hop(ww.g)
            proc.goready(ww.g)
            n += 1
        return n

    # -- deadlines ------------------------------------------------------------------
    def set_deadline(self, t, read=True, write=True):
        """Set the read and/or write deadline to absolute time.time() ``t`` (None
        clears it).  A passed deadline wakes the pending operation."""
        d = wall_to_mono(t)
        wake = []
        lock = self.lock
        with lock:
            if self.closing:
                raise ErrClosed()
            if read:
                self._setdl_locked(READ, d, wake)
            if write:
                self._setdl_locked(WRITE, d, wake)
        for w in wake:
            proc.goready(w.g)

    def _setdl_locked(self, mode, d, wake):
        if mode == READ:
            t = self.rt
            if t is not None and t.active:
                deltimer(t)
            self.rd = d
            if d > 0:
                if t is None:
                    t = self.rt = RTimer(_deadline_fire, (self, READ))
                self.rtseq = addtimer(t, d)
        else:
            t = self.wt
            if t is not None and t.active:
                deltimer(t)
            self.wd = d
            if d > 0:
                if t is None:
                    t = self.wt = RTimer(_deadline_fire, (self, WRITE))
                self.wtseq = addtimer(t, d)
        if d < 0:
            w = _take_locked(self, mode)
            if w is not None:
                wake.append(w)

    # -- close ------------------------------------------------------------------------
    def close(self):
        """Close: wake both waiters with ErrClosed, wait for operations in flight,
        unregister and close the fd.  Idempotent."""
        lock = self.lock
        lock.acquire()
        if self.closing:
            lock.release()
            return
        self.closing = True
        self.seq += 1
        rw = _take_locked(self, READ)
        ww = _take_locked(self, WRITE)
        for t in (self.rt, self.wt):
            if t is not None and t.active:
                deltimer(t)
        lock.release()
        _pdtab.pop(self.id, None)
        if rw is not None:
            proc.goready(rw.g)
        if ww is not None:
            proc.goready(ww.g)
        lock.acquire()
        if self.refs:
            g = _current_g()
            w = _sema.Waiter(g)
            _sema.park_on(lock, self.closeq, w, "IO close")
        else:
            lock.release()
        reg = self.reg
        self.reg = None
        if reg is not None and self.sched is proc._sched:
            reg.unregister(self.sysfd, self)
        self.closed = True
        self.sock.close()

    # -- I/O ---------------------------------------------------------------------------
    def _io(self, mode, op, *args):
        """Go's I/O loop: hold the direction's fdMutex, try ``op(*args)``; on
        EAGAIN park on the pollDesc and retry when readied."""
        self._lock_op(mode)
        try:
            while True:
                try:
                    return op(*args)
                except (BlockingIOError, InterruptedError):
                    pass
                self._wait(mode)
        finally:
            self._unlock_op(mode)

    def recv(self, n, flags=0):
        return self._io(READ, self.sock.recv, n, flags)

    def recv_into(self, buf, nbytes=0, flags=0):
        return self._io(READ, self.sock.recv_into, buf, nbytes, flags)

    def recvfrom(self, n, flags=0):
        return self._io(READ, self.sock.recvfrom, n, flags)

    def send(self, data, flags=0):
        """Send some of ``data`` (at least one byte unless it is empty)."""
        return self._io(WRITE, self.sock.send, data, flags | _MSG_NOSIGNAL)

    def sendall(self, data, flags=0):
        """Send all of ``data``; returns its length."""
        self._lock_op(WRITE)
        try:
            send = self.sock.send
            flags |= _MSG_NOSIGNAL
            with memoryview(data) as view:
                view = view.cast("B") if view.ndim != 1 or view.format != "B" else view
                total = len(view)
                off = 0
                while True:
                    try:
                        off += send(view[off:] if off else view, flags)
                        if off >= total:
                            return total
                        continue
                    except (BlockingIOError, InterruptedError):
                        pass
                    self._wait(WRITE)
        finally:
            self._unlock_op(WRITE)

    def sendto(self, data, addr, flags=0):
        return self._io(WRITE, self.sock.sendto, data, flags, addr)

    def accept(self):
        """Accept a connection: (socket, address).  EMFILE/ENFILE (and kernel
        memory shortages) back off 5 ms, doubling up to 1 s, and retry, as Go's
        net/http server does, instead of spinning."""
        self._lock_op(READ)
        try:
            accept = self.sock._accept
            delay = 0.0
            while True:
                try:
                    fdnum, addr = accept()
                except (BlockingIOError, InterruptedError):
                    self._wait(READ)
                    continue
                except OSError as e:
                    if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                        delay = 0.005 if not delay else min(delay * 2, 1.0)
                        stats["accept_backoff"] += 1
                        self._backoff(delay)
                        continue
                    if e.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                        continue          # the peer gave up before we accepted
                    raise
                s = self.sock
                return socket.socket(s.family, s.type, s.proto, fileno=fdnum), addr
        finally:
            self._unlock_op(READ)

    def _backoff(self, delay):
        """Sleep ``delay`` s on the read direction: close or a deadline wake it."""
        until = _monotonic() + delay
        while True:
            self._wait(READ, until)
            if _monotonic() >= until:
                return

    def connect(self, addr):
        """Non-blocking connect: wait for writability, then SO_ERROR."""
        self._lock_op(WRITE)
        try:
            sock = self.sock
            while True:
                err = sock.connect_ex(addr)
                if err == 0 or err == errno.EISCONN:
                    return
                if err in (errno.EINPROGRESS, errno.EALREADY, errno.EINTR):
                    break
                raise OSError(err, "connect: " + _strerror(err))
            while True:
                self._wait(WRITE)
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err == 0:
                    try:
                        sock.getpeername()
                    except OSError:
                        continue          # spurious wake: not connected yet
                    return
                if err in (errno.EINPROGRESS, errno.EALREADY, errno.EINTR):
                    continue
                raise OSError(err, "connect: " + _strerror(err))
        finally:
            self._unlock_op(WRITE)


def _strerror(err):
    import os
    try:
        return os.strerror(err)
    except ValueError:
        return "error %d" % err


def _deadline_fire(arg, seq):
    fd, mode = arg
    lock = fd.lock
    lock.acquire()
    if (fd.rtseq if mode == READ else fd.wtseq) != seq or fd.closing:
        lock.release()
        return
    if mode == READ:
        if fd.rd <= 0:
            lock.release()
            return
        fd.rd = -1.0
    else:
        if fd.wd <= 0:
            lock.release()
            return
        fd.wd = -1.0
    w = _take_locked(fd, mode)
    lock.release()
    if w is not None:
        proc.goready(w.g)


def _sleep_fire(arg, seq):
    fd, mode, w = arg
    with fd.lock:
        if mode == READ:
            if fd.rg is not w:
                return
            fd.rg = None
        else:
            if fd.wg is not w:
                return
            fd.wg = None
        if not _claim(w):
            return
    proc.goready(w.g)


def _count_hop(g):
    try:
        m = proc._tls.m
    except AttributeError:
        m = None
    if m is not None and not g.locked and m.p is g.home:
        stats["ready_local"] += 1
    else:
        stats["ready_remote"] += 1


def netpollready(evs):
    """Dispatch ``Poller.wait`` events: ready the Gs waiting on them.  Returns the
    number of Gs readied.  Called by the parkers, from any thread."""
    n = 0
    get = _pdtab.get
    for token, r, w in evs:
        ref = get(token >> 16)
        if ref is not None:
            fd = ref()
            if fd is not None:
                n += fd._ready(token & 0xFFFF, r, w)
    return n


def poller_gone(fd, reg):
    """``reg``'s poller closed (its P retired) while ``fd`` was registered there:
    forget the registration and wake the waiters so they register again."""
    with fd.lock:
        if fd.reg is not reg:
            return
        fd.reg = None
        rw = _take_locked(fd, READ)
        ww = _take_locked(fd, WRITE)
    if rw is not None:
        proc.goready(rw.g)
    if ww is not None:
        proc.goready(ww.g)

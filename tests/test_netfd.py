"""pygmp.runtime.netfd: the pollDesc state machine, tokens and fd reuse, the
parker (netpoller) integration, and nnetwait accounting."""
import os
import socket
import sys
import threading
import time
import weakref

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _helpers import recv_timeout, wait_until  # noqa: E402

from pygmp import chan, go  # noqa: E402
from pygmp import net  # noqa: E402
from pygmp.runtime import netfd, park, proc  # noqa: E402

pytestmark = pytest.mark.timeout(20)

needs_poller = pytest.mark.skipif(not hasattr(park, "PollParker"), reason="no netpoller")


def _register(fd, pk):
    netfd._pdtab[fd.id] = weakref.ref(fd)
    fd.reg = pk.register(fd.sysfd, fd)
    fd.sched = proc._sched


def test_parkers_are_pollparkers():
    s = proc._sched or proc.start()
    for p in s.allp:
        assert isinstance(p.parker, (park.PollParker, park.SharedPollParker))
        assert p.parker.p is p


def test_pollparker_unpark_before_park_is_kept():
    pk = park.PollParker()
    try:
        pk.unpark()
        t0 = time.monotonic()
        pk.park(5)
        assert time.monotonic() - t0 < 1
        t0 = time.monotonic()
        pk.park(0.05)                      # no token now: waits the timeout
        assert time.monotonic() - t0 >= 0.04
        # a poll() from another thread that swallows the break must re-post it
        pk.unpark()
        assert pk.poll() == 0
        t0 = time.monotonic()
        pk.park(5)
        assert time.monotonic() - t0 < 1
    finally:
        pk.close()


def test_pollparker_unpark_from_other_thread_breaks_park():
    pk = park.PollParker()
    try:
        threading.Timer(0.1, pk.unpark).start()
        t0 = time.monotonic()
        pk.park(None)
        assert 0.05 < time.monotonic() - t0 < 3
    finally:
        pk.close()


def test_poll_returns_zero_while_another_thread_waits():
    pk = park.PollParker()
    try:
        t = threading.Thread(target=pk.park, args=(0.5,))
        t.start()
        time.sleep(0.1)
        assert pk.poll() == 0              # non-blocking, no RuntimeError
        pk.unpark()
        t.join(5)
    finally:
        pk.close()


def test_event_with_nobody_waiting_leaves_ready():
    pk = park.PollParker()
    a, b = socket.socketpair()
    fd = netfd.FD(a)
    try:
        _register(fd, pk)
        b.send(b"x")
        time.sleep(0.01)
        pk.poll()
        assert fd.rg is netfd.READY       # pdReady: the next wait returns at once
        assert fd.wg is netfd.READY       # a fresh socket is writable
        fd._wait(netfd.READ)              # consumes it without parking
        assert fd.rg is None
        assert fd.recv(10) == b"x"
    finally:
        fd.close()
        b.close()
        pk.close()


def test_stale_event_for_reused_fd_number_is_dropped():
    pk = park.PollParker()
    a, b = socket.socketpair()
    fd1 = netfd.FD(a)
    _register(fd1, pk)
    b.send(b"x")
    time.sleep(0.01)
    evs = pk._poller.wait(0)              # fetched, not dispatched yet
    assert any(tok == fd1.token for tok, r, w in evs)
    num = fd1.sysfd
    old_seq = fd1.seq & 0xFFFF
    fd1.close()
    assert fd1._ready(old_seq, True, True) == 0
    keep = []
    fd2 = None
    try:
        for _ in range(20):                # get the same fd number again
            c, d = socket.socketpair()
            keep += [c, d]
            if c.fileno() == num:
                fd2 = netfd.FD(c)
                break
        if fd2 is None:
            pytest.skip("fd number %d not reused" % num)
        _register(fd2, pk)
        pk._poller.wait(0)                # drain fd2's own registration events
        fd2.rg = fd2.wg = None
        assert netfd.netpollready(evs) == 0   # the stale event wakes nobody...
        assert fd2.rg is None and fd2.wg is None   # ...and marks nothing ready
    finally:
        if fd2 is not None:
            fd2.close()
        for s in keep:
            s.close()
        b.close()
        pk.close()


def test_stale_event_never_wakes_new_owner_goroutine():
    """Close a conn with an event in flight, reuse its fd number for a new conn
    whose reader parks: only real data wakes that reader."""
    ln = net.listen("tcp", "127.0.0.1:0")
    got = chan(10)

    def srv():
        while True:
            try:
                c = ln.accept()
            except net.ErrClosed:
                return
            go(lambda c=c: got.send(c))

    go(srv)
    for _ in range(20):
        c1 = net.dial("tcp", ln.addr())
        p1 = recv_timeout(got)
        p1.write(b"event for c1")
        c1.close()
        c2 = net.dial("tcp", ln.addr())
        p2 = recv_timeout(got)
        res = chan(1)
        go(lambda: res.send(c2.read(100)))
        time.sleep(0.02)
        p2.write(b"real")
        assert recv_timeout(res, 5) == b"real"
        c2.close()
        p1.close()
        p2.close()
    ln.close()


def test_nnetwait_counts_parked_waiters():
    s = proc._sched or proc.start()
    base = s.nnetwait
    a, b = socket.socketpair()
    fd = netfd.FD(a)
    res = chan(1)
    go(lambda: res.send(fd.recv(10)))
    wait_until(lambda: s.nnetwait == base + 1, what="nnetwait +1")
    b.send(b"q")
    assert recv_timeout(res) == b"q"
    wait_until(lambda: s.nnetwait == base, what="nnetwait back")
    fd.close()
    b.close()


def test_close_waits_for_operations_in_flight():
    a, b = socket.socketpair()
    fd = netfd.FD(a)
    res = chan(2)

    def reader():
        try:
            fd.recv(10)
        except netfd.ErrClosed:
            res.send("closed")

    go(reader)
    time.sleep(0.05)
    fd.close()
    assert recv_timeout(res) == "closed"
    assert fd.refs == 0 and fd.closed
    assert a.fileno() == -1               # the socket itself was closed last
    b.close()


def test_serialized_readers_each_get_data():
    a, b = socket.socketpair()
    fd = netfd.FD(a)
    res = chan(4)
    for _ in range(4):
        go(lambda: res.send(fd.recv(1)))
    time.sleep(0.05)
    for ch in b"abcd":
        b.send(bytes([ch]))
        time.sleep(0.01)
    got = sorted(recv_timeout(res) for _ in range(4))
    assert got == [b"a", b"b", b"c", b"d"]
    fd.close()
    b.close()

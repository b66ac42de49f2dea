"""Tests of the C netpoller through pygmp.runtime.netpoll.Poller, on real sockets."""

import errno
import os
import socket
import sys
import threading
import time

import pytest

from pygmp.runtime import netpoll
from pygmp.runtime.netpoll import Poller

pytestmark = pytest.mark.timeout(10)


@pytest.fixture
def poller():
    p = Poller()
    yield p
    p.close()


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def tcp_pair():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    c = socket.create_connection(srv.getsockname(), timeout=5)
    s, _ = srv.accept()
    srv.close()
    c.setblocking(False)
    s.setblocking(False)
    yield c, s
    c.close()
    s.close()


def events(p, timeout=1.0):
    """{token: (readable, writable)} merged over one wait (kqueue may split them)."""
    out = {}
    for tok, r, w in p.wait(timeout):
        r0, w0 = out.get(tok, (False, False))
        out[tok] = (r0 or r, w0 or w)
    return out


def drain(sock):
    n = 0
    while True:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return n
        if not data:
            return n
        n += len(data)


def test_installed_extension_is_used():
    # pytest must import the installed package (with the compiled module), not
    # the source tree, which has no _netpoll.
    import pygmp.runtime._netpoll as mod

    assert mod.lib.NP_READ == 1 and mod.lib.NP_WRITE == 2
    expected = "epoll" if sys.platform.startswith("linux") else "kqueue"
    if os.environ.get("PYGMP_BUILD_NETPOLL"):
        expected = os.environ["PYGMP_BUILD_NETPOLL"]
    assert netpoll.BACKEND == expected
    assert os.path.dirname(mod.__file__) == os.path.dirname(netpoll.__file__)


def test_gil_released_in_wait():
    # A thread blocked in wait() must let other Python threads run.
    p = Poller()
    try:
        t = threading.Thread(target=p.wait, args=(0.5,))
        t.start()
        time.sleep(0.05)
        count = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.1:
            count += 1
        assert count > 1000
        t.join()
    finally:
        p.close()


def test_write_ready_on_register(poller, pair):
    a, _ = pair
    poller.add(a.fileno(), 7)
    ev = events(poller)
    assert ev == {7: (False, True)}


def test_read_ready(poller, pair):
    a, b = pair
    poller.add(a.fileno(), 1)
    assert events(poller) == {1: (False, True)}
    b.send(b"hello")
    ev = events(poller)
    assert ev.get(1, (False, False))[0] is True
    assert a.recv(100) == b"hello"


def test_tokens_distinguish_fds(poller, pair, tcp_pair):
    a, b = pair
    c, s = tcp_pair
    big = 2**64 - 2
    poller.add(a.fileno(), 0)
    poller.add(c.fileno(), big)
    ev = events(poller)
    assert set(ev) == {0, big}
    s.send(b"x")
    ev = events(poller)
    assert ev.get(big, (False, False))[0] and 0 not in ev


def test_edge_triggered_no_repeat(poller, pair):
    a, b = pair
    poller.add(a.fileno(), 3)
    assert 3 in events(poller)          # initial writability edge
    assert poller.wait(0) == []         # level-triggered would repeat it
    b.send(b"abc")
    assert events(poller)[3][0] is True
    # Data not consumed and none new: no new edge.
    assert poller.wait(0.05) == []
    assert poller.wait(0) == []
    # New data arriving is a new edge, even before the old data was read.
    b.send(b"def")
    assert events(poller)[3][0] is True
    assert drain(a) == 6
    assert poller.wait(0.05) == []


def test_write_edge_after_eagain(poller, tcp_pair):
    c, s = tcp_pair
    poller.add(c.fileno(), 9)
    assert events(poller) == {9: (False, True)}
    # Fill the send path until EAGAIN.
    chunk = b"x" * 65536
    with pytest.raises(BlockingIOError):
        for _ in range(100000):
            c.send(chunk)
    assert poller.wait(0.05) == []
    # The reader drains: writable again is a new edge.
    deadline = time.monotonic() + 5
    got_write = False
    while not got_write and time.monotonic() < deadline:
        drain(s)
        got_write = events(poller, 0.05).get(9, (False, False))[1]
    assert got_write


def test_wait_timeout_honoured(poller, pair):
    a, _ = pair
    t0 = time.monotonic()
    assert poller.wait(0.2) == []
    dt = time.monotonic() - t0
    assert 0.19 <= dt < 2.0
    t0 = time.monotonic()
    assert poller.wait(0) == []
    assert time.monotonic() - t0 < 0.5
    t0 = time.monotonic()
    assert poller.wait(-1) == []        # negative polls
    assert time.monotonic() - t0 < 0.5
    t0 = time.monotonic()
    assert poller.wait(0.0001) == []    # rounded up to 1 ms, not a busy poll
    assert time.monotonic() - t0 < 0.5


def test_timeout_conversion():
    conv = netpoll._timeout_ms
    assert conv(None) == -1
    assert conv(0) == 0 and conv(-3) == 0
    assert conv(0.0001) == 1 and conv(0.001) == 1 and conv(0.0011) == 2
    assert conv(2.5) == 2500
    assert conv(1e12) == 2**31 - 1


def test_wake_from_other_thread(poller):
    res = {}

    def waiter():
        t0 = time.monotonic()
        res["ev"] = poller.wait(None)
        res["dt"] = time.monotonic() - t0

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.1)
    assert t.is_alive()
    t1 = time.monotonic()
    poller.wake()
    t.join(5)
    assert not t.is_alive()
    assert res["ev"] == []
    assert time.monotonic() - t1 < 1.0


def test_wake_before_wait(poller):
    poller.wake()
    t0 = time.monotonic()
    assert poller.wait(None) == []
    assert time.monotonic() - t0 < 1.0
    # Consumed: the next wait times out normally.
    t0 = time.monotonic()
    assert poller.wait(0.1) == []
    assert time.monotonic() - t0 >= 0.09


def test_wakes_coalesce(poller):
    for _ in range(10000):
        poller.wake()
    assert poller.wait(None) == []
    t0 = time.monotonic()
    assert poller.wait(0.1) == []
    assert time.monotonic() - t0 >= 0.09


def test_wake_is_not_lost_under_contention(poller):
    # Many threads wake while the owner loops on wait(None): every round
    # must end, i.e. no wake may be swallowed by the coalescing flag.
    rounds = 300
    go = threading.Event()
    stop = threading.Event()
    done = []

    def waker():
        go.wait()
        while not stop.is_set():
            poller.wake()
            time.sleep(0)

    threads = [threading.Thread(target=waker) for _ in range(4)]
    for t in threads:
        t.start()
    go.set()
    try:
        for i in range(rounds):
            poller.wait(None)
            done.append(i)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert len(done) == rounds
    # After the storm, one more wake still gets through.
    poller.wait(0)
    poller.wake()
    t0 = time.monotonic()
    poller.wait(None)
    assert time.monotonic() - t0 < 1.0


def test_event_wakes_blocked_waiter(poller, pair):
    a, b = pair
    poller.add(a.fileno(), 5)
    poller.wait(1)  # consume the initial write edge
    res = {}

    def waiter():
        res["ev"] = poller.wait(None)

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.05)
    b.send(b"ping")
    t.join(5)
    assert not t.is_alive()
    assert any(tok == 5 and r for tok, r, _ in res["ev"])


def test_delete_stops_events(poller, pair):
    a, b = pair
    poller.add(a.fileno(), 2)
    events(poller)
    poller.delete(a.fileno())
    b.send(b"data")
    assert poller.wait(0.1) == []
    # Re-adding works and reports the pending data (a fresh registration).
    poller.add(a.fileno(), 4)
    ev = events(poller)
    assert ev.get(4, (False, False))[0] is True


def test_peer_close_reports_read(poller, pair):
    a, b = pair
    poller.add(a.fileno(), 11)
    events(poller)
    b.close()
    ev = events(poller)
    assert ev.get(11, (False, False))[0] is True
    assert a.recv(10) == b""


def test_peer_shutdown_wr_tcp(poller, tcp_pair):
    c, s = tcp_pair
    poller.add(c.fileno(), 12)
    events(poller)
    s.shutdown(socket.SHUT_WR)
    ev = events(poller)
    assert ev.get(12, (False, False))[0] is True
    assert c.recv(10) == b""


def test_reset_reports_read_and_write(poller, tcp_pair):
    c, s = tcp_pair
    poller.add(c.fileno(), 13)
    events(poller)
    # Close with unread data -> RST to c; both directions must wake.
    c.send(b"unread")
    time.sleep(0.05)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()
    deadline = time.monotonic() + 5
    seen_r = seen_w = False
    while not (seen_r and seen_w) and time.monotonic() < deadline:
        for tok, r, w in poller.wait(0.2):
            if tok == 13:
                seen_r |= r
                seen_w |= w
    assert seen_r and seen_w
    try:
        data = c.recv(10)
    except OSError:  # ECONNRESET (a kqueue emulation may have consumed SO_ERROR)
        pass
    else:
        assert data == b""


def test_errors_raise_oserror(poller, pair):
    a, _ = pair
    r, w = os.pipe()
    os.close(w)
    os.close(r)
    with pytest.raises(OSError) as ei:
        poller.add(r, 1)           # closed fd
    assert ei.value.errno == errno.EBADF
    with pytest.raises(OSError) as ei:
        poller.delete(a.fileno())  # never registered
    assert ei.value.errno in (errno.ENOENT, errno.EBADF)
    with pytest.raises(OSError):
        poller.add(-1, 1)
    if netpoll.BACKEND == "epoll":
        poller.add(a.fileno(), 1)
        with pytest.raises(FileExistsError):
            poller.add(a.fileno(), 2)
        # epoll refuses regular files
        with open(__file__, "rb") as f, pytest.raises(OSError) as ei:
            poller.add(f.fileno(), 3)
        assert ei.value.errno == errno.EPERM


def test_token_range(poller, pair):
    a, _ = pair
    with pytest.raises(ValueError):
        poller.add(a.fileno(), -1)
    with pytest.raises(ValueError):
        poller.add(a.fileno(), 2**64 - 1)
    with pytest.raises((ValueError, OverflowError, TypeError)):
        poller.add(a.fileno(), 2**64)


def test_close_semantics(pair):
    a, _ = pair
    p = Poller()
    assert not p.closed
    p.close()
    p.close()  # idempotent
    assert p.closed
    p.wake()   # no-op after close
    with pytest.raises(ValueError):
        p.wait(0)
    with pytest.raises(ValueError):
        p.add(a.fileno(), 1)
    with pytest.raises(ValueError):
        p.delete(a.fileno())
    with Poller() as q:
        assert not q.closed
    assert q.closed
    with pytest.raises(ValueError):
        Poller(max_events=0)


def test_wait_is_single_caller_and_close_refused_while_waiting(poller):
    started = threading.Event()

    def waiter():
        started.set()
        poller.wait(None)

    t = threading.Thread(target=waiter)
    t.start()
    started.wait()
    time.sleep(0.05)
    with pytest.raises(RuntimeError):
        poller.wait(0)
    with pytest.raises(RuntimeError):
        poller.close()
    poller.wake()
    t.join(5)
    assert not t.is_alive()


def test_many_fds_more_than_buffer():
    p = Poller(max_events=4)
    socks = [socket.socketpair() for _ in range(10)]
    try:
        for i, (x, _) in enumerate(socks):
            x.setblocking(False)
            p.add(x.fileno(), 100 + i)
        seen = set()
        for _ in range(20):
            evs = p.wait(0)
            assert len(evs) <= 4
            seen.update(tok for tok, _, _ in evs)
            if len(seen) == 10:
                break
        assert seen == set(range(100, 110))
    finally:
        p.close()
        for x, y in socks:
            x.close()
            y.close()


def test_pollers_are_independent(pair):
    a, b = pair
    p1, p2 = Poller(), Poller()
    try:
        p1.add(a.fileno(), 1)
        p2.wake()
        assert events(p1) == {1: (False, True)}
        assert p1.wait(0) == []
        assert p2.wait(0) == []  # consumes its wake
        assert p2.wait(0) == []
    finally:
        p1.close()
        p2.close()

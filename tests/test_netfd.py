"""The network core in C (csrc/netfd.c, csrc/netpoll.c) through
pygmp.runtime.netfd: the pollDesc state machine, tokens and fd-number reuse,
the per-P poller (parker), deadlines, close, fdMutex, the per-P wait count,
and thread Gs interrupted while parked on a socket."""
import errno
import os
import signal
import socket
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _helpers import (gomaxprocs_set, in_goroutine, recv_timeout, spawn_script,  # noqa: E402
                      wait_until)

from pygmp import chan, go  # noqa: E402
from pygmp import net  # noqa: E402
from pygmp.runtime import netfd, park, proc  # noqa: E402

pytestmark = pytest.mark.timeout(30)


def _pair():
    a, b = socket.socketpair()
    return netfd.fd_from(a), b


def _park_reader(fd, n=10):
    """A goroutine parked reading ``fd``; returns a chan of its result (bytes
    or the exception).  Returns once the reader is parked on the pollDesc."""
    res = chan(1)

    def reader():
        try:
            res.send(fd.recv(n))
        except Exception as e:  # noqa: BLE001 - handed to the test
            res.send(e)

    go(reader)
    wait_until(lambda: fd._pdstate()[0] == "wait", what="reader parked")
    return res


# -- the parker (Poller) ---------------------------------------------------------

def test_parkers_are_pollers_bound_to_their_p():
    s = proc._sched or proc.start()
    for p in s.allp:
        assert isinstance(p.parker, park.Poller)
        assert p.parker.p is p


def test_unpark_before_park_is_kept():
    pk = park.Poller()
    try:
        pk.unpark()
        t0 = time.monotonic()
        pk.park(5)
        assert time.monotonic() - t0 < 1
        t0 = time.monotonic()
        pk.park(0.05)                      # no token now: waits the timeout
        assert time.monotonic() - t0 >= 0.04
        # a poll() (any thread) that swallows the break must re-post it
        pk.unpark()
        assert pk.poll() == 0
        t0 = time.monotonic()
        pk.park(5)
        assert time.monotonic() - t0 < 1
    finally:
        pk.close()


def test_unpark_from_other_thread_breaks_park():
    pk = park.Poller()
    try:
        threading.Timer(0.1, pk.unpark).start()
        t0 = time.monotonic()
        pk.park(None)
        assert 0.05 < time.monotonic() - t0 < 3
    finally:
        pk.close()


def test_poll_returns_zero_while_another_thread_waits():
    pk = park.Poller()
    try:
        t = threading.Thread(target=pk.park, args=(0.5,))
        t.start()
        time.sleep(0.1)
        assert pk.poll() == 0              # non-blocking
        pk.unpark()
        t.join(5)
    finally:
        pk.close()
    assert pk.closed
    pk.close()                             # idempotent
    pk.unpark()                            # harmless once closed
    assert pk.poll() == 0


# -- pollDesc states, tokens, fd reuse ----------------------------------------------

def test_event_with_nobody_waiting_leaves_ready():
    fd, b = _pair()
    try:
        res = _park_reader(fd)             # registers the fd in the reader's P's poller
        b.send(b"x")
        assert recv_timeout(res) == b"x"
        assert fd._pdstate()[0] is None    # the wake consumed the edge
        b.send(b"y")                       # nobody waits: the poller marks pdReady
        wait_until(lambda: fd._pdstate()[0] == "ready", what="pdReady")
        assert in_goroutine(fd.recv, 10) == b"y"
    finally:
        fd.close()
        b.close()


def test_stale_event_for_closed_fd_is_dropped():
    fd1, b1 = _pair()
    res = _park_reader(fd1)
    b1.send(b"x")
    assert recv_timeout(res) == b"x"
    token = fd1._pdstate()[2]
    num = fd1.fileno()
    fd1.close()
    assert _hot_inject(token) == 0         # an event fetched before the close
    keep = []
    fd2 = None
    try:
        for _ in range(20):                # the same fd number (and pollDesc) again
            c, d = socket.socketpair()
            if c.fileno() == num:
                fd2 = netfd.fd_from(c)
                keep.append(d)
                break
            keep += [c, d]
        if fd2 is None:
            pytest.skip("fd number %d not reused" % num)
        res2 = _park_reader(fd2)
        assert fd2._pdstate()[2] != token  # fdseq moved on
        assert _hot_inject(token) == 0     # the stale event wakes nobody...
        assert fd2._pdstate()[0] == "wait"  # ...and marks nothing ready
        keep[-1].send(b"real")
        assert recv_timeout(res2) == b"real"
    finally:
        if fd2 is not None:
            fd2.close()
        for s in keep:
            s.close()
        b1.close()


def _hot_inject(token):
    from pygmp import _hot
    return _hot.netpoll_inject(token, True, True)


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


def test_fd_number_reuse_after_close():
    """A closed FD keeps failing with ErrClosed while a new FD owns its number,
    and the old FD's armed deadline never touches the new one."""
    fd1, b1 = _pair()
    num = fd1.fileno()
    fd1.set_deadline(time.time() + 0.2)
    fd1.close()
    assert fd1.closed and fd1.fileno() == -1
    with pytest.raises(net.ErrClosed):
        fd1.recv(1)
    with pytest.raises(net.ErrClosed):
        fd1.set_deadline(None)
    keep, fd2 = [], None
    for _ in range(20):
        c, d = socket.socketpair()
        if c.fileno() == num:
            fd2 = netfd.fd_from(c)
            keep.append(d)
            break
        keep += [c, d]
    try:
        if fd2 is None:
            pytest.skip("fd number %d not reused" % num)
        res = _park_reader(fd2)
        time.sleep(0.4)                    # fd1's deadline fires meanwhile: stale
        assert fd2._pdstate()[0] == "wait"
        keep[-1].send(b"z")
        assert recv_timeout(res) == b"z"
    finally:
        if fd2 is not None:
            fd2.close()
        for s in keep:
            s.close()
        b1.close()


# -- the wait count (checkdead) ----------------------------------------------------

def test_nnetwait_counts_parked_waiters():
    s = proc._sched or proc.start()
    base = s.nnetwait
    fd, b = _pair()
    res = _park_reader(fd)
    wait_until(lambda: s.nnetwait == base + 1, what="nnetwait +1")
    b.send(b"q")
    assert recv_timeout(res) == b"q"
    wait_until(lambda: s.nnetwait == base, what="nnetwait back")
    fd.close()
    b.close()


# -- close -------------------------------------------------------------------------

def test_close_waits_for_operations_in_flight():
    fd, b = _pair()
    res = _park_reader(fd)
    fd.close()
    assert isinstance(recv_timeout(res), net.ErrClosed)
    assert fd.refs == 0 and fd.closed
    assert fd.fileno() == -1               # the fd number itself was closed last
    b.close()


def test_close_while_parked_in_read_and_write():
    fd, b = _pair()
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    res = _park_reader(fd)
    wres = chan(1)

    def writer():
        try:
            fd.write(b"w" * (8 << 20))     # fills the buffers, then parks
            wres.send("done")
        except Exception as e:  # noqa: BLE001
            wres.send(e)

    go(writer)
    wait_until(lambda: fd._pdstate()[1] == "wait", what="writer parked")
    closed = chan(1)
    go(lambda: (fd.close(), closed.send(True)))
    assert isinstance(recv_timeout(res), net.ErrClosed)
    assert isinstance(recv_timeout(wres), net.ErrClosed)
    assert recv_timeout(closed)
    assert fd.closed and fd.refs == 0
    fd.close()                             # again: nothing
    b.close()


def test_close_wakes_readers_queued_on_the_fd_mutex():
    fd, b = _pair()
    res = chan(4)
    for _ in range(4):
        go(lambda: res.send(_try(fd.recv, 1)))
    wait_until(lambda: fd.refs == 4, what="4 readers in")
    fd.close()
    got = [recv_timeout(res) for _ in range(4)]
    assert all(isinstance(e, net.ErrClosed) for e in got), got
    assert fd.closed
    b.close()


def _try(f, *a):
    try:
        return f(*a)
    except Exception as e:  # noqa: BLE001
        return e


def test_serialized_readers_each_get_data():
    fd, b = _pair()
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


# -- deadlines ---------------------------------------------------------------------

def test_deadline_passing_wakes_parked_reader_then_moves():
    fd, b = _pair()
    fd.set_deadline(time.time() + 0.1, True, False)
    t0 = time.monotonic()
    res = _park_reader(fd)
    assert isinstance(recv_timeout(res), net.TimeoutError)
    assert 0.05 <= time.monotonic() - t0 < 3
    with pytest.raises(net.TimeoutError):  # later operations fail too...
        in_goroutine(fd.recv, 1)
    fd.set_deadline(None)                  # ...until the deadline moves
    b.send(b"k")
    assert in_goroutine(fd.recv, 1) == b"k"
    fd.close()
    b.close()


def test_deadline_in_the_past_fails_a_parked_write():
    fd, b = _pair()
    wres = chan(1)
    go(lambda: wres.send(_try(fd.write, b"w" * (8 << 20))))
    wait_until(lambda: fd._pdstate()[1] == "wait", what="writer parked")
    fd.set_deadline(time.time() - 1, False, True)
    assert isinstance(recv_timeout(wres), net.TimeoutError)
    assert fd._pdstate()[0] is None        # the read side is untouched
    fd.close()
    b.close()


def test_deadline_moved_repeatedly_while_parked():
    """Deadline races: the timer armed by each set is superseded by the next;
    only the last one may fire, and data arriving first wins."""
    fd, b = _pair()
    res = _park_reader(fd)
    for i in range(200):
        fd.set_deadline(time.time() + 0.05 + (i % 7) * 0.001, True, False)
    fd.set_deadline(time.time() + 5, True, False)
    time.sleep(0.2)                        # the superseded timers fire: stale
    assert fd._pdstate()[0] == "wait"
    b.send(b"data")
    assert recv_timeout(res) == b"data"
    fd.close()
    b.close()


def test_deadline_racing_data_never_hangs():
    fd, b = _pair()
    for i in range(100):
        res = _park_reader(fd, 1)
        d = time.time() + 0.002
        fd.set_deadline(d, True, False)
        while time.time() < d:
            pass
        b.send(b"x")
        r = recv_timeout(res, 5, "reader %d" % i)
        assert r == b"x" or isinstance(r, net.TimeoutError), r
        fd.set_deadline(None)
        if r != b"x":
            assert in_goroutine(fd.recv, 1) == b"x"
    fd.close()
    b.close()


def test_set_deadline_from_many_goroutines_at_once():
    fd, b = _pair()
    done = chan(50)
    for i in range(50):
        go(lambda i=i: (fd.set_deadline(time.time() + 0.02 * (1 + i % 3)), done.send(i)))
    for _ in range(50):
        recv_timeout(done)
    t0 = time.monotonic()
    res = _park_reader(fd)
    assert isinstance(recv_timeout(res), net.TimeoutError)
    assert time.monotonic() - t0 < 3
    fd.close()
    b.close()


# -- many conns across Ps -----------------------------------------------------------

def test_many_conns_across_ps():
    with gomaxprocs_set(2):
        ln = net.listen("tcp", "127.0.0.1:0")

        def serve(c):
            with c:
                while d := c.read(4096):
                    c.write(d)

        def acceptor():
            while True:
                try:
                    c = ln.accept()
                except net.ErrClosed:
                    return
                go(serve, c)

        go(acceptor)
        n = 200
        done = chan(n)

        def client(i):
            try:
                c = net.dial("tcp", ln.addr())
                with c:
                    for k in range(20):
                        msg = b"%d:%d;" % (i, k)
                        c.write(msg)
                        got = b""
                        while len(got) < len(msg):
                            got += c.read(100)
                        assert got == msg
                done.send(True)
            except Exception as e:  # noqa: BLE001
                done.send(e)

        for i in range(n):
            go(client, i)
        got = [recv_timeout(done, 30) for _ in range(n)]
        ln.close()
        assert all(r is True for r in got), [r for r in got if r is not True][:3]
        s = proc._sched
        st = dict(netfd.stats)
        assert st["ready_local"] + st["ready_remote"] > 0
    wait_until(lambda: s.nnetwait == 0, what="no waiters left")


# -- thread Gs interrupted (Ctrl-C) while parked on a socket ---------------------------

def test_ctrl_c_of_thread_parked_on_socket():
    """SIGINT lands in the main thread parked in a read, in a write, and queued
    behind another reader (fdMutex); each withdraws cleanly, the count of
    network waiters returns to zero, and the conn keeps working."""
    p, path = spawn_script("""
        import sys, time
        from pygmp import go, net, chan
        from pygmp.runtime import proc
        ln = net.listen("tcp", "127.0.0.1:0")
        peer = chan(1)
        go(lambda: peer.send(ln.accept()))
        c = net.dial("tcp", ln.addr())
        pc = peer.recv()
        s = proc._sched

        def step(name, fn):
            print("parked", name, flush=True)
            try:
                fn()
            except KeyboardInterrupt:
                print("interrupted", name, "nnetwait", s.nnetwait, flush=True)

        step("read", lambda: c.read(10))
        # a goroutine holds the read lock (parked); the main thread queues behind it
        got = chan(1)
        go(lambda: got.send(c.read(10)))
        time.sleep(0.2)
        step("queued", lambda: c.read(10))
        pc.write(b"one")
        print("goroutine got", got.recv(), flush=True)
        step("write", lambda: c.write(b"w" * (64 << 20)))
        # the conn still works both ways
        pc.write(b"two")
        print("main got", c.read(10), "nnetwait", s.nnetwait, flush=True)
    """)
    try:
        lines = []
        for _ in range(3):
            while True:
                line = p.stdout.readline()
                assert line, p.stderr.read()
                lines.append(line.strip())
                if line.startswith("parked"):
                    break
            time.sleep(0.3)
            os.kill(p.pid, signal.SIGINT)
        out, err = p.communicate(timeout=20)
        lines += out.splitlines()
    finally:
        if p.poll() is None:
            p.kill()
        os.unlink(path)
    assert p.returncode == 0, err
    assert "interrupted read nnetwait 0" in lines, lines
    assert "interrupted queued nnetwait 1" in lines, lines   # the goroutine still waits
    assert "goroutine got b'one'" in lines, lines
    assert "interrupted write nnetwait 0" in lines, lines
    assert "main got b'two' nnetwait 0" in lines, lines


def test_connect_errors_carry_errno():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                              # nobody listens there now
    with pytest.raises(ConnectionRefusedError) as ei:
        net.dial("tcp", "127.0.0.1:%d" % port)
    assert ei.value.errno == errno.ECONNREFUSED

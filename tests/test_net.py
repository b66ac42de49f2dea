"""pygmp.net (API.md "pygmp.net") over real loopback sockets."""
import errno
import os
import socket
import sys
import tempfile
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _helpers import (in_goroutine, in_thread, recv_timeout, run_script,  # noqa: E402
                      spawn_script, gomaxprocs_set)

from pygmp import chan, go  # noqa: E402
from pygmp import net  # noqa: E402
from pygmp.runtime import gosched  # noqa: E402

pytestmark = pytest.mark.timeout(30)


def _has_ipv6():
    if not socket.has_ipv6:
        return False
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            s.bind(("::1", 0))
        finally:
            s.close()
        return True
    except OSError:
        return False


def _echo_server(network="tcp", address="127.0.0.1:0"):
    """A goroutine-per-connection echo server; returns the listener."""
    ln = net.listen(network, address)

    def serve(c):
        with c:
            while True:
                try:
                    d = c.read(65536)
                except OSError:
                    return
                if not d:
                    return
                c.write(d)

    def loop():
        while True:
            try:
                c = ln.accept()
            except net.ErrClosed:
                return
            go(serve, c)

    go(loop)
    return ln


@pytest.fixture
def echo():
    ln = _echo_server()
    yield ln
    ln.close()


def _roundtrip(addr, n=20, network="tcp"):
    c = net.dial(network, addr)
    try:
        for i in range(n):
            msg = b"ping %d" % i
            c.write(msg)
            got = b""
            while len(got) < len(msg):
                d = c.read(100)
                assert d, "EOF"
                got += d
            assert got == msg
    finally:
        c.close()
    return True


# ------------------------------------------------------------------ basics

def test_exceptions_types():
    assert issubclass(net.TimeoutError, TimeoutError)
    assert issubclass(net.ErrClosed, OSError)
    assert not issubclass(net.ErrClosed, TimeoutError)


def test_echo_from_goroutine(echo):
    assert in_goroutine(_roundtrip, echo.addr())


def test_echo_from_main_thread(echo):
    assert _roundtrip(echo.addr())


def test_echo_from_plain_thread(echo):
    assert in_thread(_roundtrip, echo.addr())


def test_server_and_client_in_plain_threads():
    ln = net.listen("tcp", "127.0.0.1:0")

    def server():
        c = ln.accept()
        with c:
            d = c.read(100)
            c.write(d.upper())
        return True

    t = threading.Thread(target=server, daemon=True)
    t.start()

    def client():
        c = net.dial("tcp", ln.addr())
        c.write(b"abc")
        r = c.read(100)
        c.close()
        return r

    assert in_thread(client) == b"ABC"
    t.join(5)
    ln.close()


def test_addresses(echo):
    a = echo.addr()
    assert isinstance(a, str) and isinstance(a, net.Addr)
    assert a.startswith("127.0.0.1:") and a.port > 0 and a.host == "127.0.0.1"
    assert a.network == "tcp"
    c = net.dial("tcp", a)
    try:
        assert c.remote_addr() == a
        la = c.local_addr()
        assert la.host == "127.0.0.1" and la.port > 0
        assert str(la) == "127.0.0.1:%d" % la.port
    finally:
        c.close()


def test_socket_style_methods(echo):
    c = net.dial("tcp", echo.addr())
    try:
        assert c.send(b"hello") == 5
        assert c.recv(5) == b"hello"
        assert c.sendall(b"world") is None
        buf = bytearray(5)
        n = c.recv_into(buf)
        assert bytes(buf[:n]) == b"world"[:n]
        if n < 5:
            assert c.recv(5 - n) == b"world"[n:]
        assert c.write(b"x" * 10) == 10
        assert c.read(0) == b""
        got = b""
        while len(got) < 10:
            got += c.read(10)
        assert got == b"x" * 10
        assert c.write(memoryview(b"mv")) == 2
        assert c.read(2) in (b"mv", b"m")
    finally:
        c.close()


def test_read_returns_as_soon_as_any_data_and_eof():
    ln = net.listen("tcp", "127.0.0.1:0")
    out = chan(1)

    def server():
        c = ln.accept()
        c.write(b"abc")
        out.send(c.read(100))
        c.close()

    go(server)
    c = net.dial("tcp", ln.addr())
    assert c.read(1 << 20) == b"abc"
    c.write(b"bye")
    assert recv_timeout(out) == b"bye"
    assert c.read(100) == b""          # EOF
    assert c.read(100) == b""
    c.close()
    ln.close()


@pytest.mark.timeout(60)
def test_many_concurrent_connections(echo):
    n = 500
    done = chan(n)

    def client(i):
        try:
            c = net.dial("tcp", echo.addr())
            with c:
                for j in range(5):
                    msg = b"%d-%d" % (i, j)
                    c.write(msg)
                    got = b""
                    while len(got) < len(msg):
                        got += c.read(100)
                    assert got == msg
            done.send(None)
        except BaseException as e:  # noqa: BLE001
            done.send(e)

    for i in range(n):
        go(client, i)
    for _ in range(n):
        r = recv_timeout(done, 50)
        if r is not None:
            raise r


def test_concurrent_reader_and_writer_on_one_conn(echo):
    size = 4 << 20
    data = os.urandom(size)

    def body():
        c = net.dial("tcp", echo.addr())
        res = chan(1)

        def reader():
            got = []
            n = 0
            while n < size:
                d = c.read(65536)
                if not d:
                    break
                got.append(d)
                n += len(d)
            res.send(b"".join(got))

        go(reader)
        for off in range(0, size, 100000):      # the echo's buffers fill: writes park
            c.write(data[off:off + 100000])
        got = recv_timeout(res, 20)
        c.close()
        return got

    assert in_goroutine(body, timeout=25) == data


def test_reader_and_writer_on_different_ps(echo):
    with gomaxprocs_set(2):
        size = 1 << 20
        data = os.urandom(size)
        c = net.dial("tcp", echo.addr())
        res = chan(2)

        def reader():
            got = bytearray()
            while len(got) < size:
                d = c.read(65536)
                if not d:
                    break
                got += d
            res.send(bytes(got))

        def writer():
            c.write(data)
            res.send(b"w")

        go(writer)
        go(reader)
        a = recv_timeout(res, 20)
        b = recv_timeout(res, 20)
        c.close()
        assert {a, b} >= {b"w"} and data in (a, b)


# ------------------------------------------------------------------ deadlines

def test_read_deadline_pending_and_later_then_moved(echo):
    def body():
        c = net.dial("tcp", echo.addr())
        c.set_read_deadline(time.time() + 0.1)
        t0 = time.monotonic()
        with pytest.raises(net.TimeoutError):
            c.read(10)
        assert 0.08 <= time.monotonic() - t0 < 2
        with pytest.raises(TimeoutError):        # later ops fail too
            c.read(10)
        c.write(b"still writable")
        time.sleep(0.05)
        with pytest.raises(net.TimeoutError):    # even with data there
            c.read(100)
        c.set_read_deadline(time.time() + 5)     # moved: usable again
        assert c.read(100) == b"still writable"
        c.set_read_deadline(None)
        c.write(b"x")
        assert c.read(1) == b"x"
        c.close()
        return True

    assert in_goroutine(body)
    assert body()                                  # main thread too


def test_deadline_in_the_past_fails_at_once(echo):
    c = net.dial("tcp", echo.addr())
    c.set_deadline(time.time() - 1)
    with pytest.raises(net.TimeoutError):
        c.read(1)
    with pytest.raises(net.TimeoutError):
        c.write(b"x")
    c.set_deadline(None)
    c.write(b"ok")
    assert c.read(2) in (b"ok", b"o")
    c.close()


def test_deadline_wakes_pending_read_when_moved_into_past(echo):
    c = net.dial("tcp", echo.addr())
    res = chan(1)

    def reader():
        try:
            c.read(10)
            res.send("read")
        except net.TimeoutError:
            res.send("timeout")

    go(reader)
    time.sleep(0.1)
    c.set_read_deadline(time.time() - 1)
    assert recv_timeout(res, 5) == "timeout"
    c.close()


def test_write_deadline(echo):
    ln = net.listen("tcp", "127.0.0.1:0")
    accepted = chan(1)
    go(lambda: accepted.send(ln.accept()))
    c = net.dial("tcp", ln.addr())
    peer = recv_timeout(accepted)          # never reads: our writes fill the buffers

    def body():
        c.set_write_deadline(time.time() + 0.2)
        with pytest.raises(net.TimeoutError):
            while True:
                c.write(b"x" * 65536)
        with pytest.raises(net.TimeoutError):
            c.write(b"y")
        return True

    assert in_goroutine(body)
    c.set_write_deadline(None)
    c.close()
    peer.close()
    ln.close()


def test_set_deadline_validates(echo):
    c = net.dial("tcp", echo.addr())
    with pytest.raises(TypeError):
        c.set_deadline("soon")
    c.close()
    with pytest.raises(net.ErrClosed):
        c.set_deadline(None)


def test_accept_deadline():
    ln = net.listen("tcp", "127.0.0.1:0")
    ln.set_deadline(time.time() + 0.1)
    with pytest.raises(net.TimeoutError):
        ln.accept()
    ln.set_deadline(None)
    go(lambda: net.dial("tcp", ln.addr()).close())
    c = ln.accept()
    c.close()
    ln.close()


# ------------------------------------------------------------------ close

def test_close_wakes_blocked_reader_and_writer():
    ln = net.listen("tcp", "127.0.0.1:0")
    accepted = chan(1)
    go(lambda: accepted.send(ln.accept()))
    c = net.dial("tcp", ln.addr())
    peer = recv_timeout(accepted)
    res = chan(2)

    def reader():
        try:
            c.read(10)
            res.send("read returned")
        except net.ErrClosed:
            res.send("r-closed")

    def writer():
        try:
            while True:
                c.write(b"z" * 65536)     # the peer never reads: parks
        except net.ErrClosed:
            res.send("w-closed")

    go(reader)
    go(writer)
    time.sleep(0.3)
    c.close()
    got = {recv_timeout(res, 5), recv_timeout(res, 5)}
    assert got == {"r-closed", "w-closed"}
    with pytest.raises(net.ErrClosed):
        c.read(1)
    with pytest.raises(net.ErrClosed):
        c.write(b"a")
    with pytest.raises(net.ErrClosed):
        c.send(b"a")
    c.close()                              # idempotent
    peer.close()
    ln.close()


def test_close_wakes_blocked_thread_reader():
    ln = net.listen("tcp", "127.0.0.1:0")
    accepted = chan(1)
    go(lambda: accepted.send(ln.accept()))
    c = net.dial("tcp", ln.addr())
    peer = recv_timeout(accepted)
    box = {}

    def reader():
        try:
            c.read(10)
        except net.ErrClosed as e:
            box["e"] = e

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    time.sleep(0.2)
    c.close()
    t.join(5)
    assert not t.is_alive() and isinstance(box.get("e"), net.ErrClosed)
    peer.close()
    ln.close()


def test_listener_close_wakes_accept():
    ln = net.listen("tcp", "127.0.0.1:0")
    res = chan(2)

    def acc():
        try:
            ln.accept()
            res.send("accepted")
        except net.ErrClosed:
            res.send("closed")

    go(acc)
    t = threading.Thread(target=lambda: res.send(("t", acc_thread())), daemon=True)

    def acc_thread():
        try:
            ln.accept()
            return "accepted"
        except net.ErrClosed:
            return "closed"

    t.start()
    time.sleep(0.2)
    ln.close()
    got = [recv_timeout(res, 5), recv_timeout(res, 5)]
    assert sorted(map(str, got)) == sorted(["closed", str(("t", "closed"))])
    with pytest.raises(net.ErrClosed):
        ln.accept()
    ln.close()


# ------------------------------------------------------------------ networks

@pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 loopback")
def test_tcp6_loopback():
    ln = _echo_server("tcp6", "[::1]:0")
    a = ln.addr()
    assert a.startswith("[::1]:") and a.host == "::1"
    assert in_goroutine(_roundtrip, a, 5, "tcp6")
    assert _roundtrip(a, 5, "tcp")
    with pytest.raises(ValueError):
        net.dial("tcp4", a)
    ln.close()


@pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 loopback")
def test_tcp_wildcard_listen_dualstack():
    ln = _echo_server("tcp", ":0")
    port = ln.addr().port
    assert _roundtrip("127.0.0.1:%d" % port, 3)
    assert _roundtrip("[::1]:%d" % port, 3)
    assert _roundtrip(":%d" % port, 3)
    ln.close()


def test_tcp4():
    ln = _echo_server("tcp4", ":0")
    a = ln.addr()
    assert a.startswith("0.0.0.0:")
    assert _roundtrip("127.0.0.1:%d" % a.port, 3, "tcp4")
    ln.close()


def test_dial_by_name(echo):
    assert in_goroutine(_roundtrip, "localhost:%d" % echo.addr().port, 3)


def test_unix_socket():
    d = tempfile.mkdtemp()
    path = os.path.join(d, "s.sock")
    ln = _echo_server("unix", path)
    assert ln.addr() == path and ln.addr().network == "unix"
    assert in_goroutine(_roundtrip, path, 5, "unix")
    assert _roundtrip(path, 5, "unix")
    c = net.dial("unix", path)
    assert c.remote_addr() == path
    c.close()
    ln.close()
    assert not os.path.exists(path)        # a unix listener removes its socket file
    os.rmdir(d)


def test_udp_read_from_write_to():
    a = net.listen_packet("udp", "127.0.0.1:0")
    b = net.listen_packet("udp", "127.0.0.1:0")
    res = chan(1)

    def server():
        data, addr = a.read_from(1500)
        a.write_to(data.upper(), addr)
        res.send(addr)

    go(server)
    b.write_to(b"hello", a.local_addr())
    data, frm = b.read_from(1500)
    assert data == b"HELLO" and frm == a.local_addr()
    assert recv_timeout(res) == b.local_addr()
    b.set_read_deadline(time.time() + 0.05)
    with pytest.raises(net.TimeoutError):
        b.read_from(10)
    a.close()
    b.close()
    with pytest.raises(net.ErrClosed):
        a.read_from(10)


# ------------------------------------------------------------------ faults

def test_connection_refused():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                               # nobody listens there now
    with pytest.raises(ConnectionRefusedError):
        net.dial("tcp", "127.0.0.1:%d" % port)
    with pytest.raises(ConnectionRefusedError):
        in_goroutine(net.dial, "tcp", "127.0.0.1:%d" % port)


def test_connection_reset():
    ln = net.listen("tcp", "127.0.0.1:0")
    accepted = chan(1)
    go(lambda: accepted.send(ln.accept()))
    c = net.dial("tcp", ln.addr())
    peer = recv_timeout(accepted)

    def reader():
        with pytest.raises(ConnectionResetError):
            c.read(10)
        return True

    res = chan(1)
    go(lambda: res.send(reader()))
    time.sleep(0.1)
    import struct
    # the conn owns its fd number: set SO_LINGER through a duplicate of it
    with socket.socket(fileno=os.dup(peer.fileno())) as dup:
        dup.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()                            # RST
    assert recv_timeout(res, 5)
    c.close()
    ln.close()


def test_peer_vanishes_mid_write():
    ln = net.listen("tcp", "127.0.0.1:0")
    accepted = chan(1)
    go(lambda: accepted.send(ln.accept()))
    c = net.dial("tcp", ln.addr())
    peer = recv_timeout(accepted)
    res = chan(1)

    def writer():
        try:
            while True:
                c.write(b"w" * 65536)        # parks once the buffers are full
        except (BrokenPipeError, ConnectionResetError) as e:
            res.send(type(e))

    go(writer)
    time.sleep(0.3)
    peer.close()                            # unread data: the kernel sends RST
    assert recv_timeout(res, 5) in (BrokenPipeError, ConnectionResetError)
    c.close()
    ln.close()


def test_broken_pipe_after_peer_closed():
    ln = net.listen("tcp", "127.0.0.1:0")
    accepted = chan(1)
    go(lambda: accepted.send(ln.accept()))
    c = net.dial("tcp", ln.addr())
    peer = recv_timeout(accepted)
    peer.close()
    assert c.read(10) == b""
    with pytest.raises((BrokenPipeError, ConnectionResetError)):
        for _ in range(100):
            c.write(b"data")
            time.sleep(0.01)
    c.close()
    ln.close()


@pytest.mark.parametrize("network,address", [
    ("tcp", "127.0.0.1"),               # missing port
    ("tcp", "127.0.0.1:99999"),          # port out of range
    ("tcp", "127.0.0.1:-1"),
    ("tcp", "[::1"),                      # missing ]
    ("tcp", "::1:80"),                    # too many colons
    ("tcp", "127.0.0.1:nosuchservice"),
    ("tcp4", "[::1]:80"),                 # wrong family
    ("tcp6", "127.0.0.1:80"),
    ("tcp", "bad host:80"),
])
def test_bad_address(network, address):
    with pytest.raises(ValueError) as ei:
        net.dial(network, address)
    assert address in str(ei.value)
    with pytest.raises(ValueError) as ei:
        net.listen(network, address)
    assert address in str(ei.value)


def test_bad_network():
    with pytest.raises(ValueError, match="ip9"):
        net.dial("ip9", "127.0.0.1:80")
    with pytest.raises(ValueError):
        net.listen("udp", "127.0.0.1:0")
    with pytest.raises(ValueError):
        net.listen_packet("tcp", "127.0.0.1:0")
    with pytest.raises(TypeError):
        net.dial("tcp", 80)


def test_dial_timeout():
    # a listener with a full accept queue drops SYNs: connects hang
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    addr = srv.getsockname()
    fill = []
    for _ in range(8):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(addr)
        fill.append(s)
    time.sleep(0.1)
    t0 = time.monotonic()
    try:
        with pytest.raises(net.TimeoutError):
            for _ in range(4):
                net.dial("tcp", "%s:%d" % addr, timeout=0.3).close()
        assert time.monotonic() - t0 < 3
    finally:
        for s in fill:
            s.close()
        srv.close()


def test_dial_with_timeout_succeeds(echo):
    c = net.dial("tcp", echo.addr(), timeout=5)
    c.write(b"q")
    assert c.read(1) == b"q"
    # the dial timeout does not linger as a deadline
    time.sleep(0.01)
    c.close()


# ------------------------------------------------------------------ scheduling

def test_busy_p_still_gets_readiness():
    """A goroutine on a P whose other goroutine spins in gosched() loops gets
    its readiness promptly (the busy P polls its fds every few ms)."""
    ln = net.listen("tcp", "127.0.0.1:0")
    accepted = chan(1)
    go(lambda: accepted.send(ln.accept()))
    c = net.dial("tcp", ln.addr())
    peer = recv_timeout(accepted)
    with gomaxprocs_set(1):
        stop = [False]
        res = chan(2)

        def spinner():
            while not stop[0]:
                gosched()
            res.send("spun")

        def reader():
            d = peer.read(10)
            res.send((d, time.monotonic()))

        go(reader)
        time.sleep(0.05)
        go(spinner)
        time.sleep(0.05)
        t0 = time.monotonic()
        c.write(b"hi")
        d, t1 = recv_timeout(res, 5)
        stop[0] = True
        assert d == b"hi"
        assert t1 - t0 < 2.0, t1 - t0      # starved, it would wait until the spinner stops
        assert recv_timeout(res, 5) == "spun"
    c.close()
    peer.close()
    ln.close()


@pytest.mark.timeout(60)
def test_no_deadlock_while_waiting_on_socket():
    p, path = spawn_script("""
        from pygmp import go, chan, net
        ln = net.listen("tcp", "127.0.0.1:0")
        print(ln.addr().port, flush=True)
        ch = chan()
        def acc():
            c = ln.accept()
            ch.send(c.read(10))
        go(acc)
        print("got", ch.recv(), flush=True)   # every goroutine waits: on the socket
    """)
    try:
        port = int(p.stdout.readline())
        time.sleep(1.0)                        # checkdead would fire here
        assert p.poll() is None, p.stderr.read()
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"hello")
        out, err = p.communicate(timeout=20)
        s.close()
        assert p.returncode == 0, err
        assert "got b'hello'" in out
        assert "deadlock" not in err
    finally:
        if p.poll() is None:
            p.kill()
        os.unlink(path)


def test_deadlock_still_detected_after_conn_closed():
    r = run_script("""
        from pygmp import go, chan, net
        ln = net.listen("tcp", "127.0.0.1:0")
        done = chan()
        def f():
            try:
                ln.accept()
            except net.ErrClosed:
                done.send(1)
        go(f)
        import time; time.sleep(0.2)
        ln.close()
        done.recv()
        chan().recv()                          # nothing can wake us now
    """, timeout=30)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "all goroutines are asleep - deadlock!" in r.stderr


@pytest.mark.timeout(90)
def test_accept_emfile_backs_off_and_recovers():
    import subprocess
    from _helpers import _env, write_script
    path = write_script("""
        import resource, sys, time, threading
        from pygmp import go, net
        from pygmp.runtime import netfd
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        ln = net.listen("tcp", "127.0.0.1:0")
        def serve(c):
            with c:
                while True:
                    d = c.read(100)
                    if not d:
                        return
                    c.write(d)
        def loop():
            while True:
                c = ln.accept()
                go(serve, c)
        go(loop)
        print(ln.addr().port, flush=True)
        for line in sys.stdin:
            if line.startswith("stats"):
                r = resource.getrusage(resource.RUSAGE_SELF)
                print(netfd.stats["accept_backoff"], r.ru_utime + r.ru_stime, flush=True)
    """)
    p = subprocess.Popen([sys.executable, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=_env())
    conns = []
    try:
        port = int(p.stdout.readline())
        for _ in range(120):                   # far past the server's 64 fds
            s = socket.socket()
            s.settimeout(5)
            s.connect(("127.0.0.1", port))     # the kernel accepts into the backlog
            conns.append(s)
        time.sleep(0.5)
        p.stdin.write("stats\n")
        p.stdin.flush()
        backoffs0, cpu0 = p.stdout.readline().split()
        assert int(backoffs0) >= 1
        time.sleep(1.5)
        p.stdin.write("stats\n")
        p.stdin.flush()
        backoffs1, cpu1 = p.stdout.readline().split()
        # backing off (5 ms doubling to 1 s), not spinning
        assert int(backoffs1) - int(backoffs0) < 40, (backoffs0, backoffs1)
        assert float(cpu1) - float(cpu0) < 0.8, (cpu0, cpu1)
        for s in conns[:100]:                  # free fds on the server
            s.close()
        del conns[:100]
        # the server keeps serving: the connections left are accepted and echo
        for s in conns:
            s.sendall(b"ok")
        for s in conns:
            assert s.recv(10) == b"ok"
        assert p.poll() is None
    finally:
        for s in conns:
            s.close()
        p.kill()
        p.communicate(timeout=10)
        os.unlink(path)


def test_fds_survive_gomaxprocs_shrink(echo):
    """Conns registered on a P that retires keep working (re-registered)."""
    with gomaxprocs_set(4):
        conns = chan(8)

        def opener():
            c = net.dial("tcp", echo.addr())
            c.write(b"a")
            assert c.read(1) == b"a"     # registers the fd on this goroutine's P
            conns.send(c)

        for _ in range(8):
            go(opener)
        cs = [recv_timeout(conns) for _ in range(8)]
    time.sleep(0.2)
    for c in cs:
        assert in_goroutine(_rt_one, c)
        assert _rt_one(c)
        c.close()


def _rt_one(c):
    c.write(b"b")
    return c.read(1) == b"b"


def test_keyboard_interrupt_like_cancel_of_thread_read():
    """A thread G whose wait is cancelled by an exception withdraws cleanly and
    the conn stays usable (the mechanism Ctrl-C uses in the main thread)."""
    r = run_script("""
        import signal, threading, time, os
        from pygmp import go, net
        ln = net.listen("tcp", "127.0.0.1:0")
        def srv():
            c = ln.accept()
            d = c.read(10)
            c.write(d)
        go(srv)
        c = net.dial("tcp", ln.addr())
        threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        try:
            c.read(10)
        except KeyboardInterrupt:
            print("interrupted")
        c.write(b"again")
        print(c.read(10))
    """, timeout=20)
    assert r.returncode == 0, r.stderr
    assert "interrupted" in r.stdout and "b'again'" in r.stdout

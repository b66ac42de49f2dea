"""pygmp.monkey, the network half: after patching, blocking-style socket,
select, ssl, os and time calls in goroutines park the goroutine, never its
worker thread.  Each scenario runs patched in a fresh interpreter
(_monkey_helpers.run_patched); many use GOMAXPROCS=1, where a call that held
the only worker thread would stop the goroutine that is to wake it."""
import os
import shutil
import subprocess
import tempfile

import pytest

from _monkey_helpers import run_patched

pytestmark = pytest.mark.timeout(120)


def test_thousand_goroutines_echo_with_few_threads():
    r, out = run_patched('''
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(2048)
        port = srv.getsockname()[1]

        def serve(c):
            with c:
                while True:
                    d = c.recv(4096)
                    if not d:
                        return
                    c.sendall(d)

        def acceptor():
            while True:
                c, _ = srv.accept()
                go(serve, c)

        go(acceptor)
        N = 1000
        done = chan(N)
        gate = chan()

        def client(i):
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            gate.recv()                      # every client is connected and parked
            msg = b"ping %d" % i
            s.sendall(msg)
            got = b""
            while len(got) < len(msg):
                got += s.recv(100)
            s.close()
            done.send(got == msg)

        sampler = ThreadSampler()
        t0 = time.monotonic()
        for i in range(N):
            go(client, i)
        gate.close()
        ok = sum(done.recv() for _ in range(N))
        emit(ok=ok, secs=time.monotonic() - t0, max_threads=sampler.done())
    ''', gomaxprocs=2)
    assert out["ok"] == 1000
    # main, 2 workers, sysmon, the sampler, maybe one helper
    assert out["max_threads"] <= 2 + 4, out


def test_timeouts_and_nonblocking_mode():
    r, out = run_patched('''
        ticks = [0]
        def ticker(stop):
            while not stop:
                time.sleep(0.01)
                ticks[0] += 1

        def timed():
            a, b = socket.socketpair()
            a.settimeout(0.2)
            assert a.gettimeout() == 0.2 and a.timeout == 0.2 and a.getblocking()
            stop = []
            go(ticker, stop)
            t = time.monotonic()
            try:
                a.recv(1)
                raise AssertionError("no timeout")
            except socket.timeout as e:
                took = time.monotonic() - t
                msg = str(e)
            stop.append(1)
            a.close(); b.close()
            return took, msg, isinstance(socket.timeout(), TimeoutError)

        took, msg, istimeout = in_g(timed)
        emit(took=took, msg=msg, istimeout=istimeout, ticks=ticks[0])

        def nonblocking():
            a, b = socket.socketpair()
            a.settimeout(0)
            res = {"blocking": a.getblocking(), "timeout": a.gettimeout()}
            try:
                a.recv(1)
            except BlockingIOError:
                res["recv"] = "BlockingIOError"
            b.send(b"x")
            time.sleep(0.05)
            res["data"] = a.recv(1).decode()
            a.setblocking(True)
            res["after"] = a.gettimeout()
            srv = socket.socket()
            srv.bind(("127.0.0.1", 0)); srv.listen()
            srv.setblocking(False)
            try:
                srv.accept()
            except BlockingIOError:
                res["accept"] = "BlockingIOError"
            c = socket.socket()
            c.setblocking(False)
            try:
                c.connect(srv.getsockname())
                res["connect"] = "connected"
            except BlockingIOError:
                res["connect"] = "BlockingIOError"
            for s in (a, b, srv, c):
                s.close()
            try:
                a.settimeout(-1)
            except ValueError:
                res["negative"] = "ValueError"
            try:
                a.settimeout("x")
            except TypeError:
                res["badtype"] = "TypeError"
            return res

        emit(nb=in_g(nonblocking))

        socket.setdefaulttimeout(0.1)
        def default_timeout():
            a, b = socket.socketpair()
            t = time.monotonic()
            try:
                a.recv(1)
            except socket.timeout:
                return a.gettimeout(), time.monotonic() - t
        dt, dtook = in_g(default_timeout)
        socket.setdefaulttimeout(None)
        emit(dt=dt, dtook=dtook)
    ''', gomaxprocs=1)
    assert 0.18 <= out["took"] < 1.0, out
    assert out["msg"] == "timed out" and out["istimeout"]
    assert out["ticks"] >= 5, out            # the worker ran the ticker meanwhile
    nb = out["nb"]
    assert nb == {"blocking": False, "timeout": 0.0, "recv": "BlockingIOError", "data": "x",
                  "after": None, "accept": "BlockingIOError", "connect": "BlockingIOError",
                  "negative": "ValueError", "badtype": "TypeError"} or \
        nb["connect"] == "connected", nb
    assert out["dt"] == 0.1 and 0.09 <= out["dtook"] < 1.0, out


def test_close_wakes_a_parked_goroutine_with_ebadf():
    r, out = run_patched('''
        import errno
        def closer(s):
            time.sleep(0.1)
            s.close()

        def recv_case():
            a, b = socket.socketpair()
            go(closer, a)
            try:
                a.recv(10)
            except OSError as e:
                return e.errno
        def accept_case():
            srv = socket.socket()
            srv.bind(("127.0.0.1", 0)); srv.listen()
            go(closer, srv)
            try:
                srv.accept()
            except OSError as e:
                return e.errno
        def send_case():
            a, b = socket.socketpair()
            a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            go(closer, a)
            try:
                a.sendall(b"x" * (16 << 20))
            except OSError as e:
                return e.errno
        emit(recv=in_g(recv_case), accept=in_g(accept_case), send=in_g(send_case),
             ebadf=errno.EBADF)
    ''', gomaxprocs=1)
    assert out["recv"] == out["accept"] == out["send"] == out["ebadf"], out


def test_makefile_readline_and_connect_errors():
    r, out = run_patched('''
        def server(srv):
            c, _ = srv.accept()
            with c:
                for i in range(3):
                    time.sleep(0.05)
                    c.sendall(b"line %d\\n" % i)

        def client():
            srv = socket.socket()
            srv.bind(("127.0.0.1", 0)); srv.listen()
            go(server, srv)
            s = socket.create_connection(srv.getsockname())
            f = s.makefile("rb")
            lines = [f.readline().decode() for _ in range(4)]
            f.close(); s.close(); srv.close()
            # a refused connection
            probe = socket.socket(); probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]; probe.close()
            try:
                socket.create_connection(("127.0.0.1", port))
            except ConnectionRefusedError:
                refused = True
            c = socket.socket()
            ex = c.connect_ex(("127.0.0.1", port))
            c.close()
            import errno
            return lines, refused, ex == errno.ECONNREFUSED

        lines, refused, ex = in_g(client)
        emit(lines=lines, refused=refused, ex=ex)
    ''', gomaxprocs=1)
    assert out["lines"] == ["line 0\n", "line 1\n", "line 2\n", ""]
    assert out["refused"] and out["ex"]


def test_getaddrinfo_goes_through_the_handoff():
    # A resolver that blocks its thread 0.3 s: patched, a lookup in a
    # goroutine must leave the only worker thread free for a ticker.
    r, out = run_patched('''
        ticks = [0]
        def ticker(stop):
            while not stop:
                time.sleep(0.01)
                ticks[0] += 1
        def lookup():
            stop = []
            go(ticker, stop)
            t = time.monotonic()
            infos = socket.getaddrinfo("localhost", 80, socket.AF_INET, socket.SOCK_STREAM)
            took = time.monotonic() - t
            stop.append(1)
            name = socket.gethostbyname("localhost")
            numeric = socket.getaddrinfo("127.0.0.1", 80)   # no lookup: no handoff
            # connect() with a host name resolves off the worker too
            srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
            c = socket.socket(); c.connect(("localhost", srv.getsockname()[1]))
            c.close(); srv.close()
            # so does sendto()
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0))
            v = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            v.sendto(b"dgram", ("localhost", u.getsockname()[1]))
            got = u.recv(10).decode()
            u.close(); v.close()
            return infos[0][4][0], took, name, numeric[0][4][0], got
        addr, took, name, numeric, got = in_g(lookup)
        emit(addr=addr, took=took, name=name, numeric=numeric, ticks=ticks[0],
             localhost_lookups=calls.count("localhost"), got=got)
    ''', gomaxprocs=1, patch='''
import socket as _s, time as _t
calls = []
_real = _s.getaddrinfo
def _slow_getaddrinfo(*a, **k):
    calls.append(a[0])
    if a[0] == "localhost":
        _t.sleep(0.3)                   # the real time.sleep: blocks this thread
    return _real(*a, **k)
_s.getaddrinfo = _slow_getaddrinfo
pygmp.monkey.patch_all(threading=False, queue=False, subprocess=False)
assert pygmp.monkey.get_original("socket", "getaddrinfo") is _slow_getaddrinfo
''')
    assert out["addr"] == "127.0.0.1" and out["name"] == "127.0.0.1"
    assert out["numeric"] == "127.0.0.1"
    assert out["took"] >= 0.29 and out["ticks"] >= 5, out
    assert out["localhost_lookups"] == 3 and out["got"] == "dgram", out   # direct, connect, sendto


def test_select_poll_epoll_selectors_park():
    r, out = run_patched('''
        def writer(fd_or_sock, delay):
            time.sleep(delay)
            if isinstance(fd_or_sock, int):
                os.write(fd_or_sock, b"x")
            else:
                fd_or_sock.send(b"x")

        def make(kind):
            if kind == "pipe":
                r, w = os.pipe()
                return r, w, r, (lambda: (os.close(r), os.close(w)))
            a, b = socket.socketpair()
            return a, b, a.fileno(), (lambda: (a.close(), b.close()))

        def wait_with(mech, kind):
            r, w, rfd, cleanup = make(kind)
            go(writer, w, 0.1)
            t = time.monotonic()
            if mech == "select":
                ready = select.select([r], [], [], 5)[0] == [r]
            elif mech == "poll":
                p = select.poll(); p.register(r, select.POLLIN)
                ready = p.poll(5000) == [(rfd, select.POLLIN)]
            elif mech == "epoll":
                with select.epoll() as ep:
                    ep.register(rfd, select.EPOLLIN)
                    ready = ep.poll(5) == [(rfd, select.EPOLLIN)]
            else:
                with getattr(selectors, mech)() as sel:
                    sel.register(r, selectors.EVENT_READ, "data")
                    ev = sel.select(5)
                    ready = len(ev) == 1 and ev[0][0].data == "data"
            took = time.monotonic() - t
            cleanup()
            return ready, round(took, 3)

        def timeout_with(mech):
            a, b = socket.socketpair()
            t = time.monotonic()
            if mech == "select":
                res = select.select([a], [], [], 0.2)
                empty = res == ([], [], [])
            elif mech == "poll":
                p = select.poll(); p.register(a, select.POLLIN)
                empty = p.poll(200) == []
            elif mech == "epoll":
                with select.epoll() as ep:
                    ep.register(a, select.EPOLLIN)
                    empty = ep.poll(0.2) == []
            else:
                with getattr(selectors, mech)() as sel:
                    sel.register(a, selectors.EVENT_READ)
                    empty = sel.select(0.2) == []
            took = time.monotonic() - t
            a.close(); b.close()
            return empty, round(took, 3)

        res = {}
        for mech in ("select", "poll", "epoll", "DefaultSelector", "SelectSelector",
                     "PollSelector", "EpollSelector"):
            for kind in ("pipe", "socketpair"):
                res[mech + "/" + kind] = in_g(wait_with, mech, kind)
            res[mech + "/timeout"] = in_g(timeout_with, mech)
        emit(res=res, default=selectors.DefaultSelector.__module__)
    ''', gomaxprocs=1)
    assert out["default"] == "pygmp.monkey._select"
    for key, (ok, took) in out["res"].items():
        assert ok, (key, out["res"])
        if key.endswith("timeout"):
            assert 0.18 <= took < 1.5, (key, took)
        else:
            assert 0.08 <= took < 1.5, (key, took)


def test_time_sleep_parks():
    r, out = run_patched('''
        done = chan(4)
        def sleeper():
            time.sleep(0.2)
            done.send(1)
        t = time.monotonic()
        for _ in range(4):
            go(sleeper)
        for _ in range(4):
            done.recv()
        took = time.monotonic() - t
        errs = []
        def bad():
            for v in (-1, float("nan")):
                try:
                    time.sleep(v)
                except ValueError:
                    errs.append("ValueError")
            try:
                time.sleep("x")
            except TypeError:
                errs.append("TypeError")
            time.sleep(0)
        in_g(bad)
        # sleep(0) yields: at GOMAXPROCS=1 a goroutine spinning on it lets another run
        flag = []
        def setter():
            flag.append(1)
        def spinner():
            go(setter)
            n = 0
            while not flag:
                time.sleep(0)
                n += 1
            return n
        emit(took=took, errs=errs, spins=in_g(spinner))
    ''', gomaxprocs=1)
    assert 0.19 <= out["took"] < 0.6, out        # one after the other: 0.8 s
    assert out["errs"] == ["ValueError", "ValueError", "TypeError"]
    assert out["spins"] <= 5, out


def test_os_read_write_on_pipes_park():
    r, out = run_patched('''
        def reader_case():
            r, w = os.pipe()
            def wr():
                time.sleep(0.1)
                os.write(w, b"hello")
            go(wr)
            t = time.monotonic()
            data = os.read(r, 100)
            took = time.monotonic() - t
            os.close(r); os.close(w)
            return data.decode(), took

        def writer_case():
            r, w = os.pipe()
            big = b"y" * (1 << 20)              # far more than the pipe holds
            got = []
            def rd():
                time.sleep(0.1)
                n = 0
                while n < len(big):
                    d = os.read(r, 65536)
                    n += len(d)
                got.append(n)
            go(rd)
            n = os.write(w, big)
            while not got:
                time.sleep(0.01)
            os.close(r); os.close(w)
            return n, got[0]

        def nonblocking_case():
            r, w = os.pipe()
            os.set_blocking(r, False)
            try:
                os.read(r, 1)
                res = "read"
            except BlockingIOError:
                res = "BlockingIOError"
            os.close(r); os.close(w)
            return res

        def file_case():
            import tempfile
            with tempfile.TemporaryFile() as f:
                os.write(f.fileno(), b"abc" * 5000)
                os.lseek(f.fileno(), 0, 0)
                return len(os.read(f.fileno(), 100000))

        data, took = in_g(reader_case)
        n, m = in_g(writer_case)
        emit(data=data, took=took, n=n, m=m, nb=in_g(nonblocking_case), file=in_g(file_case))
    ''', gomaxprocs=1)
    assert out["data"] == "hello" and 0.08 <= out["took"] < 1.5, out
    assert out["n"] == out["m"] == 1 << 20
    assert out["nb"] == "BlockingIOError"
    assert out["file"] == 15000


def _make_cert(tmp):
    if shutil.which("openssl") is None:
        pytest.skip("no openssl binary to make a self-signed certificate with "
                    "(cryptography is not a dependency)")
    key, crt = os.path.join(tmp, "key.pem"), os.path.join(tmp, "cert.pem")
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-keyout", key, "-out", crt, "-days", "1", "-subj", "/CN=localhost"],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        pytest.skip("openssl req failed: %s" % r.stderr[-500:])
    return key, crt


def test_ssl_server_and_clients_in_goroutines():
    with tempfile.TemporaryDirectory() as tmp:
        key, crt = _make_cert(tmp)
        r, out = run_patched('''
            import ssl
            KEY, CRT = %r, %r
            sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            sctx.load_cert_chain(CRT, KEY)
            cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            cctx.load_verify_locations(CRT)
            srv = socket.socket()
            srv.bind(("127.0.0.1", 0)); srv.listen(128)
            port = srv.getsockname()[1]
            lsrv = sctx.wrap_socket(srv, server_side=True)

            def serve(c):
                with c:
                    f = c.makefile("rwb")
                    line = f.readline()
                    time.sleep(0.05)
                    f.write(line.upper()); f.flush()
                    f.close()

            def acceptor():
                while True:
                    try:
                        c, _ = lsrv.accept()
                    except OSError:
                        return
                    go(serve, c)

            go(acceptor)
            N = 20
            done = chan(N)

            def client(i):
                raw = socket.create_connection(("127.0.0.1", port))
                with cctx.wrap_socket(raw, server_hostname="localhost") as s:
                    s.sendall(b"hello %%d\\n" %% i)
                    got = b""
                    while not got.endswith(b"\\n"):
                        d = s.recv(100)
                        if not d:
                            break
                        got += d
                    done.send((got == b"HELLO %%d\\n" %% i, type(s).__module__))

            t = time.monotonic()
            for i in range(N):
                go(client, i)
            res = [done.recv() for _ in range(N)]
            took = time.monotonic() - t

            def timeout_case():
                raw = socket.create_connection(("127.0.0.1", port))
                s = cctx.wrap_socket(raw, server_hostname="localhost")
                s.settimeout(0.2)
                t = time.monotonic()
                try:
                    s.recv(10)                    # the server waits for a line
                except socket.timeout:
                    return time.monotonic() - t
                finally:
                    s.close()
            emit(ok=sum(r[0] for r in res), mod=res[0][1], took=took,
                 tmo=in_g(timeout_case))
        ''' % (key, crt), gomaxprocs=1)
    assert out["ok"] == 20, out
    assert out["mod"] == "pygmp.monkey._ssl"
    assert out["took"] < 10
    assert 0.18 <= out["tmo"] < 1.5


def test_many_goroutines_on_one_socket():
    # One pollDesc slot per direction: the waiters beyond the first wait on
    # FDs of their own, each with its own timeout, and close wakes them all.
    r, out = run_patched('''
        import errno
        def udp_case():
            srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            srv.bind(("127.0.0.1", 0))
            srv.settimeout(5)
            got = chan(10)
            def rd():
                got.send(srv.recvfrom(100)[0])
            for _ in range(10):
                go(rd)
            time.sleep(0.1)
            c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for i in range(10):
                c.sendto(b"d%d" % i, srv.getsockname())
            res = sorted(got.recv().decode() for _ in range(10))
            c.close(); srv.close()
            return res

        def timeouts_case():
            a, b = socket.socketpair()
            a.settimeout(0.2)
            out = chan(3)
            def rd():
                t = time.monotonic()
                try:
                    a.recv(1)
                    out.send("data")
                except socket.timeout:
                    out.send(round(time.monotonic() - t, 2))
            for _ in range(3):
                go(rd)
            res = [out.recv() for _ in range(3)]
            a.close(); b.close()
            return res

        def close_case():
            a, b = socket.socketpair()
            out = chan(3)
            def rd():
                try:
                    a.recv(1)
                    out.send("data")
                except OSError as e:
                    out.send(e.errno)
            for _ in range(3):
                go(rd)
            time.sleep(0.1)
            a.close()
            res = [out.recv() for _ in range(3)]
            b.close()
            return res

        emit(udp=in_g(udp_case), tmo=in_g(timeouts_case), closed=in_g(close_case),
             ebadf=errno.EBADF)
    ''', gomaxprocs=1)
    assert out["udp"] == sorted("d%d" % i for i in range(10))
    assert all(isinstance(t, float) and 0.18 <= t < 1.5 for t in out["tmo"]), out
    assert out["closed"] == [out["ebadf"]] * 3, out

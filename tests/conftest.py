"""Shared pytest configuration for pygmp's suite.

1. The tests must import the *installed* pygmp, whose compiled modules
   (``pygmp._hot``, ``pygmp.runtime._netpoll``) the source tree does not have.
   ``.venv/bin/pytest`` from the repository root does that (pytest puts only
   tests/ on sys.path).  ``python -m pytest`` also puts the current directory
   first, and the source tree's ``pygmp/`` would shadow the install: then this
   file drops the source tree from sys.path if an installed pygmp with its
   compiled modules is there to be found instead, and otherwise stops the run
   at once with the command to run.  (A build in place, e.g. ``pip install -e
   .``, puts the compiled modules into the source tree: then it is used.)

2. The ``server`` fixture: an example server of examples/ in a subprocess on
   a free port, for test_examples.py and test_faults.py.
"""
import importlib.machinery
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from _helpers import REPO, _env

EXAMPLES = os.path.join(REPO, "examples")
SETUP = ("python3 -m venv .venv && .venv/bin/pip install '.[test]' && "
         ".venv/bin/pytest")


# -- 1. test the installed package, never a half-built source tree ---------

def _compiled(pkgdir):
    """The compiled modules that ``pkgdir`` (a pygmp package dir) lacks."""
    missing = []
    for mod in ("_hot", os.path.join("runtime", "_netpoll")):
        base = os.path.join(pkgdir, mod)
        if not any(os.path.exists(base + suf)
                   for suf in importlib.machinery.EXTENSION_SUFFIXES):
            missing.append("pygmp." + mod.replace(os.sep, "."))
    return missing


def _is_source_tree(entry):
    try:
        return os.path.samefile(entry or os.curdir, REPO)
    except OSError:
        return False


def _use_installed_pygmp():
    src = os.path.join(REPO, "pygmp")
    mod = sys.modules.get("pygmp")
    if mod is not None:
        where = os.path.dirname(os.path.abspath(mod.__file__))
        if where == src and _compiled(src):
            pytest.exit("pygmp was already imported from the source tree %s, which has "
                        "no compiled modules (%s). Run the tests with the installed "
                        "package: %s" % (src, ", ".join(_compiled(src)), SETUP),
                        returncode=4)
        return
    if not _compiled(src):
        return                      # built in place (pip install -e .): fine
    others = [p for p in sys.path if not _is_source_tree(p)]
    spec = importlib.machinery.PathFinder.find_spec("pygmp", others)
    if spec is None or not spec.submodule_search_locations:
        pytest.exit("pygmp is not installed for %s, and the source tree has no compiled "
                    "modules (%s). From the repository root run: %s"
                    % (sys.executable, ", ".join(_compiled(src)), SETUP), returncode=4)
    installed = list(spec.submodule_search_locations)[0]
    missing = _compiled(installed)
    if missing:
        pytest.exit("the pygmp installed at %s lacks its compiled modules (%s): "
                    "reinstall it: %s" % (installed, ", ".join(missing), SETUP),
                    returncode=4)
    sys.path[:] = others            # `python -m pytest`: the install, not ./pygmp


def pytest_configure(config):
    _use_installed_pygmp()          # before any test module imports pygmp


def pytest_report_header(config):
    import pygmp
    return "pygmp: %s" % os.path.dirname(os.path.abspath(pygmp.__file__))


# -- 2. example servers in subprocesses ----------------------------------------

class Server:
    """An example server (``script`` in examples/) in a subprocess, listening
    on a free port of 127.0.0.1 (``host``, ``port`` from its first stdout
    line, ``listening on HOST:PORT``).  Every wait is bounded."""

    def __init__(self, script, procs, *args):
        self.script = script        # a file in examples/, or an absolute path
        self.name = os.path.splitext(os.path.basename(script))[0]
        self.p = subprocess.Popen(
            [sys.executable, os.path.join(EXAMPLES, script), "--gomaxprocs", str(procs),
             *args, "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), cwd=REPO,
            text=True, start_new_session=True)
        self.lines = queue.Queue()
        self.err = []
        self._pumps = [threading.Thread(target=self._pump, args=(f, put), daemon=True)
                       for f, put in ((self.p.stdout, self.lines.put),
                                      (self.p.stderr, self.err.append))]
        for t in self._pumps:
            t.start()
        deadline = time.monotonic() + 30
        while True:
            try:
                first = self.lines.get(timeout=0.1)
                break
            except queue.Empty:
                if self.p.poll() is not None or time.monotonic() > deadline:
                    self.kill()
                    self._drain()
                    raise AssertionError("%s printed nothing (status %s); stderr: %s"
                                         % (script, self.p.returncode, self.stderr()))
        assert first.startswith("listening on "), (first, self.stderr())
        addr = first[len("listening on "):].strip()
        host, _, port = addr.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        assert self.host == "127.0.0.1"

    @staticmethod
    def _pump(f, put):
        for line in f:
            put(line)

    def _drain(self):
        """After the process ended: wait for the pumps to read all it wrote,
        then close the pipes."""
        for t in self._pumps:
            t.join(10)
        for f in (self.p.stdout, self.p.stderr):
            if not any(t.is_alive() for t in self._pumps):
                f.close()

    def stderr(self):
        return "".join(self.err)

    def wait_stderr(self, text, timeout=10):
        """Wait until the server has written ``text`` on stderr; its stderr."""
        deadline = time.monotonic() + timeout
        while text not in self.stderr():
            assert time.monotonic() < deadline, "%s did not log %r in %s s; stderr: %s" % (
                self.script, text, timeout, self.stderr())
            time.sleep(0.02)
        return self.stderr()

    def alive(self):
        return self.p.poll() is None

    def stop(self, sig=signal.SIGINT, timeout=15, tracebacks=0):
        """Send ``sig``; assert a clean exit: status 0, the one-line message
        naming the signal, and no traceback (but the ``tracebacks`` that a
        test caused on purpose)."""
        assert self.alive(), "server died early (status %s): %s" % (
            self.p.returncode, self.stderr())
        self.p.send_signal(sig)
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("server ignored %s for %s s; stderr: %s"
                                 % (sig.name, timeout, self.stderr()))
        self._drain()
        err = self.stderr()
        assert rc == 0, "exit status %r; stderr:\n%s" % (rc, err)
        assert err.count("Traceback") == tracebacks and "panic" not in err, err
        want = "%s: %s received, listener closed, exiting\n" % (self.name, sig.name)
        assert err.endswith(want), (want, err)

    def kill(self):
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGKILL)
            self.p.wait(10)
        self._drain()

    def connect(self, timeout=10):
        s = socket.create_connection((self.host, self.port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    # -- what the fault tests look at --------------------------------------

    def fds(self):
        """The server process's open file descriptors (Linux /proc)."""
        return len(os.listdir("/proc/%d/fd" % self.p.pid))

    def rss(self):
        with open("/proc/%d/statm" % self.p.pid) as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def wait_fds(self, at_most, timeout=10):
        """Wait until the server holds at most ``at_most`` fds (connections
        close asynchronously); fail with the count otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            n = self.fds()
            if n <= at_most:
                return n
            if time.monotonic() > deadline:
                raise AssertionError("%s leaks file descriptors: %d open, %d before"
                                     % (self.script, n, at_most))
            time.sleep(0.05)

    def exchange(self, data, timeout=5):
        """Send ``data`` on a new connection, half-close, and read until the
        server closes; the bytes received.  Fails if the server neither
        closes nor resets the connection within ``timeout`` seconds."""
        with self.connect(timeout=timeout) as s:
            try:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
            except OSError:         # the server may close before it read it all
                pass
            got, closed = read_until_eof(s, timeout)
        assert closed, "%s kept the connection open %s s after %r...; it sent %r" % (
            self.script, timeout, data[:60], got[:200])
        return got

    def probe(self, timeout=10):
        """One normal request of this server's protocol; assert its answer."""
        request, want = {
            "echo_server": (b"ping\n", b"ping\n"),
            "http_server": (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                            b"HTTP/1.1 200 OK\r\n"),
            "kv_server": (b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nQUIT\r\n", b"+PONG\r\n+OK\r\n"),
        }[self.name]
        got = self.exchange(request, timeout)
        assert got.startswith(want), "%s answered %r to a normal request; stderr: %s" % (
            self.script, got[:200], self.stderr())
        return got


def read_until_eof(s, timeout=5):
    """``(data, closed)``: everything ``s`` receives until EOF or a reset
    (``closed`` true) or until ``timeout`` seconds pass (``closed`` false)."""
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return bytes(buf), False
        s.settimeout(left)
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            return bytes(buf), False
        except OSError:             # ECONNRESET: the server closed with data unread
            return bytes(buf), True
        if not chunk:
            return bytes(buf), True
        buf += chunk


@pytest.fixture
def server():
    """``server(script, procs, *args)`` starts an example server; all are
    killed at the end of the test if still running."""
    started = []

    def start(script, procs=2, *args):
        s = Server(script, procs, *args)
        started.append(s)
        return s

    yield start
    for s in started:
        s.kill()

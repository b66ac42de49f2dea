"""Shared helpers for the pygmp test-suite (no fixtures here: see conftest.py).

Every helper that waits has an explicit bound, so a broken runtime makes a test
fail instead of hanging the suite.
"""
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import threading
import time as _stdtime

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pygmp_root():
    """The sys.path entry this process imports pygmp from (the installed
    package normally), so child interpreters import the same one."""
    import pygmp
    return os.path.dirname(os.path.dirname(os.path.abspath(pygmp.__file__)))


def _env(extra=None):
    env = os.environ.copy()
    pp = env.get("PYTHONPATH")
    env["PYTHONPATH"] = _pygmp_root() + (os.pathsep + pp if pp else "")
    env.pop("GOMAXPROCS", None)
    env.pop("GODEBUG", None)
    env["PYTHONUNBUFFERED"] = "0"
    if extra:
        env.update(extra)
    return env


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (for servers that
    must be told their port: gunicorn --reuse-port, redis-server)."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def write_script(src):
    fd, path = tempfile.mkstemp(prefix="pygmp_child_", suffix=".py")
    with os.fdopen(fd, "w") as f:
        f.write(textwrap.dedent(src))
    return path


def run_script(src, timeout=30, env=None):
    """Run `src` in a fresh interpreter; return CompletedProcess (text)."""
    path = write_script(src)
    try:
        return subprocess.run(
            [sys.executable, path], capture_output=True, text=True,
            timeout=timeout, env=_env(env), cwd=REPO,
        )
    finally:
        os.unlink(path)


def spawn_script(src, env=None):
    """Start `src` in a fresh interpreter; return (Popen, path)."""
    path = write_script(src)
    p = subprocess.Popen(
        [sys.executable, path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=_env(env), cwd=REPO,
    )
    return p, path


def recv_timeout(ch, timeout=10.0, what="value"):
    """Receive from `ch` (pygmp chan), failing the test after `timeout` s."""
    from pygmp import select
    from pygmp.time import after
    i, v = select(ch.recv, after(timeout).recv)
    if i == 1:
        raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
    return v


def in_goroutine(fn, *args, timeout=10.0, **kwargs):
    """Run fn(*args, **kwargs) in a goroutine; return its result or re-raise
    its exception here (so a failing assertion does not panic the process)."""
    from pygmp import chan, go
    done = chan(1)

    def body():
        try:
            res = (True, fn(*args, **kwargs))
        except Exception as e:  # noqa: BLE001 - re-raised in the caller
            res = (False, e)
        done.send(res)

    go(body)
    ok, r = recv_timeout(done, timeout, "goroutine %r" % getattr(fn, "__name__", fn))
    if not ok:
        raise r
    return r


def in_thread(fn, *args, timeout=10.0, **kwargs):
    """Run fn in a plain (non-goroutine) OS thread; return result / re-raise."""
    box = {}

    def body():
        try:
            box["r"] = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001
            box["e"] = e

    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise AssertionError("plain thread did not finish in %ss" % timeout)
    if "e" in box:
        raise box["e"]
    return box.get("r")


def wait_until(pred, timeout=5.0, interval=0.005, what="condition"):
    """Poll pred() (from the calling thread) until true; fail after timeout."""
    deadline = _stdtime.monotonic() + timeout
    while True:
        if pred():
            return
        if _stdtime.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        _stdtime.sleep(interval)


_GID_RE = re.compile(r"^goroutine (\d+) \[running\]:", re.M)


def my_goid():
    """The calling goroutine's id, parsed from pygmp.runtime.stack()."""
    from pygmp.runtime import stack
    m = _GID_RE.search(stack())
    assert m, "stack() did not start with 'goroutine N [running]:'"
    return int(m.group(1))


def wait_parked(gid, state_prefix, timeout=5.0):
    """Wait until stack(all=True) shows goroutine `gid` in a state that starts
    with `state_prefix` (e.g. 'chan send')."""
    from pygmp.runtime import stack
    pat = re.compile(r"^goroutine %d \[%s" % (gid, re.escape(state_prefix)), re.M)
    wait_until(lambda: pat.search(stack(all=True)) is not None, timeout,
               what="goroutine %d parked in %r" % (gid, state_prefix))


def is_ready(ch):
    """Non-blocking probe: does ch hold a value (or is closed)? Consumes it."""
    from pygmp import default, select
    i, v = select(ch.recv_, default)
    return i == 0


class gomaxprocs_set:
    """Context manager: set gomaxprocs(n), restore the previous value."""

    def __init__(self, n):
        self.n = n

    def __enter__(self):
        from pygmp.runtime import gomaxprocs
        self.prev = gomaxprocs(self.n)
        return self.prev

    def __exit__(self, *exc):
        from pygmp.runtime import gomaxprocs
        gomaxprocs(self.prev)
        return False


def wait_blocked(gid, timeout=5.0):
    """Wait until stack(all=True) shows goroutine `gid` parked (any wait
    state other than running / runnable)."""
    from pygmp.runtime import stack
    pat = re.compile(r"^goroutine %d \[([^\]]*)\]:" % gid, re.M)

    def parked():
        m = pat.search(stack(all=True))
        return m is not None and not m.group(1).startswith(("running", "runnable"))

    wait_until(parked, timeout, what="goroutine %d parked" % gid)

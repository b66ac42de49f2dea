"""pygmp.monkey: patch_subprocess().  Every patched scenario runs in a child
interpreter; each prints ``OK`` last and is bounded by a timeout."""
import subprocess
import textwrap

from _helpers import run_script

PRELUDE = """\
import os, sys, time, signal, subprocess
from pygmp.monkey._subprocess import patch_subprocess
from pygmp.monkey._threading import patch_threading
from pygmp.monkey import _core
patch_threading()
patch_subprocess()
import threading
from pygmp import go, chan, select, default
from pygmp.runtime import gomaxprocs
PY = sys.executable

def wait_all(ch, n, timeout=60):
    out = []
    deadline = time.monotonic() + timeout
    for _ in range(n):
        while True:
            i, v = select(ch.recv, default)
            if i == 0:
                out.append(v)
                break
            if time.monotonic() > deadline:
                raise SystemExit("timed out waiting for goroutines")
            time.sleep(0.001)
    return out

def in_g(fn, *args):
    box = chan(1)
    def run():
        try:
            box.send((True, fn(*args)))
        except BaseException as e:
            box.send((False, e))
    go(run)
    ok, v = wait_all(box, 1)[0]
    if not ok:
        raise v
    return v

class Ticker:
    # a goroutine that ticks every ms: it only runs if the worker is free
    def __init__(self):
        self.n = 0
        self.stop = False
        go(self.run)
    def run(self):
        from pygmp.time import sleep
        while not self.stop:
            sleep(0.001)
            self.n += 1
"""


def run_patched(src, gomaxprocs=1, timeout=90):
    r = run_script(PRELUDE + textwrap.dedent(src) + "\nprint('OK')\n", timeout=timeout,
                   env={"GOMAXPROCS": str(gomaxprocs)})
    assert r.returncode == 0 and r.stdout.rstrip().endswith("OK"), (
        "rc=%s\nstdout:\n%s\nstderr:\n%s" % (r.returncode, r.stdout[-3000:], r.stderr[-3000:]))
    return r


def test_this_process_is_not_patched():
    import pygmp.monkey._subprocess as _s
    assert _s.Popen is not subprocess.Popen
    assert subprocess.Popen.__module__ == "subprocess"


def test_concurrent_runs_do_not_serialize_the_worker():
    r = run_patched("""
        assert gomaxprocs() == 1
        code = "import time; time.sleep(1.0); print('hi')"
        t0 = time.monotonic()
        one = subprocess.run([PY, "-c", code], capture_output=True)
        t_one = time.monotonic() - t0
        done = chan(20)
        tick = Ticker()
        def w(i):
            r = subprocess.run([PY, "-c", code + "; print(%d)" % i], capture_output=True)
            done.send((r.returncode, r.stdout.split()))
        t0 = time.monotonic()
        for i in range(20):
            go(w, i)
        res = wait_all(done, 20)
        t_all = time.monotonic() - t0
        tick.stop = True
        assert sorted(int(o[1]) for _, o in res) == list(range(20)), res
        assert all(rc == 0 and o[0] == b"hi" for rc, o in res), res
        print("one run %.2fs, 20 concurrent runs %.2fs, ticks %d" % (t_one, t_all, tick.n))
        # serialized would be >= 20 s; allow for 20 interpreter start-ups on 2 slow cores
        assert t_all < t_one + 6.0, (t_one, t_all)
        assert tick.n > 100, tick.n      # the only worker kept running goroutines
    """)
    print(r.stdout)


def test_communicate_with_input_and_pipes():
    run_patched("""
        def body():
            p = subprocess.Popen([PY, "-c", "import sys; sys.stdout.write(sys.stdin.read().upper())"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            out, err = p.communicate(b"hello pygmp")
            assert (out, err, p.returncode) == (b"HELLO PYGMP", None, 0), (out, err)
            r = subprocess.run([PY, "-c", "import sys; print(sys.stdin.read()[::-1])"],
                               input="abc", capture_output=True, text=True)
            assert r.stdout == "cba\\n" and r.returncode == 0, r
            # pipe I/O by hand: line by line while the child keeps writing
            p = subprocess.Popen([PY, "-u", "-c",
                                  "import time\\nfor i in range(5):\\n print(i)\\n time.sleep(0.05)"],
                                 stdout=subprocess.PIPE, text=True)
            lines = [l.strip() for l in p.stdout]
            assert lines == ["0", "1", "2", "3", "4"], lines
            assert p.wait() == 0
            p.stdout.close()
            with subprocess.Popen([PY, "-c", "import sys; print(len(sys.stdin.read()))"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE) as p:
                p.stdin.write(b"x" * 100000)
                p.stdin.close()
                assert p.stdout.read().strip() == b"100000"
            assert p.returncode == 0
        tick = Ticker()
        in_g(body)
        tick.stop = True
    """)


def test_timeout_raises_and_kills_the_child():
    run_patched("""
        import tempfile
        pidfile = tempfile.mktemp()
        code = "import os, time; open(%r, 'w').write(str(os.getpid())); time.sleep(30)" % pidfile
        def body():
            t0 = time.monotonic()
            try:
                subprocess.run([PY, "-c", code], capture_output=True, timeout=1.0)
            except subprocess.TimeoutExpired as e:
                return time.monotonic() - t0, e.timeout
            raise AssertionError("no TimeoutExpired")
        dt, to = in_g(body)
        assert to == 1.0 and 0.9 <= dt < 10, dt
        pid = int(open(pidfile).read())
        os.unlink(pidfile)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            pass                     # killed and reaped by run()
        else:
            raise AssertionError("child %d still exists" % pid)
    """)


def test_popen_wait_timeout_check_output_and_signals():
    run_patched("""
        def body():
            out = {}
            p = subprocess.Popen([PY, "-c", "import time; time.sleep(30)"])
            t0 = time.monotonic()
            try:
                p.wait(timeout=0.3)
            except subprocess.TimeoutExpired:
                out["wait_to"] = time.monotonic() - t0
            p.kill()
            out["killed"] = p.wait(timeout=10)
            p = subprocess.Popen([PY, "-c", "import time; time.sleep(30)"])
            p.send_signal(signal.SIGTERM)
            out["term"] = p.wait()
            out["co"] = subprocess.check_output([PY, "-c", "print('out')"])
            try:
                subprocess.check_output([PY, "-c", "import sys; print('x'); sys.exit(3)"])
            except subprocess.CalledProcessError as e:
                out["cpe"] = (e.returncode, e.output)
            out["call"] = subprocess.call([PY, "-c", "import sys; sys.exit(5)"])
            out["gso"] = subprocess.getstatusoutput("echo hi; exit 2")
            return out
        out = in_g(body)
        assert 0.25 <= out["wait_to"] < 5, out
        assert out["killed"] == -signal.SIGKILL and out["term"] == -signal.SIGTERM, out
        assert out["co"] == b"out\\n" and out["cpe"] == (3, b"x\\n"), out
        assert out["call"] == 5 and out["gso"] == (2, "hi"), out
        # the main thread (not a goroutine) uses the same class, unpatched paths
        r = subprocess.run([PY, "-c", "print(1)"], capture_output=True, timeout=30)
        assert r.stdout == b"1\\n"
        p = subprocess.Popen([PY, "-c", "import time; time.sleep(30)"])
        try:
            p.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            pass
        p.kill(); assert p.wait() == -signal.SIGKILL
    """)


def test_patch_twice_and_get_original():
    run_patched("""
        P = subprocess.Popen
        patch_subprocess()
        assert subprocess.Popen is P and P.__module__ == "pygmp.monkey._subprocess"
        assert _core.is_module_patched("subprocess")
        OP = _core.get_original("subprocess", "Popen")
        assert OP.__module__ == "subprocess" and issubclass(P, OP)
        p = subprocess.Popen([PY, "-c", "pass"]); assert isinstance(p, OP); p.wait()
        try:
            subprocess.Popen(12)
        except TypeError:
            pass
        else:
            raise AssertionError("Popen(12) must raise TypeError")
    """)

"""Preemption (DESIGN §6, HACKING.md "Preemption"): cooperative and asynchronous.

Process-level behaviour (GOMAXPROCS=1 with a goroutine spinning in a loop that
never enters the runtime) runs in subprocesses, each bounded by a timeout.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from _helpers import run_script  # noqa: E402

# one-P runtimes in fresh interpreters
ONE_P = {"GOMAXPROCS": "1"}


def _run(src, env=None, timeout=60):
    e = dict(ONE_P)
    if env:
        e.update(env)
    r = run_script(src, timeout=timeout, env=e)
    assert r.returncode == 0, "exit %d\nstdout:\n%s\nstderr:\n%s" % (r.returncode, r.stdout, r.stderr)
    return r


def test_spinning_goroutine_does_not_hold_its_p():
    # a pure-Python loop that never enters the runtime, at GOMAXPROCS=1: the
    # others must still run, and the loop resumes exactly where it was
    r = _run("""
        import time
        from pygmp import go, chan
        from pygmp.time import sleep
        import pygmp._hot as hot
        stop = [False]
        res = chan(1)
        def spin(n):
            x = 0
            i = 0
            while not stop[0]:
                x += i * i
                i += 1
            res.send((x, i))
        go(spin, 0)
        done = chan()
        def other():
            for _ in range(20):
                sleep(0.001)
            done.send(True)
        go(other)
        t0 = time.monotonic()
        done.recv()
        stop[0] = True
        x, i = res.recv()
        assert x == sum(k * k for k in range(i)), "the loop's state was lost"
        st = hot.preempt_stats()
        assert st["async"] >= 1, st
        print("ok", round(time.monotonic() - t0, 2), st["async"])
    """)
    assert r.stdout.startswith("ok")


def test_asyncpreemptoff_keeps_the_p():
    # as Go with GODEBUG=asyncpreemptoff=1: the loop keeps its P until it ends
    r = _run("""
        import time
        from pygmp import go, chan
        import pygmp._hot as hot
        order = []
        done = chan(2)
        started = []
        def spin():
            started.append(1)
            t = time.monotonic() + 0.5
            while time.monotonic() < t:
                pass
            order.append("spin")
            done.send(1)
        def other():
            order.append("other")
            done.send(1)
        go(spin)
        while not started:     # main has no P: it waits until spin runs
            time.sleep(0.005)
        go(other)
        done.recv(); done.recv()
        assert order == ["spin", "other"], order
        st = hot.preempt_stats()
        assert st["async"] == 0 and not st["async_available"], st
        print("ok")
    """, env={"GODEBUG": "asyncpreemptoff=1"})
    assert r.stdout.strip() == "ok"


def test_cooperative_preemption_at_a_runtime_entry():
    # asynchronous preemption off: a loop that enters the runtime without ever
    # blocking (a buffered channel it fills and drains) still yields its P
    r = _run("""
        import time
        from pygmp import go, chan
        import pygmp._hot as hot
        order = []
        done = chan(2)
        started = []
        def busy():
            started.append(1)
            c = chan(1)
            t = time.monotonic() + 1.0
            while time.monotonic() < t:
                c.send(1)
                c.recv()
            order.append("busy")
            done.send(1)
        def other():
            order.append("other")
            done.send(1)
        go(busy)
        while not started:
            time.sleep(0.005)
        go(other)
        done.recv(); done.recv()
        assert order == ["other", "busy"], order
        assert hot.preempt_stats()["cooperative"] >= 1, hot.preempt_stats()
        print("ok")
    """, env={"GODEBUG": "asyncpreemptoff=1"})
    assert r.stdout.strip() == "ok"


def test_two_spinners_share_one_p():
    # both loops make progress: each is preempted in turn
    r = _run("""
        import time
        from pygmp import go, chan
        counts = [0, 0]
        stop = [False]
        done = chan(2)
        def spin(k):
            while not stop[0]:
                counts[k] += 1
            done.send(k)
        go(spin, 0)
        go(spin, 1)
        time.sleep(0.5)
        snap = list(counts)
        stop[0] = True
        done.recv(); done.recv()
        assert snap[0] > 0 and snap[1] > 0, snap
        print("ok", snap)
    """)
    assert r.stdout.startswith("ok")


def test_no_preemption_in_a_nopreempt_section():
    # Go's m.locks: a goroutine inside a runtime critical section is never
    # preempted asynchronously (the other goroutine waits until it leaves)
    r = _run("""
        import time
        from pygmp import go, chan
        import pygmp._hot as hot
        order = []
        done = chan(2)
        started = []
        def crit():
            hot.nopreempt(1)
            started.append(1)
            try:
                t = time.monotonic() + 0.3
                while time.monotonic() < t:
                    pass
                order.append("crit")
            finally:
                hot.nopreempt(-1)
            done.send(1)
        def other():
            order.append("other")
            done.send(1)
        go(crit)
        while not started:
            time.sleep(0.005)
        go(other)
        done.recv(); done.recv()
        assert order == ["crit", "other"], order
        assert hot.preempt_stats()["refused"] >= 1, hot.preempt_stats()
        print("ok")
    """)
    assert r.stdout.strip() == "ok"


def test_not_preempted_inside_stdlib_code_holding_its_lock():
    # logging.Handler.handle holds the handler's RLock (not goroutine-aware)
    # while it formats the record, which runs the message's __str__: a slow
    # __str__ is not preempted there, or another goroutine of the same worker
    # would re-enter the RLock (same OS thread) and write its record first
    r = _run("""
        import io, logging, time
        from pygmp import go, chan
        buf = io.StringIO()
        h = logging.StreamHandler(buf)
        h.setFormatter(logging.Formatter("%(message)s"))
        log = logging.getLogger("t")
        log.addHandler(h)
        log.propagate = False
        log.setLevel(logging.INFO)
        done = chan(2)
        started = []
        class Slow:
            def __str__(self):
                started.append(1)
                t = time.monotonic() + 0.3
                while time.monotonic() < t:
                    pass
                return "slow"
        def slow():
            log.info("%s", Slow())
            done.send(1)
        def other():
            log.info("other")
            done.send(1)
        go(slow)
        while not started:
            time.sleep(0.005)
        go(other)
        done.recv(); done.recv()
        assert buf.getvalue().split() == ["slow", "other"], buf.getvalue()
        print("ok")
    """)
    assert r.stdout.strip() == "ok"


def test_settrace_tracer_sees_every_line_across_preemptions():
    # a user's sys.settrace tracer inside a preempted goroutine keeps seeing
    # exactly its events; preemption happens at function entries only
    r = _run("""
        import sys, time
        from pygmp import go, chan
        import pygmp._hot as hot
        stop = [False]
        res = chan(2)
        def step(x):
            return x + 1
        def traced(n):
            lines = [0]
            def tracer(frame, event, arg):
                if event == "line" and frame.f_code is step.__code__:
                    lines[0] += 1
                return tracer
            sys.settrace(tracer)
            x = 0
            for _ in range(n):
                x = step(x)
            sys.settrace(None)
            res.send((x, lines[0], sys.gettrace()))
        def spin():
            while not stop[0]:
                pass
            res.send(None)
        go(spin)
        go(traced, 300000)
        out = res.recv()
        if out is None:
            out = res.recv()
        stop[0] = True
        x, lines, after = out
        assert x == 300000 and lines == 300000, (x, lines)
        assert after is None
        print("ok", hot.preempt_stats()["async"])
    """)
    assert r.stdout.startswith("ok")


def test_thread_state_is_clean_after_preemptions():
    # tracing counters and the trace function are as they were on every worker
    r = _run("""
        import sys, time
        from pygmp import go, chan
        import pygmp._hot as hot
        stop = [False]
        res = chan(4)
        def spin(k):
            while not stop[0]:
                pass
            res.send(hot.tstate_info())
        for k in range(3):
            go(spin, k)
        time.sleep(0.4)
        stop[0] = True
        infos = [res.recv() for _ in range(3)]
        for tracing, use_tracing, ours, has_trace, has_prof, nopre in infos:
            assert tracing == 0 and not ours and not has_trace and nopre == 0, infos
            assert use_tracing in (0, -1), infos
        assert hot.preempt_stats()["async"] >= 2, hot.preempt_stats()
        print("ok")
    """)
    assert r.stdout.strip() == "ok"


def test_exit_status_kept_with_a_goroutine_spinning():
    # at exit every worker freezes at a safe point; a spinning goroutine is
    # preempted into one, so sys.exit's status is kept
    r = run_script("""
        import sys, time
        from pygmp import go
        def spin():
            while True:
                pass
        go(spin)
        time.sleep(0.05)
        sys.exit(3)
    """, timeout=30, env=ONE_P)
    assert r.returncode == 3, (r.returncode, r.stderr)


def test_logging_beside_tight_loops_short():
    # the 60 s version is test_logging_under_constant_preemption (stress)
    _logging_soak(2.0)


@pytest.mark.stress
def test_logging_under_constant_preemption():
    _logging_soak(60.0)


def _logging_soak(seconds):
    # preemption armed constantly (time slice 0) while goroutines log through
    # one handler (its lock is a threading.RLock) beside tight loops
    r = _run("""
        import io, logging, time, threading
        from pygmp import go, chan
        from pygmp.sync import WaitGroup
        import pygmp._hot as hot
        SECONDS = %r
        buf = io.StringIO()
        h = logging.StreamHandler(buf)
        h.setFormatter(logging.Formatter("%%(message)s"))
        log = logging.getLogger("soak")
        log.addHandler(h)
        log.setLevel(logging.INFO)
        log.propagate = False
        stop = [False]
        wg = WaitGroup()
        counts = [0] * 8
        def logger(k):
            n = 0
            while not stop[0]:
                log.info("g%%d line %%d %%s", k, n, "x" * (n %% 50))
                n += 1
            counts[k] = n
            wg.done()
        def spinner():
            x = 0
            while not stop[0]:
                x += 1
            wg.done()
        wg.add(8 + 2)
        for k in range(8):
            go(logger, k)
        for _ in range(2):
            go(spinner)
        time.sleep(SECONDS)
        stop[0] = True
        wg.wait()
        lines = buf.getvalue().splitlines()
        seen = {}
        for ln in lines:
            parts = ln.split(" ")
            assert len(parts) == 4 and parts[1] == "line", repr(ln)
            k, n = int(parts[0][1:]), int(parts[2])
            assert parts[3] == "x" * (n %% 50), repr(ln)
            assert seen.get(k, -1) == n - 1, (k, n, seen.get(k))
            seen[k] = n
        assert sum(counts) == len(lines), (sum(counts), len(lines))
        st = hot.preempt_stats()
        assert st["async"] > 0, st
        print("ok", len(lines), st)
    """ % seconds, env={"GOMAXPROCS": "2", "PYGMP_TIMESLICE_US": "0"}, timeout=seconds + 60)
    assert r.stdout.startswith("ok")


def test_cooperative_preemption_at_sync_and_handoff_entries():
    # runtime entries written in Python (sync, the handoff) check the flag too
    r = _run("""
        import time
        from pygmp import go, chan, syscall
        from pygmp.sync import Mutex
        import pygmp._hot as hot
        order = []
        done = chan(2)
        started = []
        def busy():
            started.append(1)
            mu = Mutex()
            t = time.monotonic() + 1.0
            while time.monotonic() < t:
                mu.lock()
                mu.unlock()
                syscall.call(int, 1)
            order.append("busy")
            done.send(1)
        def other():
            order.append("other")
            done.send(1)
        go(busy)
        while not started:
            time.sleep(0.005)
        go(other)
        done.recv(); done.recv()
        assert order == ["other", "busy"], order
        print("ok")
    """, env={"GODEBUG": "asyncpreemptoff=1"})
    assert r.stdout.strip() == "ok"


COV_A = """
def step(x):
    return x + 1
def a_loop(n):
    i = 0
    while i < n:
        i = step(i)
        i += 1
        i -= 1
    return i
"""
COV_B = """
def b_loop(stop):
    k = 0
    while not stop[0]:
        k += 1
        if k < 0:
            k = 7
            k = 8
            k = 9
    return k
"""
COV_MAIN = """
from pygmp import go, chan
import pygmp._hot as hot
import mod_a, mod_b
stop = [False]
done = chan(2)
go(lambda: done.send(mod_a.a_loop(100000)))
go(lambda: done.send(mod_b.b_loop(stop)))
done.recv()
stop[0] = True
done.recv()
print(hot.preempt_stats()["async"])
"""


@pytest.mark.timeout(120)
def test_coverage_records_right_lines_under_preemption(tmp_path):
    # coverage.py with concurrency = greenlet,thread (as pyproject.toml sets
    # for the project) keeps a frame stack per greenlet: after preemptions
    # every line is counted in its own file, and never-run lines stay missing
    pytest.importorskip("coverage")
    import subprocess
    from _helpers import _env
    (tmp_path / "mod_a.py").write_text(COV_A)
    (tmp_path / "mod_b.py").write_text(COV_B)
    (tmp_path / "main_cov.py").write_text(COV_MAIN)
    env = _env({"GOMAXPROCS": "1"})
    r = subprocess.run([sys.executable, "-m", "coverage", "run", "--concurrency=greenlet,thread",
                        "main_cov.py"], cwd=tmp_path, capture_output=True, text=True, timeout=100, env=env)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.split()[-1]) >= 1, r.stdout      # preempted
    r = subprocess.run([sys.executable, "-m", "coverage", "report", "-m", "--include=mod_*"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=60, env=env)
    rows = {ln.split()[0]: ln.split() for ln in r.stdout.splitlines() if ln.startswith("mod_")}
    assert rows["mod_a.py"][3] == "100%", r.stdout
    assert rows["mod_b.py"][4:] == ["7-10"], r.stdout     # the `if k < 0:` body only


def test_cooperative_preemption_at_sleep_zero():
    # sleep(0) returns at once, but it is a runtime entry
    r = _run("""
        import time
        from pygmp import go, chan
        from pygmp.time import sleep
        order = []
        done = chan(2)
        started = []
        def busy():
            started.append(1)
            t = time.monotonic() + 1.0
            while time.monotonic() < t:
                sleep(0)
            order.append("busy")
            done.send(1)
        def other():
            order.append("other")
            done.send(1)
        go(busy)
        while not started:
            time.sleep(0.005)
        go(other)
        done.recv(); done.recv()
        assert order == ["other", "busy"], order
        print("ok")
    """, env={"GODEBUG": "asyncpreemptoff=1"})
    assert r.stdout.strip() == "ok"

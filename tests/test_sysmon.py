"""sysmon (csrc/sysmon.c): GODEBUG schedtrace/scheddetail/schedstall, the stall
report, its metrics, the idle deep sleep, and the syscall keep-alive setting.
Process-level behaviour runs in subprocesses, each bounded by a timeout."""
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from _helpers import run_script  # noqa: E402

SCHED_RE = re.compile(
    r"^SCHED (\d+)ms: gomaxprocs=(\d+) idleprocs=(\d+) threads=(\d+) spinningthreads=(\d+) "
    r"needspinning=(\d+) idlethreads=(\d+) runqueue=(\d+) \[([0-9 ]*)\] schedticks=\[([0-9 ]*)\]$")


def _run(src, env, timeout=60):
    r = run_script(src, timeout=timeout, env=env)
    assert r.returncode == 0, "exit %d\nstdout:\n%s\nstderr:\n%s" % (r.returncode, r.stdout, r.stderr)
    return r


@pytest.mark.timeout(90)
def test_schedtrace_prints_go_line():
    r = _run("""
        import time
        from pygmp import go, chan
        from pygmp.time import sleep
        def w():
            for _ in range(50):
                sleep(0.01)
        for _ in range(4):
            go(w)
        time.sleep(0.7)
        import os
        print(len(os.listdir("/proc/self/task")))
    """, {"GODEBUG": "schedtrace=100", "GOMAXPROCS": "2"})
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("SCHED")]
    assert len(lines) >= 4, r.stderr
    ms = []
    for ln in lines:
        m = SCHED_RE.match(ln)
        assert m, ln
        ms.append(int(m.group(1)))
        assert m.group(2) == "2"
        assert len(m.group(9).split()) == 2 and len(m.group(10).split()) == 2
        assert int(m.group(4)) >= 4          # main, sysmon, 2 workers: the OS's count
    assert ms[0] < 500, lines                # the first line comes at once (SCHED 0ms; a loaded
                                             # machine may start the process slowly)
    assert ms == sorted(ms)
    # every 100 ms (a line is late when sysmon waited for the GIL; the next is
    # then due 100 ms after the previous one was due)
    gaps = [b - a for a, b in zip(ms, ms[1:])]
    assert min(gaps) >= 40 and 80 <= sum(gaps) / len(gaps) <= 250, gaps


@pytest.mark.timeout(60)
def test_scheddetail_adds_p_m_g_lines():
    r = _run("""
        import time
        from pygmp import go, chan
        c = chan()
        go(c.recv)
        time.sleep(0.35)
        c.send(1)
    """, {"GODEBUG": "schedtrace=100,scheddetail=1", "GOMAXPROCS": "2"})
    err = r.stderr
    assert re.search(r"^SCHED \d+ms: gomaxprocs=2 idleprocs=\d+ threads=\d+ .* runqueue=\d+ "
                     r"gcwaiting=false nmidlelocked=0 stopwait=0 sysmonwait=(true|false)$", err, re.M), err
    assert re.search(r"^  P0: status=\d+ schedtick=\d+ syscalltick=\d+ m=\d+ runqsize=\d+ "
                     r"gfreecnt=\d+ timerslen=\d+$", err, re.M), err
    assert re.search(r"^  P1: status=", err, re.M), err
    assert re.search(r"^  M\d+: p=(\d+|nil) curg=(\d+|nil) mallocing=0 throwing=0 preemptoff= "
                     r"locks=0 dying=0 spinning=(true|false) blocked=(true|false) lockedg=(\d+|nil)$",
                     err, re.M), err
    assert re.search(r"^  G1: status=\d+\(.*\) m=(\d+|nil) lockedm=(\d+|nil)$", err, re.M), err
    assert re.search(r"^  G\d+: status=4\(chan receive\) ", err, re.M), err


@pytest.mark.timeout(60)
def test_no_godebug_no_output_unknown_keys_ignored():
    src = """
        import time
        from pygmp import go
        from pygmp.time import sleep
        go(sleep, 0.01)
        time.sleep(0.3)
        print("done")
    """
    r = _run(src, {})
    assert "SCHED" not in r.stderr and r.stderr == "", r.stderr
    r = _run(src, {"GODEBUG": "gctrace=1,madeup=7,schedtrace=100"})
    assert "SCHED" in r.stderr
    assert "madeup" not in r.stderr and "gctrace" not in r.stderr


STALL_SRC = """
    import time
    from pygmp import go, chan, metrics
    done = chan()
    def blocker():
        time.sleep(0.3)          # a blocking call made inline: no handoff
        done.send(1)
    go(blocker)
    done.recv()
    time.sleep(0.05)
    print(metrics.read(["/pygmp/sched/stalls:events"])["/pygmp/sched/stalls:events"])
"""


@pytest.mark.timeout(60)
def test_schedstall_reports_inline_blocking_call_once():
    r = _run(STALL_SRC, {"GODEBUG": "schedstall=1", "GOMAXPROCS": "1"})
    err = r.stderr
    heads = re.findall(r"^pygmp: schedstall: goroutine (\d+) \((\w+)\) has held P0's worker "
                       r"thread for (\d+) ms", err, re.M)
    assert len(heads) == 1, err
    gid, fn, ms = heads[0]
    assert fn == "blocker" and int(ms) >= 100, err
    assert re.search(r"^goroutine %s \[running, \d+ ms\]:$" % gid, err, re.M), err
    assert "time.sleep(0.3)" in err and "in blocker" in err, err
    assert re.search(r"^created by .* in goroutine 1$", err, re.M), err
    assert int(r.stdout.split()[-1]) == 1


@pytest.mark.timeout(60)
def test_stall_counted_without_report():
    r = _run(STALL_SRC, {"GOMAXPROCS": "1"})
    assert "schedstall" not in r.stderr
    assert int(r.stdout.split()[-1]) == 1


@pytest.mark.timeout(60)
def test_schedstall_reports_unpreemptible_loop():
    # with asynchronous preemption off a pure-Python loop cannot be preempted
    r = _run("""
        import time
        from pygmp import go, chan
        done = chan()
        def spin():
            t = time.monotonic() + 0.3
            while time.monotonic() < t:
                pass
            done.send(1)
        go(spin)
        done.recv()
    """, {"GODEBUG": "asyncpreemptoff=1,schedstall=1", "GOMAXPROCS": "1"})
    assert re.search(r"goroutine \d+ \(spin\) has held P0's worker thread", r.stderr), r.stderr


@pytest.mark.timeout(60)
def test_no_stall_for_preemptible_loop():
    r = _run("""
        import time
        from pygmp import go, chan, metrics
        done = chan()
        def spin():
            t = time.monotonic() + 0.4
            while time.monotonic() < t:
                pass
            done.send(1)
        go(spin)
        done.recv()
        v = metrics.read(["/pygmp/sched/stalls:events", "/pygmp/sched/preemptions-async:events"])
        print(v["/pygmp/sched/stalls:events"], v["/pygmp/sched/preemptions-async:events"])
    """, {"GODEBUG": "schedstall=1", "GOMAXPROCS": "1"})
    stalls, npre = map(int, r.stdout.split())
    # preempted every ~10 ms; a stall would need a 100 ms gap (one is allowed
    # for a machine that did not run this process for that long)
    assert stalls <= 1 and npre >= 3, (r.stdout, r.stderr)
    assert stalls or "schedstall" not in r.stderr


@pytest.mark.timeout(60)
def test_sysmon_sleeps_while_idle():
    # 1,000 parked goroutines, every P idle: sysmon is asleep (no rounds)
    r = _run("""
        import time
        from pygmp import go, chan
        import pygmp._hot as hot
        c = chan()
        for _ in range(1000):
            go(c.recv)
        t = time.monotonic() + 5          # every P idle for 50 ms, then sysmon sleeps
        while not hot.sysmon_stats()["deep"] and time.monotonic() < t:
            time.sleep(0.05)
        w0 = hot.sysmon_stats()["wakeups"]
        t0 = time.process_time()
        time.sleep(1.0)
        w1 = hot.sysmon_stats()["wakeups"]
        cpu = time.process_time() - t0
        print(w1 - w0, round(cpu, 4), hot.sysmon_stats()["deep"])
    """, {"GOMAXPROCS": "2"})
    rounds, cpu, deep = r.stdout.split()
    # at most one look per second (a wake-up for the stack cache's scavenger)
    assert int(rounds) <= 3 and deep == "1", r.stdout
    assert float(cpu) < 0.05, r.stdout


@pytest.mark.timeout(60)
def test_sysmon_metrics_and_latency_histogram():
    r = _run("""
        from pygmp import go, chan, metrics
        names = ["/sched/latencies:seconds", "/pygmp/sysmon/wakeups:events",
                 "/pygmp/sysmon/netpolls:calls", "/pygmp/sched/stalls:events",
                 "/pygmp/sched/preemptions-cooperative:events",
                 "/pygmp/sched/preemptions-async:events",
                 "/pygmp/sched/preemptions-refused:events"]
        a, b = chan(), chan()
        def pong():
            for v in a:
                b.send(v)
        go(pong)
        for i in range(2000):
            a.send(i)
            b.recv()
        v = metrics.read(names)
        h = v["/sched/latencies:seconds"]
        assert len(h["buckets"]) == len(h["counts"]) and h["buckets"][-1] == float("inf")
        print(sum(h["counts"]), v["/pygmp/sysmon/wakeups:events"])
    """, {"GOMAXPROCS": "1"})
    samples, wakeups = map(int, r.stdout.split())
    assert samples >= 100, r.stdout     # 1 in 8 of ~4,000 transitions
    assert wakeups >= 1


@pytest.mark.timeout(60)
def test_syscall_keepalive_setting_threads_fall_back():
    r = _run("""
        import time
        from pygmp import go, chan, syscall, metrics
        from pygmp.sync import WaitGroup
        wg = WaitGroup()
        def blocking():
            syscall.call(time.sleep, 0.05)
            wg.done()
        wg.add(20)
        for _ in range(20):
            go(blocking)
        wg.wait()
        n = metrics.read(["/pygmp/threads/syscall:threads"])["/pygmp/threads/syscall:threads"]
        t0 = time.monotonic()
        while time.monotonic() - t0 < 5:
            m = metrics.read(["/pygmp/threads/syscall:threads"])["/pygmp/threads/syscall:threads"]
            if m == 0:
                break
            time.sleep(0.05)
        from pygmp import _hot
        print(n, m, round(time.monotonic() - t0, 2), _hot.sysmon_stats()["retires"])
    """, {"GOMAXPROCS": "2", "PYGMP_SYSCALL_KEEPALIVE_MS": "200"})
    n, m, dt, retires = r.stdout.split()
    assert int(n) >= 2 and int(m) == 0 and float(dt) < 3, r.stdout
    assert int(retires) >= 1, r.stdout       # sysmon retired them (no self-timed waits)


@pytest.mark.timeout(90)
def test_threads_example_threads_rise_and_fall():
    import subprocess
    from _helpers import REPO, _env
    r = subprocess.run([sys.executable, os.path.join(REPO, "examples", "threads.py"), "-n", "500",
                        "--callers", "20", "--busy", "0.4", "--keepalive", "0.3", "--interval", "0.05"],
                       capture_output=True, text=True, timeout=60, env=_env({"GOMAXPROCS": "2"}))
    assert r.returncode == 0, r.stderr
    m = re.search(r"peak (\d+) OS threads with (\d+) calls in flight; (\d+) at the end", r.stdout)
    assert m, r.stdout
    peak, calls, end = map(int, m.groups())
    assert calls >= 10 and peak >= calls, r.stdout
    assert end <= 2 + 3, r.stdout            # GOMAXPROCS + 3 after the keep-alive

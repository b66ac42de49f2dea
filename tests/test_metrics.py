"""pygmp.metrics (API.md "pygmp.metrics"): runtime metrics by name."""
import math
import os
import sys
import threading
import time as stdtime

import psutil
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _helpers import gomaxprocs_set, in_goroutine, recv_timeout, run_script, wait_until  # noqa: E402

from pygmp import chan, go, metrics, syscall  # noqa: E402
from pygmp.runtime import num_goroutine  # noqa: E402

GO_NAMES = ["/sched/gomaxprocs:threads", "/sched/goroutines:goroutines",
            "/sched/latencies:seconds"]
OWN_NAMES = ["/pygmp/threads/os:threads", "/pygmp/threads/runtime:threads",
             "/pygmp/syscall/handoffs:calls", "/pygmp/syscall/inline:calls",
             "/pygmp/sched/steals:goroutines", "/pygmp/sched/preemptions:events",
             "/pygmp/netpoll/ready-local:goroutines", "/pygmp/netpoll/ready-remote:goroutines"]


def test_all_lists_described_metrics():
    entries = metrics.all()
    names = [n for n, _k, _d in entries]
    assert names == sorted(names)
    assert len(set(names)) == len(names)
    for n in GO_NAMES + OWN_NAMES:
        assert n in names
    for name, kind, desc in entries:
        assert name.startswith("/") and ":" in name
        assert kind in ("uint64", "float64-histogram")
        assert isinstance(desc, str) and len(desc) > 20
    kinds = dict((n, k) for n, k, _d in entries)
    assert kinds["/sched/latencies:seconds"] == "float64-histogram"
    assert kinds["/sched/goroutines:goroutines"] == "uint64"
    assert "preempt" in dict((n, d) for n, _k, d in entries)["/pygmp/sched/preemptions:events"]


def test_read_every_metric():
    names = [n for n, _k, _d in metrics.all()]
    vals = metrics.read(names)
    assert set(vals) == set(names)
    kinds = dict((n, k) for n, k, _d in metrics.all())
    for n, v in vals.items():
        if kinds[n] == "uint64":
            assert isinstance(v, int) and v >= 0, (n, v)
        else:
            assert len(v["buckets"]) == len(v["counts"])
            assert v["buckets"] == sorted(v["buckets"])
            assert math.isinf(v["buckets"][-1])


def test_unknown_names_raise_value_error():
    with pytest.raises(ValueError) as ei:
        metrics.read(["/sched/goroutines:goroutines", "/no/such:thing", "/other:x"])
    msg = str(ei.value)
    assert "/no/such:thing" in msg and "/other:x" in msg
    assert "/sched/goroutines" not in msg


def test_single_string_name():
    assert set(metrics.read("/sched/gomaxprocs:threads")) == {"/sched/gomaxprocs:threads"}


def test_gomaxprocs_metric():
    with gomaxprocs_set(3):
        assert metrics.read(["/sched/gomaxprocs:threads"])["/sched/gomaxprocs:threads"] == 3
    with gomaxprocs_set(1):
        assert metrics.read(["/sched/gomaxprocs:threads"])["/sched/gomaxprocs:threads"] == 1


@pytest.mark.timeout(30)
def test_goroutines_metric():
    name = "/sched/goroutines:goroutines"
    before = metrics.read([name])[name]
    assert before == num_goroutine()
    gate = chan()
    started = chan(10)

    def w():
        started.send(None)
        gate.recv()
    for _ in range(10):
        go(w)
    for _ in range(10):
        recv_timeout(started, 5)
    assert metrics.read([name])[name] >= before + 10
    gate.close()
    wait_until(lambda: metrics.read([name])[name] <= before, 5, what="goroutines to end")


def test_os_threads_metric():
    name = "/pygmp/threads/os:threads"
    v = metrics.read([name])[name]
    assert abs(v - psutil.Process().num_threads()) <= 2
    rt = metrics.read(["/pygmp/threads/runtime:threads"])["/pygmp/threads/runtime:threads"]
    assert 1 <= rt < v


@pytest.mark.timeout(30)
def test_syscall_counters_and_latency_histogram():
    names = ["/pygmp/syscall/handoffs:calls", "/pygmp/syscall/inline:calls",
             "/sched/latencies:seconds", "/pygmp/threads/syscall:threads"]
    before = metrics.read(names)

    def slow():
        stdtime.sleep(0.002)

    def fast():
        return 1

    def body():
        for _ in range(5):
            syscall.call(slow)
        for _ in range(20):
            syscall.call(fast)
    in_goroutine(body)
    after = metrics.read(names)
    dh = after[names[0]] - before[names[0]]
    di = after[names[1]] - before[names[1]]
    assert dh >= 5 and di >= 1 and dh + di == 25
    hb, ha = before[names[2]], after[names[2]]
    # sampled (1 in 8 transitions, every kind): it never shrinks
    assert sum(ha["counts"]) >= sum(hb["counts"])
    assert after[names[3]] >= 1


@pytest.mark.timeout(30)
def test_steals_counter_moves():
    name = "/pygmp/sched/steals:goroutines"
    s0 = metrics.read([name])[name]
    with gomaxprocs_set(4):
        done = chan(200)

        def spawner():
            for i in range(200):
                go(lambda: (stdtime.sleep(0.001), done.send(None)))
            # the spawning P is busy in a blocking sleep; idle Ps steal
            stdtime.sleep(0.2)
        go(spawner)
        for _ in range(200):
            recv_timeout(done, 10)
    assert metrics.read([name])[name] > s0


@pytest.mark.timeout(30)
def test_signal_subscriptions_metric():
    import signal
    import pygmp.signal as gsignal
    name = "/pygmp/signal/subscriptions:channels"
    n0 = metrics.read([name])[name]
    c = chan(1)
    gsignal.notify(c, signal.SIGUSR1)
    try:
        assert metrics.read([name])[name] == n0 + 1
    finally:
        gsignal.stop(c)
    assert metrics.read([name])[name] == n0


@pytest.mark.timeout(60)
def test_fresh_process_values():
    r = run_script("""
        from pygmp import metrics
        v = metrics.read(["/sched/goroutines:goroutines", "/pygmp/sched/preemptions:events",
                          "/pygmp/syscall/handoffs:calls"])
        print(v["/sched/goroutines:goroutines"], v["/pygmp/sched/preemptions:events"],
              v["/pygmp/syscall/handoffs:calls"])
        """, env={"GOMAXPROCS": "2"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", "0", "0"]

#!/usr/bin/env python3
"""Core benchmarks: pygmp side by side with gevent (and Go, where installed).

    python bench/core.py                 # full run, ~5-10 min on 2 cores
    python bench/core.py --quick         # smoke test: small sizes, 1 rep
    python bench/core.py --only spawn    # one benchmark (repeatable, comma list)
    python bench/core.py --reps 9 --plot # more repetitions, write core.png
    python bench/core.py --install-go    # apt-get install golang-go if missing

Every (benchmark, runtime, repetition) runs in a fresh child process of the
interpreter running this script (PYTHONPATH and the rest of the environment
are passed through), so the runtimes never share a process. The driver
reports the median over the repetitions and the ratio pygmp / gevent (and
pygmp / Go), prints a markdown table and writes bench/results/core.json.

pygmp runs twice: with GOMAXPROCS=1 ("pygmp P=1") and with GOMAXPROCS unset,
i.e. the runtime's default ("pygmp P=N"; N is what the child reports).

This file is also the child: ``core.py --child BENCH --runtime RT --n N``
runs one benchmark once and prints ``RESULT {json}`` as its last stdout line.
Nothing here imports pygmp or gevent at import time.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
GO_SRC = os.path.join(HERE, "go", "core.go")

# ---------------------------------------------------------------------------
# Benchmark table
#
# Each benchmark is run by each of its runtimes; a child prints a dict of
# metrics; each row of the report picks one metric out of it.
#   runtimes: which of "gevent", "go", "pygmp1" (GOMAXPROCS=1), "pygmpN"
#             (default GOMAXPROCS) run it.
#   go_env:   extra environment for the Go child; go_args: extra flags.
#   rows:     (metric, label, unit, better, target)
#             better: "lower" | "higher"; target: (kind, value, text) or None,
#             kind "ratio" = pygmp/gevent ratio bound, "abs_gomaxprocs+" =
#             pygmp value <= GOMAXPROCS + value.
# ---------------------------------------------------------------------------

ALL_RT = ["gevent", "go", "pygmp1", "pygmpN"]

BENCHES = {
    "spawn": dict(
        title="spawn+join {n:,} trivial goroutines",
        n=100_000, quick_n=10_000,
        runtimes=ALL_RT,
        rows=[("us_per_goroutine", "spawn+join {n:,} (from main)",
               "µs/goroutine", "lower", ("ratio", 0.2, "≤ 0.2× gevent"))],
    ),
    "spawn_g": dict(
        title="spawn+join {n:,} trivial goroutines, from a goroutine",
        n=100_000, quick_n=10_000,
        runtimes=ALL_RT, go_bench="spawng",
        rows=[("us_per_goroutine", "spawn+join {n:,} (from a goroutine)",
               "µs/goroutine", "lower", ("ratio", 0.2, "≤ 0.2× gevent"))],
    ),
    "pingpong_1p": dict(
        title="unbuffered ping-pong, one P ({n:,} round trips)",
        n=50_000, quick_n=5_000,
        runtimes=ALL_RT, go_bench="pingpong",
        go_env={"GOMAXPROCS": "1"},
        rows=[("us_per_roundtrip", "ping-pong, one P", "µs/round trip", "lower",
               ("ratio", 0.25, "≤ 0.25× gevent"))],
    ),
    "pingpong_2p": dict(
        title="unbuffered ping-pong across two Ps ({n:,} round trips)",
        n=5_000, quick_n=500,
        runtimes=["go", "pygmpN"], go_bench="pingpong",
        go_env={"GOMAXPROCS": "2"}, go_args=["-lock"],
        rows=[("us_per_roundtrip", "ping-pong, across two Ps", "µs/round trip",
               "lower", None)],
    ),
    "wake_2p": dict(
        title="cross-P wake-up latency ({n:,} samples, 2 ms apart)",
        n=300, quick_n=50,
        runtimes=["go", "pygmpN"], go_bench="wake",
        go_env={"GOMAXPROCS": "2"}, go_args=["-lock"],
        rows=[("wake_us_p50", "cross-P wake-up, p50", "µs", "lower", None),
              ("wake_us_p90", "cross-P wake-up, p90", "µs", "lower", None)],
    ),
    "fanin": dict(
        title="main collects one value each from {n:,} goroutines",
        n=10_000, quick_n=2_000,
        runtimes=ALL_RT,
        rows=[("wall_ms", "fan-in of {n:,} to main", "ms", "lower",
               ("ratio", 1.0, "≤ 1.0× gevent"))],
    ),
    "pairs": dict(
        title="{n:,} pairs ping-ponging at once, {m} round trips each",
        n=1_000, quick_n=200, m=100, quick_m=20,
        runtimes=ALL_RT,
        rows=[("roundtrips_per_s", "{n:,} pairs × {m} round trips",
               "round trips/s",
               "higher", None)],
    ),
    "parked": dict(
        title="{n:,} goroutines parked on a shared channel (chan.recv / "
              "gevent Channel.get)",
        n=100_000, quick_n=10_000,
        runtimes=ALL_RT,
        rows=[("kib_per_goroutine", "{n:,} parked in chan.recv: memory",
               "KiB/goroutine", "lower", ("ratio", 1.0, "≤ 1.0× gevent")),
              ("threads", "{n:,} parked: OS threads", "threads", "lower",
               ("abs_gomaxprocs+", 2, "≤ GOMAXPROCS + 2"))],
        no_ratio=["threads"],
    ),
    "parked_sleep": dict(
        title="{n:,} goroutines parked in sleep (pygmp.time.sleep / "
              "gevent.sleep)",
        n=100_000, quick_n=10_000,
        runtimes=["gevent", "pygmp1", "pygmpN"],
        rows=[("kib_per_goroutine", "{n:,} parked in sleep: memory",
               "KiB/goroutine", "lower", ("ratio", 1.0, "≤ 1.0× gevent"))],
    ),
    "parked_wait": dict(
        title="{n:,} goroutines parked in WaitGroup.wait (gevent Event.wait)",
        n=100_000, quick_n=10_000,
        runtimes=["gevent", "pygmp1", "pygmpN"],
        rows=[("kib_per_goroutine", "{n:,} parked in WaitGroup.wait: memory",
               "KiB/goroutine", "lower", ("ratio", 1.0, "≤ 1.0× gevent"))],
    ),
    "burst": dict(
        title="RSS after a burst: {n:,} goroutines parked {m} calls deep, "
              "then all finish",
        n=10_000, quick_n=3_000, m=4, quick_m=4,
        runtimes=["gevent", "pygmp1", "pygmpN"],
        rows=[("mib_parked", "burst of {n:,}: RSS while parked", "MiB",
               "lower", None),
              ("mib_after", "burst of {n:,}: RSS right after they finish",
               "MiB", "lower", None),
              ("mib_after3s", "burst of {n:,}: RSS 3 s after they finish",
               "MiB", "lower", ("ratio", 1.0, "≤ 1.0× gevent"))],
    ),
    "sleepers": dict(
        title="{n:,} goroutines each sleeping 10 ms",
        n=100_000, quick_n=10_000,
        runtimes=ALL_RT,
        rows=[("wall_ms", "{n:,} × sleep(10 ms)", "ms", "lower",
               ("ratio", 0.25, "≤ 0.25× gevent"))],
    ),
}

RT_LABEL = {"gevent": "gevent", "go": "Go", "pygmp1": "pygmp P=1",
            "pygmpN": "pygmp P=N"}


def emit(result):
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


def nest(k, park):
    """A handler-like stack for the burst benchmark: k Python frames with a
    few locals each, then park()."""
    buf = [k] * 4
    if k == 0:
        park()
        return 0
    return nest(k - 1, park) + buf[0]


def rss_threads():
    import psutil
    p = psutil.Process()
    return p.memory_info().rss, p.num_threads()


# ---------------------------------------------------------------------------
# gevent children
# ---------------------------------------------------------------------------

def gevent_child(bench, n, m):
    import gevent
    from gevent.event import Event
    from gevent.queue import Channel
    perf = time.perf_counter
    gevent.sleep(0)  # start the hub outside the timed part

    def countdown(k):
        """WaitGroup equivalent: a counter and an Event (single thread)."""
        left = [k]
        ev = Event()

        def done():
            left[0] -= 1
            if left[0] == 0:
                ev.set()
        return done, ev

    if bench == "spawn_event":
        # gevent.spawn + a counter/Event (WaitGroup-like); measured ~5%
        # slower than joinall here (see README), so not the baseline.
        done, ev = countdown(n)

        def f():
            done()
        t0 = perf()
        for _ in range(n):
            gevent.spawn(f)
        ev.wait()
        el = perf() - t0
        return {"us_per_goroutine": el * 1e6 / n, "wall_s": el}

    if bench == "spawn":
        # gevent.spawn + gevent.joinall: the idiomatic form, and the fastest
        # one measured here (spawn_raw has no join, see README).
        def f():
            pass
        t0 = perf()
        gs = [gevent.spawn(f) for _ in range(n)]
        gevent.joinall(gs)
        el = perf() - t0
        return {"us_per_goroutine": el * 1e6 / n, "wall_s": el}

    if bench == "spawn_g":
        # the same, but spawned and joined by a greenlet that is not main
        def f():
            pass
        res = []

        def spawner():
            t0 = perf()
            gs = [gevent.spawn(f) for _ in range(n)]
            gevent.joinall(gs)
            res.append(perf() - t0)
        gevent.spawn(spawner).join()
        return {"us_per_goroutine": res[0] * 1e6 / n, "wall_s": res[0]}

    if bench == "pingpong_1p":
        a, b = Channel(), Channel()
        res = []
        warm = 1000

        def ping():
            for i in range(warm):
                a.put(i)
                b.get()
            t0 = perf()
            for i in range(n):
                a.put(i)
                b.get()
            res.append(perf() - t0)

        def pong():
            for _ in range(warm + n):
                b.put(a.get())
        gevent.joinall([gevent.spawn(ping), gevent.spawn(pong)])
        return {"us_per_roundtrip": res[0] * 1e6 / n}

    if bench == "fanin":
        out = Channel()

        def worker(i, out):
            out.put(i * i)
        t0 = perf()
        for i in range(n):
            gevent.spawn(worker, i, out)
        total = sum(out.get() for _ in range(n))
        el = perf() - t0
        if total != sum(i * i for i in range(n)):
            raise SystemExit("wrong sum %d" % total)
        return {"wall_ms": el * 1e3}

    if bench == "pairs":
        done, ev = countdown(n)

        def ping(a, b):
            for i in range(m):
                a.put(i)
                b.get()
            done()

        def pong(a, b):
            for _ in range(m):
                b.put(a.get())
        t0 = perf()
        for _ in range(n):
            a, b = Channel(), Channel()
            gevent.spawn(ping, a, b)
            gevent.spawn(pong, a, b)
        ev.wait()
        el = perf() - t0
        return {"roundtrips_per_s": n * m / el, "wall_ms": el * 1e3}

    if bench in ("parked", "parked_sleep", "parked_wait"):
        # The same body as pygmp's: count itself started, then park in the
        # primitive's equivalent.  RSS is read once every greenlet has
        # started (gevent.spawn only schedules: a fixed sleep is not enough
        # for 100,000 of them on a loaded machine).
        import gc
        ch, ev = Channel(), Event()
        park = {"parked": ch.get, "parked_wait": ev.wait,
                "parked_sleep": lambda: gevent.sleep(100_000)}[bench]
        started = [0]
        gc.collect()
        rss0, _ = rss_threads()

        def f():
            started[0] += 1
            park()
        for _ in range(n):
            gevent.spawn(f)
        while started[0] < n:
            gevent.sleep(0.05)
        gevent.sleep(0.2)
        rss1, threads = rss_threads()
        emit({"kib_per_goroutine": (rss1 - rss0) / n / 1024,
              "threads": threads})
        os._exit(0)  # skip tearing down 100k parked greenlets

    if bench == "burst":
        import gc
        ev = Event()
        started, left = [0], [n]
        alldone = Event()

        def f():
            started[0] += 1
            nest(m, ev.wait)
            left[0] -= 1
            if not left[0]:
                alldone.set()
        gc.collect()
        rss0, _ = rss_threads()
        for _ in range(n):
            gevent.spawn(f)
        while started[0] < n:
            gevent.sleep(0.05)
        gevent.sleep(0.2)
        rss1, _ = rss_threads()
        ev.set()
        alldone.wait()
        gc.collect()
        rss2, _ = rss_threads()
        gevent.sleep(3)
        gc.collect()
        rss3, _ = rss_threads()
        mib = 2.0 ** 20
        return {"mib_parked": (rss1 - rss0) / mib,
                "mib_after": (rss2 - rss0) / mib,
                "mib_after3s": (rss3 - rss0) / mib}

    if bench == "sleepers":
        done, ev = countdown(n)

        def f():
            gevent.sleep(0.01)
            done()
        t0 = perf()
        for _ in range(n):
            gevent.spawn(f)
        ev.wait()
        el = perf() - t0
        return {"wall_ms": el * 1e3}

    raise SystemExit("gevent: no benchmark %r" % bench)


# ---------------------------------------------------------------------------
# pygmp children
# ---------------------------------------------------------------------------

def pygmp_place_two(tries=8):
    """Start two goroutines homed on different Ps (worker threads).

    A goroutine is homed on the P that first runs it. Goroutine A reports its
    thread and then holds its worker in a plain (non-handed-off) blocking
    sleep while main starts B, so B is run, and homed, by another P. Each
    reports threading.get_ident(); if both landed on one thread, both are
    released and we try again with a longer hold. Returns (run_a, run_b, info)
    where run_x(fn) makes that goroutine run fn() and returns nothing; or
    (None, None, info) when placement failed.
    """
    import threading
    from pygmp import go, chan

    info = {"placement_tries": 0}
    for attempt in range(tries):
        info["placement_tries"] = attempt + 1
        ids = chan()
        ja, jb = chan(), chan()
        hold = 0.05 * (attempt + 1)

        def body(name, jobs, hold_worker):
            ids.send((name, threading.get_ident()))
            if hold_worker:
                time.sleep(hold_worker)  # hold this worker thread (no handoff)
            while True:
                job = jobs.recv()
                if job is None:
                    return
                job()

        go(body, "a", ja, hold)
        got = dict([ids.recv()])
        go(body, "b", jb, 0)
        got.update([ids.recv()])
        if got["a"] != got["b"]:
            info["thread_a"], info["thread_b"] = got["a"], got["b"]
            return ja.send, jb.send, info
        ja.send(None)
        jb.send(None)
    return None, None, info


def pygmp_child(bench, n, m):
    import threading
    from pygmp import go, chan
    import pygmp.runtime
    import pygmp.sync
    import pygmp.time
    WaitGroup = pygmp.sync.WaitGroup
    perf = time.perf_counter
    base = {"gomaxprocs": pygmp.runtime.gomaxprocs()}

    # Start the runtime (workers, sysmon) outside the timed part.
    warm = chan()
    go(warm.send, 1)
    warm.recv()

    if bench == "spawn":
        wg = WaitGroup()

        def f():
            wg.done()
        t0 = perf()
        wg.add(n)
        for _ in range(n):
            go(f)
        wg.wait()
        el = perf() - t0
        return dict(base, us_per_goroutine=el * 1e6 / n, wall_s=el)

    if bench == "spawn_g":
        wg, res = WaitGroup(), chan()

        def f():
            wg.done()

        def spawner():
            t0 = perf()
            wg.add(n)
            for _ in range(n):
                go(f)
            wg.wait()
            res.send(perf() - t0)
        go(spawner)
        el = res.recv()
        return dict(base, us_per_goroutine=el * 1e6 / n, wall_s=el)

    if bench == "pingpong_1p":
        # ping starts pong, so pong is queued on ping's P (runnext); at
        # P=N another P could still steal it before it runs: the child
        # reports whether both ran on one thread.
        a, b, res = chan(), chan(), chan()
        warmup = 1000

        def pong(tid):
            tid.append(threading.get_ident())
            for _ in range(warmup + n):
                b.send(a.recv())

        def ping():
            tid = [threading.get_ident()]
            go(pong, tid)
            for i in range(warmup):
                a.send(i)
                b.recv()
            t0 = perf()
            for i in range(n):
                a.send(i)
                b.recv()
            el = perf() - t0
            res.send((el, tid[0] == tid[1]))
        go(ping)
        el, same = res.recv()
        return dict(base, us_per_roundtrip=el * 1e6 / n, same_thread=same)

    if bench in ("pingpong_2p", "wake_2p"):
        if base["gomaxprocs"] < 2:
            return dict(base, na="GOMAXPROCS < 2")
        run_a, run_b, info = pygmp_place_two()
        base.update(info)
        if run_a is None:
            return dict(base, na="placement on two Ps failed")
        res = chan()

        if bench == "pingpong_2p":
            x, y = chan(), chan()
            warmup = 200
            homes = {}

            def ping():
                homes["a"] = threading.get_ident()
                for i in range(warmup):
                    x.send(i)
                    y.recv()
                t0 = perf()
                for i in range(n):
                    x.send(i)
                    y.recv()
                res.send(perf() - t0)

            def pong2():
                homes["b"] = threading.get_ident()
                for _ in range(warmup + n):
                    y.send(x.recv())
            run_b(pong2)
            run_a(ping)
            el = res.recv()
            out = dict(base, us_per_roundtrip=el * 1e6 / n,
                       same_thread=homes["a"] == homes["b"])
        else:
            c = chan()
            lat = []

            def receiver():
                while True:
                    t0 = c.recv()
                    if t0 is None:
                        break
                    lat.append(perf() - t0)
                res.send(threading.get_ident())

            def sender():
                for _ in range(n):
                    pygmp.time.sleep(0.002)  # both Ps go idle meanwhile
                    c.send(perf())
                c.send(None)
                res.send(threading.get_ident())
            run_b(receiver)
            run_a(sender)
            t1, t2 = res.recv(), res.recv()
            lat.sort()
            out = dict(base, wake_us_p50=lat[len(lat) // 2] * 1e6,
                       wake_us_p90=lat[len(lat) * 9 // 10] * 1e6,
                       samples=len(lat), same_thread=t1 == t2)
        run_a(None)
        run_b(None)
        return out

    if bench == "fanin":
        # The docs/design.md example, timed from the first go() to the sum.
        def worker(i, out):
            out.send(i * i)
        out = chan()
        t0 = perf()
        for i in range(n):
            go(worker, i, out)
        total = sum(out.recv() for _ in range(n))
        el = perf() - t0
        if total != sum(i * i for i in range(n)):
            raise SystemExit("wrong sum %d" % total)
        return dict(base, wall_ms=el * 1e3)

    if bench == "pairs":
        wg = WaitGroup()

        def ping(a, b):
            for i in range(m):
                a.send(i)
                b.recv()
            wg.done()

        def pong(a, b):
            for _ in range(m):
                b.send(a.recv())
        t0 = perf()
        wg.add(n)
        for _ in range(n):
            a, b = chan(), chan()
            go(ping, a, b)
            go(pong, a, b)
        wg.wait()
        el = perf() - t0
        return dict(base, roundtrips_per_s=n * m / el, wall_ms=el * 1e3)

    if bench in ("parked", "parked_sleep", "parked_wait"):
        import gc
        ch, never = chan(), WaitGroup()
        never.add(1)
        park = {"parked": ch.recv, "parked_wait": never.wait,
                "parked_sleep": lambda: pygmp.time.sleep(100_000)}[bench]
        started = WaitGroup()
        started.add(n)
        gc.collect()
        rss0, _ = rss_threads()

        def f():
            started.done()
            park()
        for _ in range(n):
            go(f)
        started.wait()
        time.sleep(0.2)  # let the last ones reach their park
        rss1, threads = rss_threads()
        emit(dict(base, kib_per_goroutine=(rss1 - rss0) / n / 1024,
                  threads=threads,
                  goroutines=pygmp.runtime.num_goroutine()))
        os._exit(0)  # skip process teardown with 100k parked goroutines

    if bench == "burst":
        import gc
        ch = chan()
        started, done = WaitGroup(), WaitGroup()

        def f():
            started.done()
            nest(m, ch.recv)
            done.done()
        gc.collect()
        rss0, _ = rss_threads()
        started.add(n)
        done.add(n)
        for _ in range(n):
            go(f)
        started.wait()
        time.sleep(0.2)
        rss1, _ = rss_threads()
        ch.close()
        done.wait()
        gc.collect()
        rss2, _ = rss_threads()
        time.sleep(3)  # sysmon runs the stack cache's scavenger once a second
        gc.collect()
        rss3, _ = rss_threads()
        mib = 2.0 ** 20
        return dict(base, mib_parked=(rss1 - rss0) / mib,
                    mib_after=(rss2 - rss0) / mib,
                    mib_after3s=(rss3 - rss0) / mib)

    if bench == "sleepers":
        wg = WaitGroup()

        def f():
            pygmp.time.sleep(0.01)
            wg.done()
        t0 = perf()
        wg.add(n)
        for _ in range(n):
            go(f)
        wg.wait()
        el = perf() - t0
        return dict(base, wall_ms=el * 1e3)

    raise SystemExit("pygmp: no benchmark %r" % bench)


def child_main(args):
    fn = {"gevent": gevent_child, "pygmp": pygmp_child}[args.runtime]
    result = fn(args.child, args.n, args.m)
    emit(result)


# ---------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------

def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def build_go(install):
    go = shutil.which("go")
    if go is None and install:
        log("installing golang-go with apt-get ...")
        subprocess.run(["apt-get", "update", "-q"], stdout=subprocess.DEVNULL,
                       check=False)
        subprocess.run(["apt-get", "install", "-y", "-q", "golang-go"],
                       stdout=subprocess.DEVNULL, check=False)
        go = shutil.which("go")
    if go is None:
        log("no `go` toolchain: Go columns skipped (--install-go installs it)")
        return None, None
    tmp = tempfile.mkdtemp(prefix="pygmp-bench-go-")
    exe = os.path.join(tmp, "corego")
    env = dict(os.environ)
    env.setdefault("GOCACHE", os.path.join(tmp, "gocache"))
    env.setdefault("GOPATH", os.path.join(tmp, "gopath"))
    env["GO111MODULE"] = "off"
    r = subprocess.run([go, "build", "-o", exe, GO_SRC], env=env,
                       capture_output=True, text=True)
    if r.returncode != 0:
        log("go build failed, Go columns skipped:\n" + r.stderr)
        return None, None
    ver = subprocess.run([go, "version"], capture_output=True,
                         text=True).stdout.strip()
    return exe, ver


def run_child(cmd, env, timeout):
    """Run one child in its own process group; returns (status, result, err)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         start_new_session=True, cwd=HERE)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = p.communicate()
        return "timeout", None, (err or "")[-2000:], time.perf_counter() - t0
    el = time.perf_counter() - t0
    res = None
    for line in reversed((out or "").splitlines()):
        if line.startswith("RESULT "):
            try:
                res = json.loads(line[7:])
            except ValueError:
                pass
            break
    if res is not None and p.returncode != 0:
        # it measured and reported, then died (e.g. a crash at interpreter
        # exit): keep the number, flag the crash
        why = "exit %d" % p.returncode if p.returncode >= 0 else \
            "signal %d" % -p.returncode
        res["exit_crash"] = why
        return "ok", res, "after RESULT: %s\n%s" % (why, (err or "")[-2000:]), el
    if p.returncode != 0 or res is None:
        why = "exit %d" % p.returncode if p.returncode >= 0 else \
            "signal %d" % -p.returncode
        return "error", None, ("%s\n%s" % (why, (err or "")[-2000:])), el
    if "na" in res:
        return "n/a", res, res["na"], el
    return "ok", res, "", el


SNAPSHOT_DIR = None  # set by --snapshot: a frozen copy of the pygmp package


def snapshot_pygmp():
    """Copy the pygmp package the children would import into a temporary
    directory and put it first on their PYTHONPATH, so that edits made to the
    sources while a run is in progress do not mix versions within a run."""
    import importlib.util
    env_pp = os.environ.get("PYTHONPATH", "")
    root = os.path.dirname(HERE)
    saved = sys.path[:]
    sys.path[:0] = [p for p in env_pp.split(os.pathsep) if p] + [root]
    try:
        spec = importlib.util.find_spec("pygmp")  # does not import it
    finally:
        sys.path[:] = saved
    if spec is None or not spec.submodule_search_locations:
        log("--snapshot: pygmp not found; children import it as usual")
        return None
    src = list(spec.submodule_search_locations)[0]
    dst = tempfile.mkdtemp(prefix="pygmp-bench-snap-")
    shutil.copytree(src, os.path.join(dst, "pygmp"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    log("--snapshot: children use a copy of %s in %s" % (src, dst))
    return dst


def child_command(rt, bench, spec, size, m, go_exe):
    env = dict(os.environ)
    env.pop("GOMAXPROCS", None)
    if rt == "go":
        cmd = [go_exe, "-bench", spec.get("go_bench", bench), "-n", str(size),
               "-m", str(m)] + spec.get("go_args", [])
        env.update(spec.get("go_env", {}))
        return cmd, env
    me = os.path.abspath(__file__)
    runtime = "gevent" if rt == "gevent" else "pygmp"
    cmd = [sys.executable, me, "--child", bench, "--runtime", runtime,
           "--n", str(size), "--m", str(m)]
    if rt == "pygmp1":
        env["GOMAXPROCS"] = "1"
    # Children import pygmp from where the driver would: the installed package
    # (with its compiled hot path) when there is one; else the repository root,
    # so a plain checkout works too (pure-Python hot path, reported as such).
    if not _installed_pygmp():
        root = os.path.dirname(HERE)
        pp = env.get("PYTHONPATH", "")
        env["PYTHONPATH"] = pp + (os.pathsep if pp else "") + root
    if SNAPSHOT_DIR and runtime == "pygmp":
        env["PYTHONPATH"] = SNAPSHOT_DIR + os.pathsep + env["PYTHONPATH"]
    return cmd, env


_INSTALLED = None


def _installed_pygmp():
    """True when this interpreter imports pygmp from outside this checkout."""
    global _INSTALLED
    if _INSTALLED is None:
        r = subprocess.run([sys.executable, "-c", "import pygmp, os; print(os.path.abspath(pygmp.__file__))"],
                           capture_output=True, text=True, cwd="/")
        path = r.stdout.strip()
        # a virtual environment inside the checkout (.venv) is installed too
        src = os.path.join(os.path.dirname(HERE), "pygmp") + os.sep
        _INSTALLED = bool(path) and not path.startswith(src)
    return _INSTALLED


def machine_info(go_ver):
    info = {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "go": go_ver,
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    for mod in ("gevent", "greenlet", "psutil"):
        r = subprocess.run([sys.executable, "-c",
                            "import %s; print(%s.__version__)" % (mod, mod)],
                           capture_output=True, text=True)
        info[mod] = r.stdout.strip() or None
    r = subprocess.run(["git", "-C", os.path.dirname(HERE), "describe",
                        "--always", "--dirty"], capture_output=True,
                       text=True)
    info["pygmp_rev"] = r.stdout.strip() or None
    if SNAPSHOT_DIR:
        info["pygmp_snapshot"] = SNAPSHOT_DIR
    if not info["pygmp_rev"]:  # no commit yet: fingerprint the sources
        import hashlib
        h = hashlib.sha1()
        root = os.path.join(os.path.dirname(HERE), "pygmp")
        for d, _, files in sorted(os.walk(root)):
            for fn in sorted(files):
                if fn.endswith((".py", ".c", ".h")):
                    with open(os.path.join(d, fn), "rb") as f:
                        h.update(fn.encode() + f.read())
        info["pygmp_rev"] = "uncommitted sources sha1:" + h.hexdigest()[:10]
    return info


def fmt_val(v):
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    if abs(v) >= 1e5:
        return "{:,.0f}".format(v)
    if abs(v) >= 100:
        return "{:.0f}".format(v)
    if abs(v) >= 10:
        return "{:.1f}".format(v)
    return "{:.3g}".format(v)


def fmt_ratio(r):
    return "—" if r is None else "{:.2f}×".format(r)


def summarize(bench, spec, runs, quick):
    """runs: {rt: [(status, result, err)]} -> list of row dicts."""
    rows = []
    size = spec["quick_n" if quick else "n"]
    m = spec.get("quick_m" if quick else "m")
    for metric, label, unit, better, target in spec["rows"]:
        label = label.format(n=size, m=m)
        row = {"bench": bench, "metric": metric, "label": label,
               "unit": unit, "better": better,
               "target": target[2] if target else None, "runtimes": {}}
        med = {}
        for rt in ALL_RT:
            if rt not in spec["runtimes"]:
                row["runtimes"][rt] = {"status": "n/a"}
                continue
            rr = runs.get(rt)
            if rr is None:
                row["runtimes"][rt] = {"status": "skipped"}
                continue
            vals = [r[1][metric] for r in rr
                    if r[0] == "ok" and metric in r[1]]
            statuses = sorted(set(r[0] for r in rr))
            ent = {"values": vals, "statuses": [r[0] for r in rr]}
            extra = [r[1] for r in rr if r[1]]
            if extra:
                for k in ("gomaxprocs", "placement_tries", "goroutines",
                          "na"):
                    if k in extra[-1]:
                        ent[k] = extra[-1][k]
                crashes = [r["exit_crash"] for r in extra
                           if "exit_crash" in r]
                if crashes:
                    ent["exit_crashes"] = crashes
                    ent["exit_crash_stderr"] = [r[2] for r in rr if r[2]][0]
                same = [r.get("same_thread") for r in extra
                        if "same_thread" in r]
                if same:
                    ent["same_thread"] = same
            errs = [r[2] for r in rr if r[0] != "ok" and r[2]]
            if errs:
                ent["error"] = errs[0]
            if vals and len(vals) == len(rr):
                ent["status"] = "ok"
            elif vals:
                ent["status"] = "partial (%s)" % ",".join(
                    s for s in statuses if s != "ok")
            else:
                ent["status"] = [s for s in statuses if s != "ok"][0] \
                    if statuses else "skipped"
            if vals:
                ent["median"] = statistics.median(vals)
                med[rt] = ent["median"]
            row["runtimes"][rt] = ent
        ratios = {}
        for p in (() if metric in spec.get("no_ratio", ()) else
                  ("pygmp1", "pygmpN")):
            for peer in ("gevent", "go"):
                if p in med and peer in med and med[peer]:
                    ratios["%s/%s" % (p, peer)] = med[p] / med[peer]
        row["ratios"] = ratios
        # target verdicts
        verdict = {}
        if target:
            kind, bound = target[0], target[1]
            for p in ("pygmp1", "pygmpN"):
                if kind == "ratio" and ("%s/gevent" % p) in ratios:
                    verdict[p] = ratios["%s/gevent" % p] <= bound
                elif kind == "abs_gomaxprocs+" and p in med:
                    gmp = row["runtimes"][p].get("gomaxprocs")
                    if gmp is not None:
                        verdict[p] = med[p] <= gmp + bound
        row["meets_target"] = verdict
        rows.append(row)
    return rows


def cell(row, rt):
    ent = row["runtimes"][rt]
    if "median" in ent:
        s = fmt_val(ent["median"])
        same = ent.get("same_thread")
        if same and row["bench"] == "pingpong_1p" and not all(same):
            s += " †"  # the pair did not stay on one P in some runs
        if same and row["bench"] != "pingpong_1p" and any(same):
            s += " ‡"  # placement on two Ps failed in some runs
        if ent.get("exit_crashes"):
            s += " §%d" % len(ent["exit_crashes"])
        if ent["status"] != "ok":
            s += " (%s)" % ent["status"]
        return s
    st = ent.get("status", "—")
    return "—" if st in ("n/a", "skipped") and rt in ("gevent", "go") \
        else st


def markdown(rows, info):
    gmpN = None
    for row in rows:
        g = row["runtimes"]["pygmpN"].get("gomaxprocs")
        if g:
            gmpN = g
            break
    nlab = "pygmp P=%s" % (gmpN if gmpN else "N")
    head = ["benchmark", "unit", "gevent", "Go", "pygmp P=1", nlab,
            "P=1 / gevent", "P=N / gevent", "P=1 / Go", "P=N / Go",
            "target", "met?"]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] * 2 + ["---:"] * 8 + ["---"] * 2) + "|"]
    for row in rows:
        r = row["ratios"]
        unit = row["unit"] + (" ↑" if row["better"] == "higher" else "")
        v = row["meets_target"]
        met = " / ".join("%s %s" % ("P=1" if k == "pygmp1" else "P=N",
                                    "yes" if ok else "no")
                         for k, ok in sorted(v.items()))
        lines.append("| " + " | ".join([
            row["label"], unit,
            cell(row, "gevent"), cell(row, "go"),
            cell(row, "pygmp1"), cell(row, "pygmpN"),
            fmt_ratio(r.get("pygmp1/gevent")), fmt_ratio(r.get("pygmpN/gevent")),
            fmt_ratio(r.get("pygmp1/go")), fmt_ratio(r.get("pygmpN/go")),
            row["target"] or "", met]) + " |")
    cap = ("Medians of {reps} runs, each in a fresh process. {cpu}, {cpus} "
           "CPUs usable, Python {py}, gevent {gev}, greenlet {grn}, {go}; "
           "pygmp {rev}. ↑ = higher is better (ratio > 1 is better there); "
           "elsewhere lower is better. † the pair ran on two threads in "
           "some runs; ‡ the pair shared a thread in some runs; §k: k runs "
           "crashed at exit after reporting (value kept). Load "
           "average at start/end: {la0} / {la1}.").format(
        la0=info.get("loadavg_start"), la1=info.get("loadavg_end"),
        reps=info.get("reps"), cpu=info.get("cpu_model", "?"),
        cpus=info.get("cpus_usable"), py=info.get("python"),
        gev=info.get("gevent"), grn=info.get("greenlet"),
        go=info.get("go") or "no Go", rev=info.get("pygmp_rev"))
    return "\n".join(lines) + "\n\n" + cap + "\n"


def plot(rows, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("--plot: matplotlib is not installed; no plot")
        return
    labels, r1, rn, tg = [], [], [], []
    for row in rows:
        r = row["ratios"]
        a, b = r.get("pygmp1/gevent"), r.get("pygmpN/gevent")
        if a is None and b is None:
            continue
        if row["better"] == "higher":  # plot as cost ratio, lower = better
            a = 1 / a if a else None
            b = 1 / b if b else None
        labels.append(row["label"] + (" (1/x)" if row["better"] == "higher"
                                      else ""))
        r1.append(a or 0)
        rn.append(b or 0)
        t = BENCHES[row["bench"]]["rows"]
        t = [x[4] for x in t if x[0] == row["metric"]][0]
        tg.append(t[1] if t and t[0] == "ratio" else None)
    if not labels:
        log("--plot: no ratios to plot")
        return
    fig, ax = plt.subplots(figsize=(9, 4.5))
    x = range(len(labels))
    w = 0.38
    ax.bar([i - w / 2 for i in x], r1, w, label="pygmp P=1 / gevent")
    ax.bar([i + w / 2 for i in x], rn, w, label="pygmp P=N / gevent")
    ax.axhline(1.0, color="k", lw=0.8)
    for i, t in enumerate(tg):
        if t is not None:
            ax.plot([i - 2 * w / 1.6, i + 2 * w / 1.6], [t, t], color="red",
                    lw=1.5, label="target" if i == tg.index(t) and
                    t == next(v for v in tg if v is not None) else None)
    ax.set_yscale("log")
    from matplotlib.ticker import ScalarFormatter
    for axis in (ax.yaxis,):
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(ScalarFormatter())
    ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.set_xticks(list(x))
    ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("cost ratio vs gevent (lower is better, log)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    log("wrote %s" % path)


def driver(args):
    names = list(BENCHES)
    if args.only:
        want = [w.strip() for w in ",".join(args.only).split(",") if w.strip()]
        bad = [w for w in want if w not in BENCHES]
        if bad:
            sys.exit("unknown benchmark(s) %s; choose from %s"
                     % (bad, ", ".join(BENCHES)))
        names = [nm for nm in names if nm in want]
    reps = args.reps if args.reps else (1 if args.quick else 5)
    global SNAPSHOT_DIR
    if args.snapshot:
        SNAPSHOT_DIR = snapshot_pygmp()
    go_exe, go_ver = (None, None) if args.no_go else build_go(args.install_go)
    info = machine_info(go_ver)
    info["reps"] = reps
    if hasattr(os, "getloadavg"):
        # other work on the machine skews cross-thread numbers most
        info["loadavg_start"] = [round(x, 2) for x in os.getloadavg()]
    info["quick"] = bool(args.quick)
    runtimes = [rt for rt in ALL_RT if rt != "go" or go_exe]
    if args.runtimes:
        runtimes = [rt for rt in runtimes if rt in args.runtimes.split(",")]

    plan = []
    for nm in names:
        spec = BENCHES[nm]
        for rt in spec["runtimes"]:
            if rt in runtimes:
                plan.append((nm, rt))
    total = len(plan) * reps
    k = 0
    t_start = time.perf_counter()
    all_runs = {}
    for nm in names:
        spec = BENCHES[nm]
        size = spec["quick_n"] if args.quick else spec["n"]
        m = spec.get("quick_m" if args.quick else "m", 0)
        runs = all_runs.setdefault(nm, {})
        # interleave runtimes across repetitions so drift hits all of them
        for rep in range(reps):
            for rt in spec["runtimes"]:
                if rt not in runtimes:
                    continue
                k += 1
                lst = runs.setdefault(rt, [])
                if lst and lst[-1][0] in ("timeout", "n/a"):
                    # a hang or an impossible setup repeats: don't pay again
                    log("[%d/%d] %s %s rep %d/%d: skipped (%s before)"
                        % (k, total, nm, RT_LABEL[rt], rep + 1, reps,
                           lst[-1][0]))
                    lst.append(lst[-1])
                    continue
                cmd, env = child_command(rt, nm, spec, size, m, go_exe)
                log("[%d/%d] %s %s rep %d/%d ..." % (k, total, nm,
                                                     RT_LABEL[rt], rep + 1,
                                                     reps))
                st, res, err, el = run_child(cmd, env, args.timeout)
                lst.append((st, res, err))
                shown = ""
                if res:
                    shown = ", ".join(
                        "%s=%s" % (mt, fmt_val(res[mt]))
                        for mt, *_ in spec["rows"] if mt in res)
                log("    %s %s (%.1f s)%s" % (st, shown, el,
                                              ("\n    " + err.strip()
                                               .replace("\n", "\n    "))
                                              if err else ""))
    rows = []
    for nm in names:
        rows.extend(summarize(nm, BENCHES[nm], all_runs[nm], args.quick))
    info["elapsed_s"] = round(time.perf_counter() - t_start, 1)
    if hasattr(os, "getloadavg"):
        info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    table = markdown(rows, info)
    print(table)
    os.makedirs(RESULTS, exist_ok=True)
    out = args.json or os.path.join(RESULTS, "core.json")
    sizes = {nm: {"n": BENCHES[nm]["quick_n" if args.quick else "n"],
                  "m": BENCHES[nm].get("quick_m" if args.quick else "m")}
             for nm in names}
    with open(out, "w") as f:
        json.dump({"machine": info, "sizes": sizes, "rows": rows,
                   "markdown": table}, f, indent=1)
    log("wrote %s (%.0f s in all)" % (out, info["elapsed_s"]))
    if args.plot:
        plot(rows, os.path.join(RESULTS, "core.png"))
    for tmp in (SNAPSHOT_DIR, go_exe and os.path.dirname(go_exe)):
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=0,
                    help="repetitions per benchmark and runtime "
                         "(default 5, 1 with --quick)")
    ap.add_argument("--quick", action="store_true",
                    help="small sizes for a smoke test")
    ap.add_argument("--only", action="append",
                    help="benchmark(s) to run: " + ", ".join(BENCHES))
    ap.add_argument("--runtimes", help="comma list out of " + ",".join(ALL_RT))
    ap.add_argument("--timeout", type=float, default=120,
                    help="seconds before a child is killed (default 120)")
    ap.add_argument("--install-go", action="store_true",
                    help="apt-get install golang-go when `go` is missing")
    ap.add_argument("--no-go", action="store_true", help="skip Go")
    ap.add_argument("--snapshot", action="store_true",
                    help="copy the pygmp package once at start and run every "
                         "child on that copy (for sources edited meanwhile)")
    ap.add_argument("--plot", action="store_true",
                    help="write bench/results/core.png (needs matplotlib)")
    ap.add_argument("--json", help="write JSON here instead of "
                                   "bench/results/core.json")
    # child mode
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--runtime", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--m", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child_main(args)
    else:
        driver(args)


if __name__ == "__main__":
    main()

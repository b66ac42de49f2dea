"""Preemption and sysmon benchmarks (issue "Sysmon in C"), each case in a fresh
child process of this interpreter (run it with the venv where pygmp and the
peers are installed).

    python bench/preempt.py                       # everything
    python bench/preempt.py --only lateness --seconds 5
    python bench/preempt.py --only overhead,idle,hash --json bench/results/preempt.json

Cases:

lateness   GOMAXPROCS=1: one goroutine spins in a pure-Python loop, another
           sleeps 1 ms in a loop for --seconds; the sleeper's lateness
           (wake-up time minus due time): max, p99, p50.  Peers in the same
           run: Go (if a `go` toolchain is found; bench/go/preempt.go), gevent
           and asyncio (their spinner never yields: the sleeper never runs).
overhead   a pure-Python CPU benchmark (bench_cpu below) in the main thread
           without pygmp, then in a goroutine with preemption enabled but not
           firing (time slice 1 hour), with asynchronous preemption off, and
           with the default 10 ms slice (a lone goroutine is preempted ~100
           times a second and resumed at once): min of --reps runs each.
overhead_ir  the same comparison in instructions, not seconds: each mode runs
           under valgrind's callgrind with --reps R and with 0 reps, and the
           difference over R is the instructions of one bench_cpu (whole
           process, sysmon included).  Repeatable whatever else the machine
           does, so it resolves the < 2% target that wall time on a shared
           box cannot.  Needs valgrind.
idle       1,000 parked goroutines for --idle-seconds: the process's CPU time
           over wall time.
hash       GIL-releasing work: 64 x sha256 over 4 MiB buffers, in goroutines at
           GOMAXPROCS 1 and 2 against a ThreadPoolExecutor of the same size.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


# ---------------------------------------------------------------- child bodies

def child_lateness_pygmp(seconds):
    from pygmp import go, chan
    from pygmp.time import sleep
    stop = [False]

    spin_end = time.monotonic() + seconds + 1

    def spin():
        x = 0
        while not stop[0] and time.monotonic() < spin_end:   # bounded (asyncpreemptoff=1)
            x += 1

    done = chan()

    def sleeper():
        late = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t = time.monotonic()
            sleep(0.001)
            late.append(time.monotonic() - t - 0.001)
        done.send(late)

    go(spin)
    go(sleeper)
    late = done.recv()
    stop[0] = True
    return late


def child_lateness_gevent(seconds):
    import gevent
    late = []
    stop = [False]

    def spin():
        end = time.monotonic() + seconds
        while time.monotonic() < end and not stop[0]:
            pass

    def sleeper():
        while True:
            t = time.monotonic()
            gevent.sleep(0.001)
            late.append(time.monotonic() - t - 0.001)

    s = gevent.spawn(sleeper)
    gevent.sleep(0)
    g = gevent.spawn(spin)
    g.join()
    s.kill()
    return late


def child_lateness_asyncio(seconds):
    import asyncio
    late = []

    async def main():
        async def spin():
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                pass

        async def sleeper():
            while True:
                t = time.monotonic()
                await asyncio.sleep(0.001)
                late.append(time.monotonic() - t - 0.001)

        s = asyncio.ensure_future(sleeper())
        await asyncio.sleep(0)
        await spin()
        s.cancel()

    asyncio.run(main())
    return late


def bench_cpu():
    """A small pure-Python CPU mix: recursion, a while loop, method calls,
    dict/str/list work and exceptions."""
    def fib(n):
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    class Acc:
        def __init__(self):
            self.v = 0

        def add(self, x):
            self.v += x

    t0 = time.perf_counter()
    fib(24)
    i = 0
    s = 0
    while i < 600000:
        s += i & 7
        i += 1
    a = Acc()
    for k in range(200000):
        a.add(k)
    d = {}
    for k in range(100000):
        d[str(k)] = k
        if k % 3 == 0:
            try:
                raise KeyError(k)
            except KeyError:
                pass
    sum(len(x) for x in d)
    sorted(d.values(), key=lambda v: -v)
    return time.perf_counter() - t0


def child_overhead(mode, reps):
    times = []
    if mode == "main":
        for _ in range(reps):
            times.append(bench_cpu())
        return times
    from pygmp import go, chan
    done = chan()

    def body():
        out = []
        for _ in range(reps):
            out.append(bench_cpu())
        done.send(out)

    go(body)
    times = done.recv()
    import pygmp._hot as hot
    return {"times": times, "stats": hot.preempt_stats()}


def child_idle(seconds):
    from pygmp import go, chan
    c = chan()
    for _ in range(1000):
        go(c.recv)
    time.sleep(0.5)
    import pygmp._hot as hot
    w0 = hot.sysmon_stats()["wakeups"]
    c0, t0 = time.process_time(), time.monotonic()
    time.sleep(seconds)
    cpu, wall = time.process_time() - c0, time.monotonic() - t0
    return {"cpu_pct": 100.0 * cpu / wall, "sysmon_wakeups": hot.sysmon_stats()["wakeups"] - w0}


def child_hash(kind, n):
    import hashlib
    bufs = [os.urandom(4 << 20) for _ in range(4)]
    jobs = 64

    def h(i):
        return hashlib.sha256(bufs[i % 4]).digest()

    t0 = time.perf_counter()
    if kind == "pool":
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(n) as ex:
            list(ex.map(h, range(jobs)))
    else:
        from pygmp import go
        from pygmp.sync import WaitGroup
        wg = WaitGroup()

        def body(i):
            h(i)
            wg.done()
        wg.add(jobs)
        for i in range(jobs):
            go(body, i)
        wg.wait()
    return time.perf_counter() - t0


# ---------------------------------------------------------------- driver

def _child(args, env=None, timeout=300):
    e = os.environ.copy()
    e.pop("GOMAXPROCS", None)
    e.pop("GODEBUG", None)
    if env:
        e.update(env)
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--child"] + args,
                       capture_output=True, text=True, env=e, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError("child %s failed (%d): %s" % (args, r.returncode, r.stderr[-2000:]))
    return json.loads(r.stdout.strip().splitlines()[-1])


def _stats(late):
    if not late:
        return {"n": 0, "max_ms": None, "p99_ms": None, "p50_ms": None}
    late = sorted(late)
    n = len(late)
    return {"n": n, "max_ms": round(late[-1] * 1e3, 2), "p99_ms": round(late[int(n * 0.99)] * 1e3, 2),
            "p50_ms": round(late[n // 2] * 1e3, 2)}


def _go_lateness(seconds):
    go = shutil.which("go")
    if not go:
        return None
    with tempfile.TemporaryDirectory() as d:
        exe = os.path.join(d, "preempt")
        src = os.path.join(HERE, "go", "preempt.go")
        r = subprocess.run([go, "build", "-o", exe, src], capture_output=True, text=True,
                           env=dict(os.environ, GOCACHE=os.path.join(d, "cache"), GO111MODULE="off"))
        if r.returncode != 0:
            return {"error": r.stderr[-500:]}
        r = subprocess.run([exe, str(seconds)], capture_output=True, text=True,
                           env=dict(os.environ, GOMAXPROCS="1"), timeout=seconds + 30)
        return _stats([float(x) for x in r.stdout.split()])


def run_lateness(a, out):
    rows = {}
    rows["pygmp"] = _stats(_child(["lateness_pygmp", str(a.seconds)], {"GOMAXPROCS": "1"}))
    g = _go_lateness(a.seconds)
    if g is not None:
        rows["Go"] = g
    for peer in ("gevent", "asyncio"):
        try:
            rows[peer] = _stats(_child(["lateness_" + peer, str(min(a.seconds, 2))]))
        except Exception as e:  # noqa: BLE001
            rows[peer] = {"error": str(e)[-300:]}
    out["lateness"] = rows
    print("\n## Preemption: GOMAXPROCS=1, one goroutine spinning, another sleeping 1 ms "
          "in a loop for %gs\n" % a.seconds)
    print("| runtime | wake-ups | max lateness | p99 | p50 |")
    print("|---|---:|---:|---:|---:|")
    for k, v in rows.items():
        if "error" in v:
            print("| %s | error | | | |" % k)
        elif v["n"] == 0:
            print("| %s | 0 (the sleeper never runs) | - | - | - |" % k)
        else:
            print("| %s | %d | %.1f ms | %.1f ms | %.1f ms |" % (k, v["n"], v["max_ms"], v["p99_ms"], v["p50_ms"]))


def run_overhead(a, out):
    modes = [("main thread, no pygmp", "main", {}),
             ("goroutine, preemption on but not firing (slice 1 h)", "g", {"PYGMP_TIMESLICE_US": str(3600 * 10**6)}),
             ("goroutine, asyncpreemptoff=1", "g", {"GODEBUG": "asyncpreemptoff=1"}),
             ("goroutine, default (10 ms slice, preempted and resumed)", "g", {})]
    res = {}
    for rnd in range(a.rounds):        # interleaved rounds against drift
        for label, mode, env in modes:
            r = _child(["overhead", mode, str(a.reps)], dict(env, GOMAXPROCS="1"))
            times = r if mode == "main" else r["times"]
            st = None if mode == "main" else r["stats"]
            prev = res.get(label)
            best = min(times)
            if prev is None or best < prev["min_s"]:
                res[label] = {"min_s": best, "stats": st}
    base = res[modes[0][0]]["min_s"]
    out["overhead"] = res
    print("\n## Overhead on a pure-Python CPU benchmark (min of %d x %d runs)\n" % (a.rounds, a.reps))
    print("| where | time | vs main thread | preemptions |")
    print("|---|---:|---:|---:|")
    for label, _m, _e in modes:
        v = res[label]
        st = v["stats"]
        print("| %s | %.3f s | %+.1f%% | %s |" % (label, v["min_s"], 100 * (v["min_s"] / base - 1),
                                                 "-" if st is None else st["async"] + st["cooperative"]))


def _callgrind_ir(args, env):
    """Instructions executed by a child (every thread), counted by callgrind."""
    with tempfile.TemporaryDirectory() as d:
        outf = os.path.join(d, "cg.out")
        e = dict(os.environ)
        e.update(env)
        r = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + outf,
                            sys.executable, os.path.abspath(__file__), "--child"] + args,
                           capture_output=True, text=True, env=e, timeout=1800)
        if r.returncode != 0:
            raise RuntimeError("callgrind child %s failed: %s" % (args, r.stderr[-1500:]))
        total = 0
        for name in os.listdir(d):              # one file per thread with --separate-threads
            with open(os.path.join(d, name)) as f:
                for line in f:
                    if line.startswith(("summary:", "totals:")):
                        total = max(total, int(line.split()[1]))
        return total


def run_overhead_ir(a, out):
    if shutil.which("valgrind") is None:
        print("\n(overhead_ir skipped: valgrind is not installed)")
        return
    slice_off = {"PYGMP_TIMESLICE_US": str(3600 * 10**6)}
    modes = [("main thread, no pygmp", "main", {}),
             ("goroutine, preemption on but not firing (slice 1 h)", "g", slice_off),
             ("goroutine, asynchronous preemption off (slice 1 h)", "g",
              dict(slice_off, GODEBUG="asyncpreemptoff=1"))]
    res = {}
    for label, mode, env in modes:
        env = dict(env, GOMAXPROCS="1")
        full = _callgrind_ir(["overhead", mode, str(a.reps)], env)
        empty = _callgrind_ir(["overhead", mode, "0"], env)
        res[label] = (full - empty) / a.reps
    out["overhead_ir"] = res
    base = res[modes[0][0]]
    off = res[modes[2][0]]
    print("\n## Overhead in instructions (callgrind, per bench_cpu run, %d reps minus 0)\n" % a.reps)
    print("| where | instructions | vs main thread | vs preemption off |")
    print("|---|---:|---:|---:|")
    for label, _m, _e in modes:
        v = res[label]
        print("| %s | %.1f M | %+.2f%% | %s |" % (
            label, v / 1e6, 100 * (v / base - 1),
            "-" if label == modes[0][0] else "%+.2f%%" % (100 * (v / off - 1))))


def run_idle(a, out):
    r = _child(["idle", str(a.idle_seconds)], {"GOMAXPROCS": "2"})
    out["idle"] = r
    print("\n## Idle: 1,000 parked goroutines for %gs\n" % a.idle_seconds)
    print("| CPU | sysmon wake-ups |")
    print("|---:|---:|")
    print("| %.3f%% of a core | %d |" % (r["cpu_pct"], r["sysmon_wakeups"]))


def run_hash(a, out):
    rows = {}
    for n in (1, 2):
        g = min(_child(["hash", "go", str(n)], {"GOMAXPROCS": str(n)}) for _ in range(a.rounds))
        t = min(_child(["hash", "pool", str(n)]) for _ in range(a.rounds))
        rows[n] = {"pygmp": g, "threadpool": t}
    out["hash"] = rows
    print("\n## GIL-releasing work: 64 x sha256(4 MiB) (min of %d)\n" % a.rounds)
    print("| workers | pygmp goroutines (GOMAXPROCS=N) | ThreadPoolExecutor(N) | pygmp / pool |")
    print("|---:|---:|---:|---:|")
    for n, v in rows.items():
        print("| %d | %.3f s | %.3f s | %.2f |" % (n, v["pygmp"], v["threadpool"], v["pygmp"] / v["threadpool"]))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        what = sys.argv[2]
        rest = sys.argv[3:]
        if what.startswith("lateness_"):
            res = globals()["child_" + what](float(rest[0]))
        elif what == "overhead":
            res = child_overhead(rest[0], int(rest[1]))
        elif what == "idle":
            res = child_idle(float(rest[0]))
        elif what == "hash":
            res = child_hash(rest[0], int(rest[1]))
        else:
            raise SystemExit("unknown child " + what)
        sys.stdout.write(json.dumps(res) + "\n")
        sys.stdout.flush()
        os._exit(0)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="lateness,overhead,idle,hash")
    ap.add_argument("--seconds", type=float, default=5.0, help="lateness run (default 5)")
    ap.add_argument("--idle-seconds", type=float, default=10.0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json")
    a = ap.parse_args()
    out = {"python": sys.version.split()[0], "cpus": os.cpu_count(),
           "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    print("# bench/preempt.py: Python %s, %d CPUs" % (out["python"], out["cpus"]))
    for case in a.only.split(","):
        {"lateness": run_lateness, "overhead": run_overhead, "overhead_ir": run_overhead_ir,
         "idle": run_idle, "hash": run_hash}[case.strip()](a, out)
        sys.stdout.flush()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()

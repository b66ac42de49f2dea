"""Blocking calls and OS threads, side by side in one run: N concurrent 50 ms
blocking calls (N = 8, 64, 256), wall time, peak and settled OS threads.

    python bench/threads.py                        # N = 8,64,256, 3 rounds
    python bench/threads.py --n 64 --rounds 1 --json bench/results/threads.json

Each (runtime, N, round) is a fresh child process of this interpreter (run it
with the venv that has pygmp and gevent).  Runtimes:

- pygmp: N goroutines each call ``pygmp.syscall.call(time.sleep, 0.05)`` (the
  handoff: the goroutine parks, a syscall thread makes the call); GOMAXPROCS
  is the default; the syscall threads' keep-alive is set to --keepalive
  seconds (PYGMP_SYSCALL_KEEPALIVE_MS; the default is 10 s);
- Go (if a ``go`` toolchain is found): N goroutines each make a 50 ms
  ``nanosleep`` system call (bench/go/threads.go);
- gevent: N greenlets each run ``time.sleep(0.05)`` on gevent's default
  threadpool (``gevent.get_hub().threadpool``, 10 threads);
- asyncio: N tasks each ``await asyncio.to_thread(time.sleep, 0.05)`` (the
  default executor: min(32, CPUs + 4) threads);
- ThreadPoolExecutor(N): N submissions of ``time.sleep(0.05)`` to a pool of N
  threads (what the others' defaults are not: one thread per call).

Threads are the OS's count (/proc/self/task): "peak" sampled every 2 ms while
the calls run, "settled" --settle seconds after they all returned (pygmp's
keep-alive plus half a second by default).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CALL = 0.05


def _threads():
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        import psutil
        return psutil.Process().num_threads()


class _Peak:
    """Samples the OS thread count every 2 ms from a plain thread (not counted)."""

    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _threads() - 1)

    def stop(self):
        self._stop.set()
        self._t.join()
        return self.peak


def child(kind, n, settle):
    if kind == "pygmp":
        import pygmp
        from pygmp import go, syscall
        from pygmp.sync import WaitGroup
        from pygmp.runtime import gomaxprocs
        gomaxprocs()                          # runtime started before counting
        before = _threads()
        peak = _Peak()
        wg = WaitGroup()

        def body():
            syscall.call(time.sleep, CALL)
            wg.done()
        t0 = time.perf_counter()
        wg.add(n)
        for _ in range(n):
            go(body)
        wg.wait()
        del pygmp
    elif kind == "gevent":
        import gevent
        pool = gevent.get_hub().threadpool
        before = _threads()
        peak = _Peak()
        t0 = time.perf_counter()
        gevent.joinall([gevent.spawn(pool.apply, time.sleep, (CALL,)) for _ in range(n)])
    elif kind == "asyncio":
        import asyncio
        before = _threads()
        peak = _Peak()
        t0 = time.perf_counter()

        async def main():
            await asyncio.gather(*[asyncio.to_thread(time.sleep, CALL) for _ in range(n)])
        loop = asyncio.new_event_loop()
        loop.run_until_complete(main())
    elif kind == "threadpool":
        from concurrent.futures import ThreadPoolExecutor
        before = _threads()
        peak = _Peak()
        ex = ThreadPoolExecutor(n)
        t0 = time.perf_counter()
        list(ex.map(time.sleep, [CALL] * n))
    else:
        raise SystemExit("unknown runtime " + kind)
    wall = time.perf_counter() - t0
    pk = peak.stop()
    time.sleep(settle)
    return {"wall": wall, "before": before, "peak": pk, "settled": _threads()}


def _go(exe, n, settle):
    r = subprocess.run([exe, str(n), str(settle)], capture_output=True, text=True,
                       timeout=settle + 60, env=os.environ.copy())
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        res = child(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
        sys.stdout.write(json.dumps(res) + "\n")
        sys.stdout.flush()
        os._exit(0)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", default="8,64,256")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--keepalive", type=float, default=2.0,
                    help="pygmp's syscall-thread keep-alive in seconds (default 2)")
    ap.add_argument("--settle", type=float, default=None,
                    help="seconds after the calls before 'settled' (default keep-alive + 0.5)")
    ap.add_argument("--runtimes", default="pygmp,go,gevent,asyncio,threadpool")
    ap.add_argument("--json")
    a = ap.parse_args()
    settle = a.settle if a.settle is not None else a.keepalive + 0.5
    kinds = [k.strip() for k in a.runtimes.split(",")]
    tmp = None
    goexe = None
    if "go" in kinds and shutil.which("go"):
        tmp = tempfile.mkdtemp()
        goexe = os.path.join(tmp, "threads")
        r = subprocess.run([shutil.which("go"), "build", "-o", goexe, os.path.join(HERE, "go", "threads.go")],
                           capture_output=True, text=True,
                           env=dict(os.environ, GOCACHE=os.path.join(tmp, "cache"), GO111MODULE="off"))
        if r.returncode != 0:
            print("go build failed:", r.stderr[-500:], file=sys.stderr)
            goexe = None
    if goexe is None and "go" in kinds:
        kinds.remove("go")
    ns = [int(x) for x in a.n.split(",")]
    res = {}
    env = os.environ.copy()
    env.pop("GOMAXPROCS", None)
    env["PYGMP_SYSCALL_KEEPALIVE_MS"] = str(int(a.keepalive * 1000))
    for rnd in range(a.rounds):
        for n in ns:
            for k in kinds:
                if k == "go":
                    r = _go(goexe, n, settle)
                else:
                    p = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", k, str(n), str(settle)],
                                       capture_output=True, text=True, env=env, timeout=settle + 120)
                    if p.returncode != 0:
                        print("child %s %d failed: %s" % (k, n, p.stderr[-800:]), file=sys.stderr)
                        continue
                    r = json.loads(p.stdout.strip().splitlines()[-1])
                cell = res.setdefault((k, n), [])
                cell.append(r)
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    print("# bench/threads.py: Python %s, %d CPUs, %d round(s), median wall; pygmp keep-alive %g s, "
          "settled = %g s after the calls" % (sys.version.split()[0], os.cpu_count(), a.rounds, a.keepalive, settle))
    print()
    print("| N x 50 ms | runtime | wall | vs Go | threads before | peak | settled |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    out = {}
    for n in ns:
        gowall = None
        if ("go", n) in res:
            gowall = sorted(r["wall"] for r in res[("go", n)])[len(res[("go", n)]) // 2]
        for k in kinds:
            rs = res.get((k, n))
            if not rs:
                continue
            wall = sorted(r["wall"] for r in rs)[len(rs) // 2]
            peak = max(r["peak"] for r in rs)
            settled = sorted(r["settled"] for r in rs)[len(rs) // 2]
            before = rs[0]["before"]
            label = {"threadpool": "ThreadPoolExecutor(N)", "gevent": "gevent threadpool",
                     "asyncio": "asyncio.to_thread", "go": "Go", "pygmp": "pygmp"}[k]
            print("| %d | %s | %.3f s | %s | %d | %d | %d |" % (
                n, label, wall, "%.2fx" % (wall / gowall) if gowall else "-", before, peak, settled))
            out["%s/%d" % (k, n)] = {"wall": wall, "before": before, "peak": peak, "settled": settled, "runs": rs}
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"python": sys.version.split()[0], "cpus": os.cpu_count(), "keepalive": a.keepalive,
                       "settle": settle, "results": out}, f, indent=1)


if __name__ == "__main__":
    main()

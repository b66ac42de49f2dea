#!/usr/bin/env python3
"""Where a parked goroutine's bytes go, pygmp against gevent, side by side.

    python bench/parked_breakdown.py [--n 50000] [--reps 3]

For each equivalent parking (chan.recv / gevent Channel.get, pygmp.time.sleep
/ gevent.sleep, WaitGroup.wait / gevent Event.wait) it starts N goroutines or
greenlets in a fresh process (GOMAXPROCS=1 for pygmp), each running the same
body (count itself started, then park), waits until every one has started,
and splits the RSS growth per goroutine into:

  C stack   greenlet's saved copy of the C stack between the greenlet's start
            and its switch (``greenlet._stack_saved``, malloc'd)
  malloc    all of C malloc's growth (mallinfo2: the saved C stacks, sudogs,
            greenlet's C++ state...)
  pymalloc  bytes in pymalloc blocks (sys._debugmallocstats): Python objects
            (G, greenlet, context copy, creator, waiter; on 3.12+ one frame
            object per Python frame, which greenlet creates at every
            switch-out: TGreenlet.cpp expose_frames)
  rest      RSS growth not in either allocator's used blocks: interpreter
            data-stack pages (pygmp: a share of a small root block, gevent: a
            page of a 16 KiB chunk), pymalloc and malloc free space, page
            tables
  frames    Python frames on the goroutine's stack while parked (count)

Medians over the repetitions.  Needs gevent and (for pygmp) the installed
package.  Linux (glibc) only: mallinfo2, /proc.
"""
import argparse
import os
import statistics
import subprocess
import sys

CHILD = r'''
import ctypes, gc, io, os, re, sys, tempfile, time
rt, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
libc = ctypes.CDLL(None)
class MI2(ctypes.Structure):
    _fields_ = [(f, ctypes.c_size_t) for f in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc.mallinfo2.restype = MI2

def pymalloc_bytes():
    fd, path = tempfile.mkstemp()
    saved = os.dup(2)
    os.dup2(fd, 2)
    try:
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    os.close(fd)
    with open(path) as f:
        text = f.read()
    os.unlink(path)
    m = re.search(r"# bytes in allocated blocks\s*=\s*([\d,]+)", text)
    return int(m.group(1).replace(",", ""))

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

def snap():
    gc.collect()
    mi = libc.mallinfo2()
    return rss(), mi.uordblks + mi.hblkhd, pymalloc_bytes()

def nframes(glet):
    f, k = glet.gr_frame, 0
    while f is not None:
        k += 1
        f = f.f_back
    return k

if rt == "gevent":
    import gevent
    from gevent.queue import Channel
    from gevent.event import Event
    ch, ev = Channel(), Event()
    park = {"chan": ch.get, "wait": ev.wait, "sleep": lambda: gevent.sleep(100000)}[mode]
    started = [0]
    def f():
        started[0] += 1
        park()
    gevent.sleep(0)
    s0 = snap()
    gl = [gevent.spawn(f) for _ in range(n)]
    while started[0] < n:
        gevent.sleep(0.05)
    gevent.sleep(0.2)
    s1 = snap()
    saved = sum(g._stack_saved for g in gl) / n
    frames = nframes(gl[n // 2])
else:
    import pygmp
    from pygmp import go, chan
    from pygmp.sync import WaitGroup
    import pygmp.time as ptime
    from pygmp.runtime import proc
    ch, never = chan(), WaitGroup()
    never.add(1)
    park = {"chan": ch.recv, "wait": never.wait, "sleep": lambda: ptime.sleep(100000)}[mode]
    started = WaitGroup()
    def f():
        started.done()
        park()
    go(lambda: None)
    time.sleep(0.05)
    s0 = snap()
    started.add(n)
    for _ in range(n):
        go(f)
    started.wait()
    time.sleep(0.2)
    s1 = snap()
    gs = [g for p in proc._sched.allp for g in p.gs_snapshot() if g.glet is not None]
    saved = sum(g.glet._stack_saved for g in gs) / len(gs)
    frames = nframes(gs[len(gs) // 2].glet)
d = [(b - a) / n for a, b in zip(s0, s1)]
print("RESULT %d %d %d %d %d" % (d[0], d[1], d[2], saved, frames))
sys.stdout.flush()
os._exit(0)
'''

MODES = [("chan", "chan.recv", "Channel.get"),
         ("sleep", "time.sleep", "gevent.sleep"),
         ("wait", "WaitGroup.wait", "Event.wait")]


def run(rt, mode, n):
    env = dict(os.environ, GOMAXPROCS="1")
    r = subprocess.run([sys.executable, "-c", CHILD, rt, mode, str(n)],
                       capture_output=True, text=True, env=env, timeout=600, cwd="/")
    for line in r.stdout.splitlines():
        if line.startswith("RESULT "):
            return [int(x) for x in line.split()[1:]]
    raise SystemExit("%s %s failed:\n%s" % (rt, mode, r.stderr[-2000:]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    res = {}
    for rep in range(a.reps):          # interleaved, so drift hits both
        for mode, _, _ in MODES:
            for rt in ("gevent", "pygmp"):
                res.setdefault((rt, mode), []).append(run(rt, mode, a.n))
    print("Python %s, %d parked, GOMAXPROCS=1 for pygmp, medians of %d; bytes per goroutine\n"
          % (sys.version.split()[0], a.n, a.reps))
    print("| parking | runtime | RSS | C stack (saved) | malloc | pymalloc | rest | Python frames |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for mode, pname, gname in MODES:
        for rt, name in (("gevent", gname), ("pygmp", pname)):
            v = [statistics.median(x[i] for x in res[(rt, mode)]) for i in range(5)]
            rest = v[0] - v[1] - v[2]
            print("| %s | %s | %d | %d | %d | %d | %d | %d |"
                  % (name, rt, v[0], v[3], v[1], v[2], rest, v[4]))


if __name__ == "__main__":
    main()

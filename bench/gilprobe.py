"""Measure GIL waits per thread of a running CPython process with perf uprobes.

    python bench/gilprobe.py PID SECONDS     # prints a JSON summary

Places uprobes on ``take_gil`` (entry and return) in the process's libpython
(``perf probe``; needs root or a permissive ``perf_event_paranoid`` and
tracefs), records them for SECONDS in that process only (``perf record -p``),
and reports per thread: how many times it took the GIL, the total and the
p50/p99/max time it waited inside ``take_gil`` (the time from asking for the
GIL to holding it), and the thread's name where the process told us one
(``names``: {native id: name}).  The probes are deleted afterwards.

Used by bench/tail.py ``--gil``; a module so that the same numbers can be taken
before and after a scheduler change without touching the runtime.
"""

import json
import os
import re
import subprocess
import sys
import tempfile

GROUP = "pygmpgil"


def libpython(pid):
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            m = re.search(r"(/\S*libpython3[^/\s]*\.so[^/\s]*)$", line.strip())
            if m:
                return m.group(1)
    # statically linked interpreter
    return os.path.realpath("/proc/%d/exe" % pid)


def _perf(*args, **kw):
    return subprocess.run(["perf", *args], capture_output=True, text=True, **kw)


def add_probes(lib):
    for spec in ("%s:take=take_gil" % GROUP, "%s:took=take_gil%%return" % GROUP):
        r = _perf("probe", "-q", "-x", lib, "-a", spec)
        if r.returncode != 0 and "already exists" not in r.stderr:
            raise RuntimeError("perf probe failed: " + r.stderr[-500:])


def del_probes():
    _perf("probe", "-q", "-d", GROUP + ":*")


def record(pid, seconds, names=None):
    lib = libpython(pid)
    add_probes(lib)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data = os.path.join(tmp, "perf.data")
            r = _perf("record", "-q", "-o", data, "-e", GROUP + ":take", "-e", GROUP + ":took__return",
                      "-p", str(pid), "--", "sleep", str(seconds), timeout=seconds + 60)
            if r.returncode != 0 and not os.path.exists(data):
                raise RuntimeError("perf record failed: " + r.stderr[-500:])
            s = _perf("script", "-i", data, "-F", "tid,time,event", timeout=300)
    finally:
        del_probes()
    return summarize(s.stdout, names or {}, seconds)


def summarize(text, names, seconds):
    pending = {}
    waits = {}
    for line in text.splitlines():
        m = re.match(r"\s*(\d+)\s+([\d.]+):\s+\S*:(take|took__return)", line)
        if not m:
            continue
        tid, t, ev = int(m.group(1)), float(m.group(2)), m.group(3)
        if ev == "take":
            pending[tid] = t
        else:
            t0 = pending.pop(tid, None)
            if t0 is not None:
                waits.setdefault(tid, []).append(t - t0)
    out = {}
    for tid, ws in sorted(waits.items()):
        ws.sort()
        n = len(ws)
        out[names.get(str(tid), names.get(tid, str(tid)))] = {
            "tid": tid, "takes": n, "takes_per_s": round(n / seconds, 1),
            "wait_total_ms": round(sum(ws) * 1e3, 1),
            "wait_p50_us": round(ws[n // 2] * 1e6, 1),
            "wait_p99_us": round(ws[min(n - 1, int(n * 0.99))] * 1e6, 1),
            "wait_max_us": round(ws[-1] * 1e6, 1),
            "waits_over_1ms": sum(1 for w in ws if w > 1e-3),
        }
    return out


if __name__ == "__main__":
    print(json.dumps(record(int(sys.argv[1]), float(sys.argv[2])), indent=1))

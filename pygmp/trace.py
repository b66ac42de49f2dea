"""pygmp.trace: record a scheduler trace and open it as a timeline.

    from pygmp import trace
    trace.start("trace.json")
    ...                      # the program runs
    trace.stop()             # writes trace.json

The file is Chrome's trace-event JSON: open it in Perfetto
(https://ui.perfetto.dev, "Open trace file") or in chrome://tracing.  It has
one track per P ("P0", "P1", ... under "Ps") and one per OS thread that is not
a P's worker ("M ..." under "Ms": the main thread, syscall threads), with

- a slice per goroutine run on its P (``G7 worker``: goroutine id and
  function), from the moment the P switches to it until it parks, yields,
  finishes or is preempted;
- instants: ``park`` (args: the goroutine and the wait reason, e.g.
  ``chan receive``), ``ready G7`` on the track of whoever readied it,
  ``preempt G7`` (``async`` or ``cooperative``), ``steal N from P1``;
- slices on the syscall threads for each handed-off blocking call
  (``syscall sleep (G7)``).

Starting a trace while one runs raises ``RuntimeError``; with no trace running
every recording point costs one atomic load.  ``render(json_path, png_path)``
draws the same events as a PNG (one row per P and M; needs matplotlib, an
optional extra): ``python -m pygmp.trace trace.json trace.png``.
"""

import json
import os
import threading

from . import _hot

__all__ = ["start", "stop", "render"]

_RUN_BEGIN, _RUN_END, _PARK, _READY, _PRE_ASYNC, _PRE_COOP, _STEAL, _SYS_BEGIN, _SYS_END, _GO = range(1, 11)

_lock = threading.Lock()
_enumerate = threading.enumerate   # OS threads (bound before pygmp.monkey may patch it)
_state = None          # (path, start ns) while a trace runs


def start(path):
    """Start recording the scheduler trace; ``stop()`` writes it to ``path``."""
    global _state
    from .runtime import proc
    proc._sched or proc.start()
    with _lock:
        if _state is not None:
            raise RuntimeError("pygmp.trace: a trace is already running")
        t0 = _hot.trace_start()
        _state = (os.fspath(path), t0)


def stop():
    """Stop recording and write the trace file; returns its path."""
    global _state
    with _lock:
        if _state is None:
            raise RuntimeError("pygmp.trace: no trace is running")
        path, t0 = _state
        _state = None
        events, dropped = _hot.trace_stop()
    doc = _to_chrome(events, t0, dropped)
    with open(path, "w") as f:
        json.dump(doc, f)
    return path


def _name(fn):
    if fn is None:
        return None
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__


def _to_chrome(events, t0, dropped):
    from .runtime import proc
    s = proc._sched
    pids = {}
    if s is not None:
        for p in list(s.allp):
            pids[id(p)] = p.id
    tnames = {t.ident: t.name for t in _enumerate()}
    mtids = {}

    def mtid(tid):
        if tid not in mtids:
            mtids[tid] = len(mtids)
        return mtids[tid]

    def us(ts):
        return (ts - t0) / 1000.0

    gnames = {}
    out = []
    open_run = {}                  # P track -> (goid, ts)
    open_sys = {}                  # M track -> (goid, name, ts)
    last_ts = t0
    for ts, kind, paddr, tid, goid, arg, obj in events:
        last_ts = max(last_ts, ts)
        if paddr:
            pid, track = 1, pids.get(paddr, "?")
        else:
            pid, track = 2, mtid(tid)
        if kind == _RUN_BEGIN:
            if obj is not None:
                gnames[goid] = _name(obj)
            open_run[track] = (goid, ts)
        elif kind == _RUN_END:
            b = open_run.pop(track, None)
            if b is not None and b[0] == goid:
                out.append(_slice(goid, gnames, 1, track, us(b[1]), (ts - b[1]) / 1000.0))
        elif kind == _PARK:
            out.append({"name": "park", "ph": "i", "s": "t", "ts": us(ts), "pid": pid, "tid": track,
                        "args": {"goroutine": goid, "reason": str(obj) if obj is not None else ""}})
        elif kind == _READY:
            out.append({"name": "ready G%d" % goid, "ph": "i", "s": "t", "ts": us(ts), "pid": pid,
                        "tid": track, "args": {"goroutine": goid}})
        elif kind in (_PRE_ASYNC, _PRE_COOP):
            how = "async" if kind == _PRE_ASYNC else "cooperative"
            out.append({"name": "preempt G%d" % goid, "ph": "i", "s": "t", "ts": us(ts), "pid": pid,
                        "tid": track, "args": {"goroutine": goid, "how": how}})
        elif kind == _STEAL:
            victim = getattr(obj, "id", "?")
            out.append({"name": "steal %d from P%s" % (arg, victim), "ph": "i", "s": "t", "ts": us(ts),
                        "pid": pid, "tid": track, "args": {"goroutines": arg, "victim": "P%s" % victim}})
        elif kind == _SYS_BEGIN:
            open_sys[track] = (goid, _name(obj), ts)
        elif kind == _SYS_END:
            b = open_sys.pop(track, None)
            if b is not None:
                out.append({"name": "syscall %s (G%d)" % (b[1], b[0]), "ph": "X", "ts": us(b[2]),
                            "dur": (ts - b[2]) / 1000.0, "pid": 2, "tid": track,
                            "args": {"goroutine": b[0], "call": b[1]}})
    for track, (goid, ts) in open_run.items():      # still running at stop
        out.append(_slice(goid, gnames, 1, track, us(ts), (last_ts - ts) / 1000.0))
    meta = [{"name": "process_name", "ph": "M", "pid": 1, "args": {"name": "Ps"}},
            {"name": "process_name", "ph": "M", "pid": 2, "args": {"name": "Ms (threads without a P)"}},
            {"name": "process_sort_index", "ph": "M", "pid": 1, "args": {"sort_index": 0}},
            {"name": "process_sort_index", "ph": "M", "pid": 2, "args": {"sort_index": 1}}]
    for pid_ in sorted(set(pids.values()) | {e["tid"] for e in out if e["pid"] == 1}, key=str):
        meta.append({"name": "thread_name", "ph": "M", "pid": 1, "tid": pid_, "args": {"name": "P%s" % pid_}})
    for tid, n in mtids.items():
        meta.append({"name": "thread_name", "ph": "M", "pid": 2, "tid": n,
                     "args": {"name": "M %s" % tnames.get(tid, tid)}})
    doc = {"traceEvents": meta + out, "displayTimeUnit": "ms",
           "otherData": {"generator": "pygmp.trace", "dropped": bool(dropped)}}
    return doc


def _slice(goid, gnames, pid, track, ts, dur):
    fn = gnames.get(goid)
    return {"name": "G%d %s" % (goid, fn) if fn else "G%d" % goid, "ph": "X", "ts": ts, "dur": dur,
            "pid": pid, "tid": track, "args": {"goroutine": goid, "function": fn}}


def render(json_path, png_path, width=12.0):
    """Draw a trace file as a PNG timeline: one row per P, then one per M;
    goroutine runs as bars (one colour per goroutine), preemptions as red
    markers, steals as green ones, handed-off calls on the M rows.  Needs
    matplotlib."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    with open(json_path) as f:
        doc = json.load(f)
    evs = doc["traceEvents"]
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in evs
             if e.get("ph") == "M" and e["name"] == "thread_name"}
    rows = sorted({(e["pid"], e["tid"]) for e in evs if e.get("ph") in ("X", "i")},
                  key=lambda k: (k[0], str(k[1]).zfill(6)))
    idx = {k: i for i, k in enumerate(rows)}
    fig, ax = plt.subplots(figsize=(width, 0.5 + 0.45 * max(1, len(rows))))
    cmap = plt.get_cmap("tab20")
    bars = {}                   # (row, colour) -> [(start, width)]: one artist each
    marks = {"red": ([], []), "green": ([], [])}
    for e in evs:
        k = (e.get("pid"), e.get("tid"))
        if k not in idx:
            continue
        y = len(rows) - 1 - idx[k]
        if e["ph"] == "X":
            g = e["args"].get("goroutine", 0)
            bars.setdefault((y, g % 20), []).append(
                (e["ts"] / 1000.0, max(e["dur"] / 1000.0, 0.01)))
        elif e["name"].startswith(("preempt", "steal")):
            xs, ys = marks["red" if e["name"].startswith("preempt") else "green"]
            xs.append(e["ts"] / 1000.0)
            ys.append(y + 0.45)
    for (y, c), spans in bars.items():
        ax.broken_barh(spans, (y - 0.4, 0.8), color=cmap(c), edgecolor="none")
    for colour, (xs, ys) in marks.items():
        if xs:
            ax.plot(xs, ys, linestyle="none", marker="v", color=colour, markersize=5)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([names.get(k, str(k)) for k in reversed(rows)], fontsize=8)
    ax.set_xlabel("ms")
    ax.set_title("pygmp scheduler trace: goroutine runs per P (colour = goroutine), "
                 "preemptions (red), steals (green), handed-off calls on Ms", fontsize=9)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return png_path


if __name__ == "__main__":
    import sys
    if len(sys.argv) != 3:
        sys.exit("usage: python -m pygmp.trace TRACE.json OUT.png")
    print(render(sys.argv[1], sys.argv[2]))

"""pygmp.trace: the scheduler trace in Chrome trace-event JSON."""
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from _helpers import run_script  # noqa: E402

from pygmp import trace  # noqa: E402


def test_start_twice_and_stop_without_start_raise(tmp_path):
    with pytest.raises(RuntimeError):
        trace.stop()
    trace.start(tmp_path / "a.json")
    try:
        with pytest.raises(RuntimeError):
            trace.start(tmp_path / "b.json")
    finally:
        trace.stop()
    with pytest.raises(RuntimeError):
        trace.stop()
    doc = json.loads((tmp_path / "a.json").read_text())
    assert isinstance(doc["traceEvents"], list)
    assert not (tmp_path / "b.json").exists()


TRACE_SRC = """
    import json, sys, time
    from pygmp import go, chan, trace, syscall
    from pygmp.sync import WaitGroup
    path = sys.argv[1] if len(sys.argv) > 1 else %r
    trace.start(path)
    wg = WaitGroup()
    def spinner():
        t = time.monotonic() + 0.1
        while time.monotonic() < t:
            pass
        wg.done()
    def pinger(a, b):
        for i in range(50):
            a.send(i)
            b.recv()
        wg.done()
    def ponger(a, b):
        for i in range(50):
            a.recv()
            b.send(i)
        wg.done()
    def blocker():
        syscall.call(time.sleep, 0.01)
        wg.done()
    a, b = chan(), chan()
    wg.add(4)
    go(spinner)
    go(pinger, a, b)
    go(ponger, a, b)
    go(blocker)
    wg.wait()
    trace.stop()
"""


@pytest.mark.timeout(60)
def test_trace_events(tmp_path):
    path = str(tmp_path / "t.json")
    r = run_script(TRACE_SRC % path, timeout=40, env={"GOMAXPROCS": "1"})
    assert r.returncode == 0, r.stderr
    doc = json.loads(open(path).read())
    evs = doc["traceEvents"]
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in evs
             if e["ph"] == "M" and e["name"] == "thread_name"}
    assert names.get((1, 0)) == "P0"
    runs = [e for e in evs if e["ph"] == "X" and e["pid"] == 1]
    fns = {e["args"]["function"] for e in runs}
    assert {"spinner", "pinger", "ponger", "blocker"} <= fns, fns
    for e in runs:
        assert e["name"].startswith("G%d" % e["args"]["goroutine"]) and e["dur"] >= 0
    parks = [e for e in evs if e["ph"] == "i" and e["name"] == "park"]
    assert any(e["args"]["reason"] in ("chan receive", "chan send") for e in parks), parks[:5]
    assert any(e["args"]["reason"] == "syscall" for e in parks)
    assert any(e["name"].startswith("ready G") for e in evs if e["ph"] == "i")
    pre = [e for e in evs if e["ph"] == "i" and e["name"].startswith("preempt G")]
    assert pre and pre[0]["args"]["how"] in ("async", "cooperative"), "no preemption in the trace"
    sysc = [e for e in evs if e["ph"] == "X" and e["pid"] == 2 and e["name"].startswith("syscall sleep")]
    assert sysc and sysc[0]["dur"] >= 9000, sysc      # 10 ms, in microseconds
    assert names.get((2, sysc[0]["tid"]), "").startswith("M pygmp-syscall")
    # runs on one P never overlap
    spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in runs if e["tid"] == 0)
    for (s0, e0), (s1, _e1) in zip(spans, spans[1:]):
        assert s1 >= e0 - 1.0, (s0, e0, s1)


@pytest.mark.timeout(60)
def test_render_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = str(tmp_path / "t.json")
    r = run_script(TRACE_SRC % path, timeout=40, env={"GOMAXPROCS": "2"})
    assert r.returncode == 0, r.stderr
    png = str(tmp_path / "t.png")
    trace.render(path, png)
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"

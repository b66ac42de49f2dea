"""Run an example server with scheduler counters, for bench/tail.py --diag.

    python bench/tail_diag.py OUT.json examples/kv_server.py [ARGS...]

Runs the script as ``__main__`` and, when it returns (SIGINT), writes OUT.json:
the OS thread names ({native id: name}), ``netfd.stats`` (I/O readies on the
waiter's own P vs from another thread), and per P whatever counters the
runtime exposes (``pygmp.runtime.proc.sched_stats()`` when it exists), plus
``TAIL_SWITCHINTERVAL`` in the environment sets
``sys.setswitchinterval`` first.  Also wrapper-side counts of parker calls: ``unpark`` by the P's own thread or by
another one, ``poll`` calls from a thread other than the owner that found
events (readiness dispatched by a remote P).
"""

import json
import os
import runpy
import sys
import threading

out, script = sys.argv[1], sys.argv[2]
sys.argv = [script] + sys.argv[3:]
sys.path.insert(0, os.path.dirname(os.path.abspath(script)))

if os.environ.get("TAIL_SWITCHINTERVAL"):
    sys.setswitchinterval(float(os.environ["TAIL_SWITCHINTERVAL"]))

from pygmp.runtime import park, proc  # noqa: E402

counts = {}
_lock = threading.Lock()


def _bump(key, n=1):
    with _lock:
        counts[key] = counts.get(key, 0) + n


def _owner(parker):
    p = parker.p
    return p is not None and getattr(p, "ident", None) == threading.get_ident()


# The Python parker and pollDesc of the "before" version (absent once they are
# C: then the counts come from _hot.netpoll_stats() and proc.sched_stats())
_pyparker = isinstance(getattr(park, "PollParker", None), type) and \
    getattr(park.PollParker, "__module__", "") == park.__name__
_readyat = {}
_delays = []
_gaps = {}
_lastlook = {}
_parks = {}


def _hist(xs):
    xs = sorted(xs)
    if not xs:
        return {}
    n = len(xs)
    return {"n": n, "p50_ms": round(xs[n // 2] * 1e3, 2), "p99_ms": round(xs[int(n * .99)] * 1e3, 2),
            "max_ms": round(xs[-1] * 1e3, 2), "over_10ms": sum(1 for x in xs if x > .01)}


if _pyparker:
    _unpark = park.PollParker.unpark
    _poll = park.PollParker.poll


    def unpark(self):
        _bump("unpark_self" if _owner(self) else "unpark_remote")
        return _unpark(self)


    def poll(self):
        n = _poll(self)
        if n:
            _bump("poll_readied_own" if _owner(self) else "poll_readied_remote", n)
        return n


    park.PollParker.unpark = unpark
    park.PollParker.poll = poll

    # readiness -> run: time from an I/O event's dispatch (FD._ready, on whatever
    # thread polled) to the readied G running again (its FD._wait returning), and
    # the gaps between two looks at each P's poller (park or poll)
    import time as _t  # noqa: E402
    from pygmp.runtime import netfd  # noqa: E402

    _ready0, _wait0 = netfd.FD._ready, netfd.FD._wait
    _park0 = park.PollParker.park




    def _look(parker, start, end):
        k = id(parker)
        last = _lastlook.get(k)
        if last is not None:
            _gaps.setdefault("P%s" % getattr(parker.p, "id", "?"), []).append(start - last)
        _lastlook[k] = end


    def _ready(self, tseq, r, w):
        if r:
            _readyat[id(self)] = _t.monotonic()
        return _ready0(self, tseq, r, w)


    def _wait(self, mode, until=0.0):
        try:
            return _wait0(self, mode, until)
        finally:
            t = _readyat.pop(id(self), None) if mode == netfd.READ else None
            if t is not None:
                _delays.append(_t.monotonic() - t)


    def _park(self, timeout):
        t0 = _t.monotonic()
        try:
            return _park0(self, timeout)
        finally:
            t1 = _t.monotonic()
            _look(self, t0, t1)
            _parks.setdefault("P%s" % getattr(self.p, "id", "?"), []).append(t1 - t0)


    def poll2(self):
        t0 = _t.monotonic()
        try:
            return poll(self)
        finally:
            if _owner(self):
                _look(self, t0, _t.monotonic())


    netfd.FD._ready, netfd.FD._wait = _ready, _wait
    park.PollParker.park, park.PollParker.poll = _park, poll2



# The Python scheduler of the "before" version (proc.findrunnable/_idle/wakep);
# absent once the loop is in C, where sched_stats() reports the same counts.
if hasattr(proc, "_idle"):
    import time as _time
    _idle0, _fr0, _wakep0 = proc._idle, proc.findrunnable, proc.wakep
    _ran = {}

    def _idle(p):
        k = "P%d" % p.id
        _bump(k + ".idle")
        if _ran.get(p.id) is False:
            _bump(k + ".idle_after_futile_wake")   # woke, found nothing, sleeps again
        _ran[p.id] = False
        t0 = _time.monotonic()
        try:
            return _idle0(p)
        finally:
            _bump(k + ".idle_ms", int((_time.monotonic() - t0) * 1e3))

    def findrunnable(p):
        g = _fr0(p)
        _ran[p.id] = True
        _bump("P%d.findrunnable_g" % p.id)
        return g

    def wakep():
        _bump("wakep_calls")
        return _wakep0()

    proc._idle, proc.findrunnable, proc.wakep = _idle, findrunnable, wakep

def _hot_stats():
    from pygmp import _hot
    return _hot.netpoll_stats()


try:
    runpy.run_path(script, run_name="__main__")
except SystemExit:
    pass
finally:
    res = {"threads": {str(t.native_id): t.name for t in threading.enumerate()},
           "wrapper": counts}
    try:
        from pygmp.runtime import netfd  # noqa: F811
        res["netfd"] = dict(netfd.stats) if hasattr(netfd, "stats") else _hot_stats()
    except Exception as e:  # noqa: BLE001
        res["netfd"] = repr(e)
    res["ready_to_run"] = _hist(_delays)
    res["own_poller_gap"] = {k: _hist(v) for k, v in _gaps.items()}
    res["park_time"] = {k: _hist(v) for k, v in _parks.items()}
    try:
        res["homed"] = {"P%d" % q.id: q.nhomed for q in proc._sched.allp}
    except Exception as e:  # noqa: BLE001
        res["homed"] = repr(e)
    st = getattr(proc, "sched_stats", None)
    if st is not None:
        res["sched"] = st()
    with open(out, "w") as f:
        json.dump(res, f, indent=1)

"""pygmp.metrics: runtime metrics by name (Go's runtime/metrics).

    from pygmp import metrics
    metrics.read(["/sched/goroutines:goroutines", "/pygmp/threads/os:threads"])
    # {'/sched/goroutines:goroutines': 12, '/pygmp/threads/os:threads': 9}
    for name, kind, description in metrics.all(): ...

Names follow Go's ``/path:unit`` form.  Kinds: ``"uint64"`` (an int) and
``"float64-histogram"`` (a dict ``{"buckets": [upper bounds...], "counts":
[...]}`` of equal length; ``counts[i]`` is the number of samples ``v`` with
``buckets[i-1] < v <= buckets[i]``; the last bound is ``float("inf")``).
Counters are cumulative since the runtime started in this process.

``read(names)`` takes an iterable of names (a single ``str`` counts as one
name) and returns ``{name: value}``.  An unknown name raises ``ValueError``
naming every unknown one (Go returns ``KindBad`` samples instead; in Python an
error is harder to miss).  Reading starts the runtime if it is not running.
"""

import os as _os
import sys as _sys
import threading as _threading

from . import _hot
from .runtime import proc as _proc
from .runtime import syscall as _rtsyscall

__all__ = ["read", "all", "prometheus_text", "collector"]

UINT64 = "uint64"
HISTOGRAM = "float64-histogram"


def _sched():
    return _proc._sched or _proc.start()


def _gomaxprocs():
    return _sched().gomaxprocs


def _goroutines():
    _sched()
    return _proc.num_goroutine()


_LAT_BOUNDS = [1e-6 * 2 ** i for i in range(25)] + [float("inf")]


def _latencies():
    _sched()
    counts, _sum_ns = _hot.latencies()
    return {"buckets": list(_LAT_BOUNDS), "counts": counts}


_enumerate = _threading.enumerate        # bound at import: OS threads only, even
_active_count = _threading.active_count  # after pygmp.monkey patches threading


def _os_threads():
    try:
        import psutil
        return psutil.Process().num_threads()
    except Exception:            # noqa: BLE001 - psutil missing or refused
        try:
            return len(_os.listdir("/proc/self/task"))
        except OSError:
            return _active_count()


def _runtime_threads():
    s = _sched()
    idents = s.runtime_idents
    n = 0
    for t in _enumerate():
        if t.is_alive() and (t.ident in idents or getattr(t, "_pygmp_runtime", False)):
            n += 1
    return n


def _locked_threads():
    s = _sched()
    with s.lock:
        gs = list(s.threadgs.values())
    return sum(1 for g in gs if g.m is not None and g.m.kind == "locked")


def _workers():
    return _sched().nworkers


def _syscall_threads():
    _sched()
    return _rtsyscall.pool_threads()[0]


def _syscall_idle():
    _sched()
    return _rtsyscall.pool_threads()[1]


def _started_threads():
    return _sched().nthreads


def _max_threads():
    return _sched().maxthreads


def _handoffs():
    return _rtsyscall.stats["handoffs"]


def _inline():
    return _rtsyscall.stats["inline"]


def _inflight():
    return _sched().nsyscall


def _steals():
    s = _sched()
    return s.stealcount + sum(p.stealcount for p in s.allp)


def _netfd_stat(key):
    def get():
        netfd = _sys.modules.get("pygmp.runtime.netfd")
        if netfd is None:
            return 0
        return int(getattr(netfd, "stats", {}).get(key, 0))
    return get


def _netwaiters():
    return _sched().nnetwait


def _preempt_stat(*keys):
    def get():
        _sched()
        st = _hot.preempt_stats()
        return sum(int(st[k]) for k in keys)
    return get


def _sysmon_stat(key):
    def get():
        _sched()
        return int(_hot.sysmon_stats()[key])
    return get


def _signal_stat(key):
    def get():
        mod = _sys.modules.get("pygmp.signal")
        if mod is None:
            return 0
        return int(mod.stats.get(key, 0))
    return get


def _signal_subs():
    return _sched().nsignal


# name -> (kind, description, reader)
_METRICS = {
    "/sched/gomaxprocs:threads": (
        UINT64, "The current GOMAXPROCS setting: the number of Ps, each driven by "
                "its own worker OS thread.", _gomaxprocs),
    "/sched/goroutines:goroutines": (
        UINT64, "Count of live goroutines, the main goroutine included "
                "(pygmp.runtime.num_goroutine()).", _goroutines),
    "/sched/latencies:seconds": (
        HISTOGRAM, "Distribution of the time goroutines spend runnable before "
                   "running: every kind of transition (readied by a channel, "
                   "timer, I/O event, handoff return or sync primitive, newly "
                   "created, or preempted) is sampled, 1 in 8 as Go does.",
        _latencies),
    "/pygmp/threads/os:threads": (
        UINT64, "OS threads of this process as the OS counts them (psutil), "
                "pygmp's and everyone else's.", _os_threads),
    "/pygmp/threads/runtime:threads": (
        UINT64, "Live OS threads the runtime owns: P workers, sysmon, syscall "
                "threads, the resolver and signal relay threads (not the main "
                "thread, plain threads or go_locked threads).", _runtime_threads),
    "/pygmp/threads/workers:threads": (
        UINT64, "Live P worker threads (GOMAXPROCS, plus removed Ps still "
                "draining their goroutines).", _workers),
    "/pygmp/threads/syscall:threads": (
        UINT64, "Live syscall threads (the handoff pool), busy or idle.",
        _syscall_threads),
    "/pygmp/threads/syscall-idle:threads": (
        UINT64, "Syscall threads waiting for a call; each exits after "
                "pygmp.runtime.syscall.KEEPALIVE seconds idle.", _syscall_idle),
    "/pygmp/threads/locked:threads": (
        UINT64, "Threads running a go_locked goroutine.", _locked_threads),
    "/pygmp/threads/started:threads": (
        UINT64, "Threads started by the runtime that count against the thread "
                "limit (workers, syscall threads, go_locked threads).",
        _started_threads),
    "/pygmp/threads/limit:threads": (
        UINT64, "The thread limit (pygmp.runtime.set_max_threads); exceeding it "
                "is a fatal error.", _max_threads),
    "/pygmp/syscall/handoffs:calls": (
        UINT64, "Cumulative blocking calls (pygmp.syscall) handed off to a "
                "syscall thread while the goroutine parked.", _handoffs),
    "/pygmp/syscall/inline:calls": (
        UINT64, "Cumulative blocking calls run inline on the goroutine's worker "
                "thread because their call site's past calls all finished in "
                "under 20 us (calls from thread goroutines are not counted).",
        _inline),
    "/pygmp/syscall/inflight:calls": (
        UINT64, "Blocking calls in flight now (handoffs and name lookups): while "
                "non-zero, no deadlock is reported.", _inflight),
    "/pygmp/sched/steals:goroutines": (
        UINT64, "Cumulative goroutines taken from another P's runqueue by work "
                "stealing, by every P that ever ran (a removed P's count is kept).", _steals),
    "/pygmp/sched/preemptions:events": (
        UINT64, "Cumulative goroutine preemptions, cooperative and asynchronous: "
                "a goroutine that ran one time slice (10 ms) without yielding was "
                "put at the tail of its P's queue.",
        _preempt_stat("cooperative", "async")),
    "/pygmp/sched/preemptions-cooperative:events": (
        UINT64, "Cumulative cooperative preemptions: the goroutine yielded at a "
                "runtime entry (channel, select, sleep, sync, net, handoff) "
                "because sysmon had set its preempt flag.",
        _preempt_stat("cooperative")),
    "/pygmp/sched/preemptions-async:events": (
        UINT64, "Cumulative asynchronous preemptions: a goroutine running Python "
                "that never entered the runtime was interrupted at a safe point "
                "(off with GODEBUG=asyncpreemptoff=1).", _preempt_stat("async")),
    "/pygmp/sched/preemptions-refused:events": (
        UINT64, "Cumulative events at which an armed asynchronous preemption found "
                "no safe point (runtime code, a lock that is not goroutine-aware, "
                "a finalizer, a C tracer between calls) and waited.",
        _preempt_stat("refused")),
    "/pygmp/sched/stalls:events": (
        UINT64, "Cumulative stalls: a goroutine held its worker thread longer than "
                "the stall bound (100 ms) where it could not be preempted (a "
                "blocking call made inline, C code holding the GIL). Reported "
                "on stderr with GODEBUG=schedstall=1.", _sysmon_stat("stalls")),
    "/pygmp/sysmon/wakeups:events": (
        UINT64, "Cumulative sysmon rounds (each one wake-up of the sysmon thread; "
                "it sleeps while every P is idle).", _sysmon_stat("wakeups")),
    "/pygmp/sysmon/netpolls:calls": (
        UINT64, "Cumulative polls of a busy P's file descriptors by sysmon "
                "(nobody had polled them for 10 ms).", _sysmon_stat("netpolls")),
    "/pygmp/netpoll/ready-local:goroutines": (
        UINT64, "Cumulative goroutines readied by an I/O event on their home P's "
                "own thread (no thread hop).", _netfd_stat("ready_local")),
    "/pygmp/netpoll/ready-remote:goroutines": (
        UINT64, "Cumulative goroutines readied by an I/O event from another "
                "thread (a cross-thread wake-up).", _netfd_stat("ready_remote")),
    "/pygmp/netpoll/accept-backoff:events": (
        UINT64, "Cumulative accept() back-offs on EMFILE/ENFILE/ENOBUFS/ENOMEM.",
        _netfd_stat("accept_backoff")),
    "/pygmp/netpoll/waiters:goroutines": (
        UINT64, "Goroutines (and threads) parked on a socket now.", _netwaiters),
    "/pygmp/signal/subscriptions:channels": (
        UINT64, "Channels subscribed with pygmp.signal.notify now.", _signal_subs),
    "/pygmp/signal/received:signals": (
        UINT64, "Cumulative signals received for subscribed channels.",
        _signal_stat("received")),
    "/pygmp/signal/delivered:values": (
        UINT64, "Cumulative signal values sent to subscribed channels.",
        _signal_stat("delivered")),
    "/pygmp/signal/dropped:values": (
        UINT64, "Cumulative signal values dropped because the channel had no room.",
        _signal_stat("dropped")),
}


def all():  # noqa: A001 - Go's metrics.All
    """Every supported metric as ``(name, kind, description)``, sorted by name."""
    return [(name, kind, desc) for name, (kind, desc, _f) in sorted(_METRICS.items())]


def read(names):
    """``{name: value}`` for each name (see the module docstring for kinds)."""
    if isinstance(names, str):
        names = [names]
    names = list(names)
    bad = [n for n in names if not isinstance(n, str) or n not in _METRICS]
    if bad:
        raise ValueError("pygmp.metrics.read: unknown metric name%s: %s"
                         % ("s" if len(bad) > 1 else "", ", ".join(repr(n) for n in bad)))
    return {n: _METRICS[n][2]() for n in names}


# ---------------------------------------------------------------------------
# Prometheus export

def _cumulative(desc):
    # Every cumulative metric's description says so first (Go's Cumulative flag).
    return desc.startswith("Cumulative")


def prometheus_name(name):
    """The Prometheus name of metric ``name``: ``/sched/goroutines:goroutines``
    -> ``pygmp_sched_goroutines_goroutines``, ``/pygmp/x:y`` -> ``pygmp_x_y``
    (counters get ``_total`` added when exported)."""
    path, _, unit = name.partition(":")
    parts = [p for p in path.split("/") if p]
    if not parts or parts[0] != "pygmp":
        parts.insert(0, "pygmp")
    if unit:
        parts.append(unit)
    return "".join(c if c.isalnum() or c == "_" else "_" for c in "_".join(parts))


def _hist_parts(value):
    """(upper bounds, cumulative counts, total, estimated sum) of a histogram.
    Go's histograms keep no sum: it is estimated from each bucket's lower
    bound (as Prometheus' Go collector does), a lower bound of the true sum."""
    bounds, counts = value["buckets"], value["counts"]
    cum, total, est, lo = [], 0, 0.0, 0.0
    for b, c in zip(bounds, counts):
        total += c
        est += lo * c
        cum.append(total)
        lo = b
    return bounds, cum, total, est


def _fmt(v):
    if v == float("inf"):
        return "+Inf"
    return repr(float(v)) if isinstance(v, float) else str(v)


def _help(desc):
    return desc.replace("\\", "\\\\").replace("\n", "\\n")


def prometheus_text():
    """Every metric in Prometheus' text exposition format (version 0.0.4)."""
    values = read(_METRICS)
    out = []
    for name, (kind, desc, _f) in sorted(_METRICS.items()):
        pname = prometheus_name(name)
        value = values[name]
        if kind == HISTOGRAM:
            bounds, cum, total, est = _hist_parts(value)
            out.append("# HELP %s %s" % (pname, _help(desc)))
            out.append("# TYPE %s histogram" % pname)
            for b, c in zip(bounds, cum):
                out.append('%s_bucket{le="%s"} %d' % (pname, _fmt(b), c))
            if not bounds or bounds[-1] != float("inf"):
                out.append('%s_bucket{le="+Inf"} %d' % (pname, total))
            out.append("%s_sum %s" % (pname, _fmt(est)))
            out.append("%s_count %d" % (pname, total))
        elif _cumulative(desc):
            out.append("# HELP %s_total %s" % (pname, _help(desc)))
            out.append("# TYPE %s_total counter" % pname)
            out.append("%s_total %s" % (pname, _fmt(value)))
        else:
            out.append("# HELP %s %s" % (pname, _help(desc)))
            out.append("# TYPE %s gauge" % pname)
            out.append("%s %s" % (pname, _fmt(value)))
    return "\n".join(out) + "\n"


def collector():
    """A collector for ``prometheus_client``'s registry
    (``prometheus_client.REGISTRY.register(pygmp.metrics.collector())``)."""
    try:
        from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                            HistogramMetricFamily)
    except ImportError:
        raise ImportError("pygmp.metrics.collector() needs prometheus_client: "
                          "pip install prometheus-client") from None

    class PygmpCollector:
        """Reads every pygmp metric at each scrape."""

        def collect(self):
            values = read(_METRICS)
            for name, (kind, desc, _f) in sorted(_METRICS.items()):
                pname = prometheus_name(name)
                value = values[name]
                if kind == HISTOGRAM:
                    bounds, cum, total, est = _hist_parts(value)
                    buckets = [(_fmt(b), c) for b, c in zip(bounds, cum)]
                    if not bounds or bounds[-1] != float("inf"):
                        buckets.append(("+Inf", total))
                    yield HistogramMetricFamily(pname, desc, buckets=buckets, sum_value=est)
                elif _cumulative(desc):
                    yield CounterMetricFamily(pname, desc, value=value)
                else:
                    yield GaugeMetricFamily(pname, desc, value=value)

    return PygmpCollector()

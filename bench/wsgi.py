"""WSGI benchmark: pygmp's WSGI server and gunicorn worker beside gevent,
gthread, uvicorn and Granian, driven by wrk, side by side in one run.

    python bench/wsgi.py [--quick] [--seconds S] [--rounds R] [--conns C]
                         [--handlers hello,sleep,redis] [--servers NAME,...]
                         [--no-install] [--json PATH]

Run it with the venv that has pygmp installed (non-editable: the compiled
core) and the ``bench`` extra (flask, gevent, gunicorn, uvicorn, granian,
redis).  What is missing is installed first: ``wrk`` and ``redis-server``
with apt-get (as root), Python packages with pip into this interpreter;
``--no-install`` skips that.  A peer that still cannot run is skipped with a
note in the report.

Handlers (bench/peers/wsgi_app.py, one Flask app; uvicorn gets the same
routes as a bare ASGI app, bench/peers/wsgi_asgi.py):

* ``hello``: Flask hello world, ``GET /``.
* ``sleep``: ``GET /sleep``, a 5 ms wait in the server's own primitive:
  ``pygmp.time.sleep``, ``gevent.sleep``, ``time.sleep`` (gthread, Granian's
  threads), ``asyncio.sleep`` (uvicorn).
* ``redis``: ``GET /redis``, a redis round trip that takes 5 ms (``BLPOP``
  on an empty list with a 5 ms timeout: redis blocks that client only)
  through redis-py (redis.asyncio for uvicorn); on pygmp redis-py runs over a
  pygmp.net connection.  Needs redis-server.

Servers, one worker process each: ``gunicorn -k pygmp.gunicorn.Worker`` and
``python -m pygmp.wsgi`` at GOMAXPROCS=1 and at the default (the CPUs
available), ``gunicorn -k gevent``, ``gunicorn -k gthread --threads C``,
gevent's pywsgi (monkey-patched, TCP_NODELAY), uvicorn (httptools, uvloop
when installed) and Granian (``--interface wsgi --blocking-threads C``); C is
the number of wrk connections, so no thread pool is smaller than the load.

Method: every server is started fresh in each round, answers a check request
per handler, gets a 1 s wrk warm-up, then ``wrk -t1 -cC -dS --latency`` per
handler while its process tree's OS threads are sampled (max of the sum).
Rounds are interleaved (round 1 of every server, then round 2, ...); the
report gives medians over rounds of requests/s, p50, p99, and the ratios
pygmp / gevent.  A markdown table goes to stdout, progress to stderr, every
value to bench/results/wsgi.json.  All traffic is on 127.0.0.1; every wait is
bounded.
"""

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

import psutil

from _wrk import parse_wrk  # bench/ is sys.path[0]

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEERS = os.path.join(HERE, "peers")
PY = sys.executable
BIN = os.path.dirname(PY)

HANDLERS = {"hello": "/", "sleep": "/sleep", "redis": "/redis"}


def log(*a):
    print("[wsgi]", *a, file=sys.stderr, flush=True)


# -- what the run needs ----------------------------------------------------------

def ensure_tools(install):
    missing = [pkg for pkg, tool in (("wrk", "wrk"), ("redis-server", "redis-server"))
               if shutil.which(tool) is None]
    if missing and install and os.geteuid() == 0 and shutil.which("apt-get"):
        log("apt-get install -y", " ".join(missing))
        subprocess.run(["apt-get", "update", "-q"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=300, check=False)
        subprocess.run(["apt-get", "install", "-y", "-q", *missing], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=600, check=False)


PY_PACKAGES = {"flask": "flask", "gevent": "gevent", "gunicorn": "gunicorn",
               "uvicorn": "uvicorn", "granian": "granian", "redis": "redis",
               "httptools": "httptools", "uvloop": "uvloop"}


def have(module):
    r = subprocess.run([PY, "-c", "import %s" % module], capture_output=True, timeout=60)
    return r.returncode == 0


def ensure_packages(install):
    missing = [pip for mod, pip in PY_PACKAGES.items() if not have(mod)]
    if missing and install:
        log("pip install", " ".join(missing))
        subprocess.run([PY, "-m", "pip", "install", "-q", *missing], timeout=900,
                       check=False)
    return {mod: have(mod) for mod in PY_PACKAGES}


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# -- servers ----------------------------------------------------------------------

def _gunicorn(worker, *extra):
    flags = []
    try:
        from gunicorn import config
        if "control_socket_disable" in {s.name for s in config.KNOWN_SETTINGS}:
            flags.append("--no-control-socket")
    except ImportError:
        pass
    return lambda port, c: [PY, "-m", "gunicorn", "-k", worker, "-w", "1",
                            "-b", "127.0.0.1:%d" % port, "--chdir", PEERS,
                            "--log-level", "warning", "--backlog", "2048",
                            *flags, *[x.replace("{C}", str(c)) for x in extra], "wsgi_app:app"]


def _pygmp_wsgi(port, c):
    return [PY, "-m", "pygmp.wsgi", "wsgi_app:app", "--bind", "127.0.0.1:%d" % port]


def _pywsgi(port, c):
    return [PY, os.path.join(PEERS, "wsgi_pywsgi.py"), "127.0.0.1:%d" % port]


def _uvicorn(port, c):
    loop = "uvloop" if have("uvloop") else "asyncio"
    return [PY, "-m", "uvicorn", "wsgi_asgi:app", "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--http", "httptools", "--loop", loop, "--no-access-log",
            "--log-level", "warning", "--backlog", "2048", "--app-dir", PEERS]


def _granian(port, c):
    exe = os.path.join(BIN, "granian")
    cmd = [exe] if os.path.exists(exe) else [PY, "-m", "granian"]
    return cmd + ["--interface", "wsgi", "--host", "127.0.0.1", "--port", str(port),
                  "--workers", "1", "--blocking-threads", str(c), "--no-ws",
                  "--log-level", "warning", "--backlog", "2048", "--working-dir", PEERS,
                  "wsgi_app:app"]


# name, command builder, WSGI_BENCH_RUNTIME, GOMAXPROCS (None: default), python modules
SERVERS = [
    ("gunicorn -k pygmp P=1", _gunicorn("pygmp.gunicorn.Worker"), "pygmp", "1", ["gunicorn"]),
    ("gunicorn -k pygmp P=N", _gunicorn("pygmp.gunicorn.Worker"), "pygmp", None, ["gunicorn"]),
    ("pygmp.wsgi P=1", _pygmp_wsgi, "pygmp", "1", []),
    ("pygmp.wsgi P=N", _pygmp_wsgi, "pygmp", None, []),
    ("gunicorn -k gevent", _gunicorn("gevent", "--worker-connections", "1000"), "gevent", None,
     ["gunicorn", "gevent"]),
    ("gunicorn -k gthread", _gunicorn("gthread", "--threads", "{C}"), "threads", None,
     ["gunicorn"]),
    ("gevent pywsgi", _pywsgi, "gevent", None, ["gevent"]),
    ("uvicorn (ASGI)", _uvicorn, "asyncio", None, ["uvicorn", "httptools"]),
    ("granian (WSGI)", _granian, "threads", None, ["granian"]),
]


class Server:
    def __init__(self, name, cmd, env, ready_timeout=30):
        self.name = name
        e = os.environ.copy()
        e.pop("GOMAXPROCS", None)
        e.update(env)
        self.port = int(cmd[cmd.index("--port") + 1]) if "--port" in cmd else int(
            [a for a in cmd if a.startswith("127.0.0.1:")][0].rpartition(":")[2])
        self.p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  env=e, cwd=PEERS, text=True, start_new_session=True)
        self.err = []
        threading.Thread(target=self._drain, daemon=True).start()
        end = time.monotonic() + ready_timeout
        while time.monotonic() < end:
            if self.p.poll() is not None:
                raise RuntimeError("exited with %s: %s" % (self.p.returncode, self.errtail()))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("did not open its port in %ds: %s" % (ready_timeout, self.errtail()))

    def _drain(self):
        for line in self.p.stderr:
            if len(self.err) < 2000:
                self.err.append(line)

    def errtail(self, n=1500):
        return "".join(self.err)[-n:]

    def check(self, path, timeout=20):
        end = time.monotonic() + timeout
        err = None
        while time.monotonic() < end:
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.port, path),
                                            timeout=5) as r:
                    return r.status, r.read()
            except Exception as e:  # noqa: BLE001 - retried until the deadline
                err = e
                time.sleep(0.2)
        raise RuntimeError("%s: %s %s" % (path, err, self.errtail()))

    def _tree(self):
        procs = [psutil.Process(self.p.pid)]
        return procs + procs[0].children(recursive=True)

    def threads(self):
        try:
            return sum(p.num_threads() for p in self._tree())
        except psutil.Error:
            return 0

    def cpu(self):
        """CPU seconds (user + system) used so far by the process tree."""
        total = 0.0
        try:
            for p in self._tree():
                t = p.cpu_times()
                total += t.user + t.system
        except psutil.Error:
            pass
        return total

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                pass
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.p.wait(10)
        try:                        # gunicorn's workers, if the master died first
            os.killpg(self.p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


# -- wrk ----------------------------------------------------------------------------

def wrk(port, path, conns, secs, latency=True):
    cmd = ["wrk", "-t1", "-c%d" % conns, "-d%ds" % secs, "--timeout", "5s",
           "http://127.0.0.1:%d%s" % (port, path)]
    if latency:
        cmd.insert(1, "--latency")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 60)
    return parse_wrk(p.stdout), p.stdout


def measure(srv, path, conns, secs):
    sampling = [True]
    peak = [srv.threads()]

    def sample():
        while sampling[0]:
            peak[0] = max(peak[0], srv.threads())
            time.sleep(0.1)
    wrk(srv.port, path, conns, 1, latency=False)          # warm-up
    t = threading.Thread(target=sample, daemon=True)
    t.start()
    cpu0 = srv.cpu()
    try:
        r, out = wrk(srv.port, path, conns, secs)
    finally:
        cpu1 = srv.cpu()
        sampling[0] = False
        t.join(2)
    r["threads"] = peak[0]
    if r.get("requests"):
        r["cpu_us"] = (cpu1 - cpu0) / r["requests"] * 1e6
    if "rps" not in r:
        r["error"] = "wrk: " + out[-500:]
    if r.get("non2xx") or r.get("error"):
        r["server_stderr"] = srv.errtail(1500)
    return r


# -- the run ------------------------------------------------------------------------

def start_redis():
    exe = shutil.which("redis-server")
    if exe is None:
        return None, None
    port = free_port()
    p = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--maxclients", "10000"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    end = time.monotonic() + 10
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return p, "127.0.0.1:%d" % port
        except OSError:
            time.sleep(0.05)
    p.kill()
    return None, None


def fmt(v, nd=0):
    if v is None:
        return "–"
    return ("%." + str(nd) + "f") % v


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conns", type=int, default=100)
    ap.add_argument("--handlers", default="hello,sleep,redis")
    ap.add_argument("--servers", default=None,
                    help="comma-separated substrings of server names to run")
    ap.add_argument("--quick", action="store_true", help="1 round of 2 s")
    ap.add_argument("--no-install", action="store_true")
    ap.add_argument("--json", default=os.path.join(HERE, "results", "wsgi.json"))
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.rounds = 2, 1
    raise_nofile()
    ensure_tools(not args.no_install)
    mods = ensure_packages(not args.no_install)
    if shutil.which("wrk") is None:
        raise SystemExit("bench/wsgi.py: wrk is not installed (Debian package wrk)")
    handlers = [h for h in args.handlers.split(",") if h]
    for h in handlers:
        if h not in HANDLERS:
            raise SystemExit("unknown handler %r (hello, sleep, redis)" % h)
    notes = []
    redis_proc, redis_addr = (None, None)
    if "redis" in handlers:
        redis_proc, redis_addr = start_redis()
        if redis_addr is None:
            handlers.remove("redis")
            notes.append("redis: no redis-server, so no redis handler (the sleep handler "
                         "stands in for it)")
    servers = []
    for name, mk, runtime, procs, needs in SERVERS:
        if args.servers and not any(s.strip() and s.strip() in name
                                    for s in args.servers.split(",")):
            continue
        lacking = [m for m in needs + ["flask"] if not mods.get(m, True)]
        if lacking:
            notes.append("%s: skipped, cannot import %s" % (name, ", ".join(lacking)))
            continue
        servers.append((name, mk, runtime, procs))
    import pygmp.runtime
    ncpu = pygmp.runtime.num_cpu()
    load0 = os.getloadavg()
    results = {name: {h: [] for h in handlers} for name, *_ in servers}
    errors = {}
    try:
        for rnd in range(args.rounds):
            for name, mk, runtime, procs in servers:
                if name in errors:
                    continue
                env = {"WSGI_BENCH_RUNTIME": runtime}
                if procs:
                    env["GOMAXPROCS"] = procs
                if redis_addr:
                    env["WSGI_BENCH_REDIS"] = redis_addr
                port = free_port()
                try:
                    srv = Server(name, mk(port, args.conns), env)
                except (RuntimeError, OSError) as e:
                    errors[name] = "failed to start: %s" % e
                    log(name, errors[name][:800])
                    continue
                try:
                    for h in handlers:
                        srv.check(HANDLERS[h])
                    for h in handlers:
                        r = measure(srv, HANDLERS[h], args.conns, args.seconds)
                        results[name][h].append(r)
                        log("round %d  %-22s %-5s %8s req/s  p50 %7s ms  p99 %8s ms  threads %s%s"
                            % (rnd + 1, name, h, fmt(r.get("rps")), fmt(r.get("p50_ms"), 2),
                               fmt(r.get("p99_ms"), 2), r.get("threads"),
                               "  ERR " + str({k: r[k] for k in r if k in (
                                   "error", "non2xx", "socket_errors")}) if any(
                                   k in r for k in ("error", "non2xx", "socket_errors")) else ""))
                except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
                    errors[name] = "failed: %s" % e
                    log(name, errors[name][:800])
                finally:
                    srv.stop()
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            try:
                redis_proc.wait(10)
            except subprocess.TimeoutExpired:
                redis_proc.kill()

    def med(name, h, key):
        vals = [r[key] for r in results[name][h] if r.get(key) is not None]
        return statistics.median(vals) if vals else None

    summary = {}
    for name, *_ in servers:
        summary[name] = {h: {k: med(name, h, k) for k in ("rps", "p50_ms", "p99_ms", "threads",
                                                          "cpu_us")}
                         for h in handlers}
    cmd = "python bench/wsgi.py " + " ".join(sys.argv[1:])
    lines = ["WSGI servers, one worker process each; `%s`; wrk -t1 -c%d, %d s per run, "
             "median of %d interleaved rounds; %d CPUs (P=N means GOMAXPROCS=%d); "
             "threads: OS threads of the server's process tree (max during the run); "
             "CPU µs/req: the server's CPU time (user + system, whole process tree) "
             "per request served, which a busy machine disturbs far less than req/s. "
             "Load average at start / end: %.1f / %.1f."
             % (cmd.strip(), args.conns, args.seconds, args.rounds, ncpu, ncpu, load0[0],
                os.getloadavg()[0]), ""]
    head = "| server |" + "".join(" %s req/s | p50 / p99 ms | CPU µs/req | threads |" % h
                                  for h in handlers)
    lines += [head, "|---|" + "---:|---:|---:|---:|" * len(handlers)]
    for name, *_ in servers:
        if name in errors and not any(results[name][h] for h in handlers):
            lines.append("| %s | %s |" % (name, errors[name][:120].replace("|", "/")))
            continue
        row = "| %s |" % name
        for h in handlers:
            s = summary[name][h]
            row += " %s | %s / %s | %s | %s |" % (fmt(s["rps"]), fmt(s["p50_ms"], 1),
                                                 fmt(s["p99_ms"], 1), fmt(s["cpu_us"]),
                                                 fmt(s["threads"]))
        lines.append(row)
    ratios = []
    pairs = [("gunicorn -k pygmp P=1", "gunicorn -k gevent"),
             ("gunicorn -k pygmp P=N", "gunicorn -k gevent"),
             ("pygmp.wsgi P=1", "gevent pywsgi"), ("pygmp.wsgi P=N", "gevent pywsgi")]
    for a, b in pairs:
        if a in summary and b in summary:
            parts = []
            for h in handlers:
                x, y = summary[a][h]["rps"], summary[b][h]["rps"]
                cx, cy = summary[a][h]["cpu_us"], summary[b][h]["cpu_us"]
                parts.append("%s %s (CPU/req %s)" % (
                    h, "%.2fx" % (x / y) if x and y else "–",
                    "%.2fx" % (cx / cy) if cx and cy else "–"))
            ratios.append("- %s / %s, requests/s (CPU per request): %s" % (a, b, ", ".join(parts)))
    if ratios:
        lines += ["", "Ratios:"] + ratios
    if notes or errors:
        lines += ["", "Notes:"] + ["- " + n for n in notes] + [
            "- %s: %s" % (k, v[:300]) for k, v in errors.items()]
    report = "\n".join(lines)
    print(report)
    out = {"command": cmd, "conns": args.conns, "seconds": args.seconds,
           "rounds": args.rounds, "handlers": handlers, "cpus": ncpu,
           "machine": {"platform": platform.platform(), "python": platform.python_version(),
                       "loadavg_start": load0, "loadavg_end": os.getloadavg()},
           "results": results, "summary": summary, "errors": errors, "notes": notes,
           "report": report}
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1)
    log("wrote", args.json)


if __name__ == "__main__":
    main()

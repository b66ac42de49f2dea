"""Network benchmarks: pygmp's example servers against gevent, asyncio, uvloop,
threads (and redis-server), driven by load generators that are not Python.

    python bench/net.py [--quick] [--only echo,http,resp,idle] [--install]
                        [--seconds S] [--json PATH]

Run it with the venv that has pygmp installed (non-editable, for the compiled
netpoller) plus the `bench` extra (gevent, uvloop) and httptools.

* echo: bench/echo_client.c (compiled here with cc; epoll, one thread): 100
  and 1,000 connections, each sending 64 bytes and waiting for the 64-byte
  echo, for a fixed time after a warm-up; requests/s, p50, p99.  Servers:
  examples/echo_server.py at GOMAXPROCS=1 and 2, gevent StreamServer, asyncio
  streams, asyncio + uvloop, thread per connection (bench/peers/).
* http: `wrk --latency` (100 connections) against examples/http_server.py
  (httptools), gevent + httptools (the same parser: the ratio's base),
  gevent's pywsgi, uvloop + httptools, all serving the same page.
* resp: `redis-benchmark -t ping,set,get -c 50 -n 200000`, with and without
  `-P 16`, against examples/kv_server.py (GOMAXPROCS=1 and 2), the same store
  and command code on gevent, asyncio and uvloop, and redis-server (the
  ceiling) if installed.
* idle: 10,000 idle connections to the echo servers: OS threads and RSS per
  connection.

For every server the OS thread count is sampled with psutil during the run
(the max is reported).  A markdown report goes to stdout, progress to
stderr, everything to bench/results/net.json.  wrk, redis-tools and
redis-server are Debian packages: `--install` runs `apt-get install -y` for
the missing ones; nothing is installed otherwise and missing tools are
skipped.  All traffic stays on 127.0.0.1; every load loop is bounded in time.
"""

import argparse
import csv
import io
import json
import os
import platform
import re
import resource
import shutil
import statistics
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import psutil

from _wrk import parse_wrk  # bench/ is sys.path[0]

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EX = os.path.join(ROOT, "examples")
PEERS = os.path.join(HERE, "peers")
PY = sys.executable


def log(*a):
    print("[net]", *a, file=sys.stderr, flush=True)


# -- tools --------------------------------------------------------------------

def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def install(pkgs):
    missing = [p for p, tool in pkgs if shutil.which(tool) is None]
    if not missing:
        return
    log("apt-get install -y", " ".join(missing))
    subprocess.run(["apt-get", "update", "-q"], check=False, timeout=300,
                   stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=False, timeout=600,
                   stdout=subprocess.DEVNULL)


def build_client(tmp):
    exe = os.path.join(tmp, "echo_client")
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        raise SystemExit("bench/net.py: no C compiler (cc) to build bench/echo_client.c")
    subprocess.run([cc, "-O2", "-o", exe, os.path.join(HERE, "echo_client.c")], check=True,
                   timeout=120)
    return exe


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# -- servers ------------------------------------------------------------------

class Server:
    """A server process: started, its address read from its first stdout line
    (``listening on HOST:PORT``), its threads sampled, stopped with SIGINT."""

    def __init__(self, name, cmd, env=None, port=None, ready_timeout=30):
        self.name = name
        e = os.environ.copy()
        e.pop("GOMAXPROCS", None)
        if env:
            e.update(env)
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=e, cwd=ROOT, text=True, start_new_session=True)
        self.ps = psutil.Process(self.p.pid)
        self.err = []
        threading.Thread(target=self._drain, args=(self.p.stderr, self.err), daemon=True).start()
        if port is not None:                # redis-server: poll the port
            self.port = port
            deadline = time.monotonic() + ready_timeout
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.05)
            else:
                self.kill()
                raise RuntimeError("%s did not open port %d" % (name, port))
            threading.Thread(target=self._drain, args=(self.p.stdout, []), daemon=True).start()
        else:
            box = []
            t = threading.Thread(target=lambda: box.append(self.p.stdout.readline()), daemon=True)
            t.start()
            t.join(ready_timeout)
            line = box[0] if box else ""
            if not line.startswith("listening on "):
                self.kill()
                raise RuntimeError("%s did not start: %r %s" % (name, line, "".join(self.err)[-2000:]))
            self.port = int(line.strip().rpartition(":")[2])
            threading.Thread(target=self._drain, args=(self.p.stdout, []), daemon=True).start()
        self._sampling = False
        self.max_threads = 0

    @staticmethod
    def _drain(f, sink):
        for line in f:
            if len(sink) < 1000:
                sink.append(line)

    def threads(self):
        try:
            return self.ps.num_threads()
        except psutil.Error:
            return 0

    def rss(self):
        try:
            return self.ps.memory_info().rss
        except psutil.Error:
            return 0

    def sample(self):
        """Context manager: sample the thread count every 50 ms."""
        srv = self

        class _S:
            def __enter__(self):
                srv.max_threads = srv.threads()
                srv._sampling = True
                self.t = threading.Thread(target=self.run, daemon=True)
                self.t.start()

            def run(self):
                while srv._sampling:
                    srv.max_threads = max(srv.max_threads, srv.threads())
                    time.sleep(0.05)

            def __exit__(self, *exc):
                srv._sampling = False
                self.t.join(2)
        return _S()

    def alive(self):
        return self.p.poll() is None

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.p.returncode

    def kill(self):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.p.wait(10)


def pygmp_cmd(script, procs):
    return [PY, os.path.join(EX, script), "--gomaxprocs", str(procs), "127.0.0.1:0"]


def peer_cmd(script, *args):
    return [PY, os.path.join(PEERS, script), *args, "127.0.0.1:0"]


# -- echo ---------------------------------------------------------------------

ECHO_SERVERS = [
    ("pygmp P=1", lambda: pygmp_cmd("echo_server.py", 1)),
    ("pygmp P=2", lambda: pygmp_cmd("echo_server.py", 2)),
    ("gevent", lambda: peer_cmd("echo_gevent.py")),
    ("asyncio", lambda: peer_cmd("echo_asyncio.py")),
    ("uvloop", lambda: peer_cmd("echo_asyncio.py", "--uvloop")),
    ("threads", lambda: peer_cmd("echo_threads.py")),
]

_KV_RE = re.compile(r"(\w+)=([-\d.]+)")


def run_echo(client, conns_list, secs, warmup):
    rows = []
    for name, mk in ECHO_SERVERS:
        try:
            srv = Server(name, mk())
        except RuntimeError as e:
            log("echo", name, "failed to start:", e)
            rows += [{"server": name, "conns": c, "error": str(e)[:500]} for c in conns_list]
            continue
        for conns in conns_list:
            log("echo %-10s %5d conns, %.0f s ..." % (name, conns, secs))
            with srv.sample():
                try:
                    p = subprocess.run([client, "load", "127.0.0.1", str(srv.port), str(conns),
                                        str(secs), str(warmup), "64"],
                                       capture_output=True, text=True, timeout=secs + warmup + 90)
                    out = p.stdout.strip()
                except subprocess.TimeoutExpired:
                    out, p = "", None
            r = {"server": name, "conns": conns, "threads": srv.max_threads,
                 "rss_mib": round(srv.rss() / 2**20, 1)}
            if p is None or p.returncode != 0 or "rps=" not in out:
                r["error"] = "client: %s %s" % (out, p.stderr[-500:] if p else "timeout")
                log("   ", r["error"])
            else:
                kv = dict(_KV_RE.findall(out))
                r.update(rps=float(kv["rps"]), p50_us=int(kv["p50_us"]),
                         p90_us=int(kv["p90_us"]), p99_us=int(kv["p99_us"]),
                         max_us=int(kv["max_us"]), errors=int(kv["errors"]))
                log("    %.0f req/s  p50 %d us  p99 %d us  threads %d"
                    % (r["rps"], r["p50_us"], r["p99_us"], r["threads"]))
            if not srv.alive():
                r["error"] = "server died: " + "".join(srv.err)[-1000:]
                log("   ", r["error"])
            rows.append(r)
        rc = srv.stop()
        for r in rows:
            if r["server"] == name:
                r["exit_status"] = rc
    return rows


# -- http ---------------------------------------------------------------------

HTTP_SERVERS = [
    ("pygmp P=1", lambda: pygmp_cmd("http_server.py", 1)),
    ("pygmp P=2", lambda: pygmp_cmd("http_server.py", 2)),
    ("gevent+httptools", lambda: peer_cmd("http_gevent_httptools.py")),
    ("gevent pywsgi", lambda: peer_cmd("http_gevent.py")),
    ("uvloop+httptools", lambda: peer_cmd("http_uvloop.py")),
]


def run_http(secs, conns):
    wrk = shutil.which("wrk")
    if wrk is None:
        log("http: wrk not installed (apt package wrk; --install): skipped")
        return {"skipped": "wrk not installed"}
    rows, page = [], None
    for name, mk in HTTP_SERVERS:
        try:
            srv = Server(name, mk())
        except RuntimeError as e:
            rows.append({"server": name, "error": str(e)[:500]})
            continue
        body = urllib.request.urlopen("http://127.0.0.1:%d/" % srv.port, timeout=10).read()
        if page is None:
            page = body
        same = body == page
        log("http %-16s wrk -c%d %.0f s ..." % (name, conns, secs))
        with srv.sample():
            try:
                p = subprocess.run([wrk, "-t2", "-c%d" % conns, "-d%ds" % max(1, int(secs)),
                                    "--latency", "--timeout", "5s",
                                    "http://127.0.0.1:%d/" % srv.port],
                                   capture_output=True, text=True, timeout=secs + 60)
                out = p.stdout
            except subprocess.TimeoutExpired:
                out = ""
        r = {"server": name, "conns": conns, "same_page": same, "threads": srv.max_threads}
        r.update(parse_wrk(out))
        if "rps" not in r:
            r["error"] = out[-1000:]
        log("    %s" % {k: v for k, v in r.items() if k != "server"})
        r["exit_status"] = srv.stop()
        rows.append(r)
    return rows


# -- resp ---------------------------------------------------------------------

def resp_servers():
    s = [
        ("pygmp P=1", lambda: (pygmp_cmd("kv_server.py", 1), None)),
        ("pygmp P=2", lambda: (pygmp_cmd("kv_server.py", 2), None)),
        ("gevent", lambda: (peer_cmd("kv_gevent.py"), None)),
        ("asyncio", lambda: (peer_cmd("kv_asyncio.py"), None)),
        ("uvloop", lambda: (peer_cmd("kv_asyncio.py", "--uvloop"), None)),
    ]
    rs = shutil.which("redis-server")
    if rs:
        def mk():
            port = free_port()
            return ([rs, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no", "--protected-mode", "no", "--daemonize", "no",
                     "--loglevel", "warning"], port)
        s.append(("redis-server", mk))
    return s


def parse_redis_csv(out):
    res = {}
    for row in csv.reader(io.StringIO(out)):
        if len(row) >= 2 and row[0] != "test":
            try:
                d = {"rps": float(row[1])}
                if len(row) >= 7:
                    d["avg_ms"], d["p50_ms"], d["p99_ms"] = float(row[2]), float(row[4]), float(row[6])
                res[row[0]] = d
            except ValueError:
                pass
    return res


def run_resp(n, clients):
    rb = shutil.which("redis-benchmark")
    if rb is None:
        log("resp: redis-benchmark not installed (apt package redis-tools; --install): skipped")
        return {"skipped": "redis-benchmark not installed"}
    rows = []
    for name, mk in resp_servers():
        cmd, port = mk()
        try:
            srv = Server(name, cmd, port=port)
        except RuntimeError as e:
            rows.append({"server": name, "error": str(e)[:500]})
            continue
        for pipe in (1, 16):
            log("resp %-12s -c %d -n %d -P %d ..." % (name, clients, n, pipe))
            with srv.sample():
                try:
                    p = subprocess.run([rb, "-h", "127.0.0.1", "-p", str(srv.port), "-t", "ping,set,get",
                                        "-c", str(clients), "-n", str(n), "-P", str(pipe), "--csv"],
                                       capture_output=True, text=True, timeout=300)
                    out = p.stdout
                except subprocess.TimeoutExpired:
                    out = ""
            r = {"server": name, "pipeline": pipe, "threads": srv.max_threads,
                 "tests": parse_redis_csv(out)}
            if not r["tests"]:
                r["error"] = (out + "".join(srv.err))[-1000:]
            log("    " + "  ".join("%s %.0f" % (k, v["rps"]) for k, v in r["tests"].items()))
            rows.append(r)
        rc = srv.stop()
        for r in rows:
            if r["server"] == name:
                r["exit_status"] = rc
    return rows


# -- rounds -------------------------------------------------------------------

def _median_rows(rounds, key):
    """Rows of several rounds merged into one row per ``key(row)``: numbers
    are the median over the rounds that measured them (nested dicts, such as
    redis-benchmark's per-test figures, likewise); ``rounds`` counts them."""
    merged, order = {}, []
    for rows in rounds:
        if not isinstance(rows, list):
            return rows                     # skipped: the tool is missing
        for r in rows:
            k = key(r)
            if k not in merged:
                merged[k] = []
                order.append(k)
            merged[k].append(r)

    def med(vals):
        vals = [v for v in vals if v is not None]
        if not vals:
            return None
        if all(isinstance(v, dict) for v in vals):
            keys = {kk for v in vals for kk in v}
            return {kk: med([v.get(kk) for v in vals]) for kk in keys}
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            m = statistics.median(vals)
            return round(m, 3) if isinstance(m, float) else m
        return vals[-1]

    out = []
    for k in order:
        rs = merged[k]
        ok = [r for r in rs if "error" not in r] or rs
        row = {f: med([r.get(f) for r in ok]) for f in {f for r in ok for f in r}}
        row["rounds"] = len(ok)
        if len(ok) < len(rs):
            row["failed_rounds"] = len(rs) - len(ok)
        out.append(row)
    return out


# -- idle ---------------------------------------------------------------------

IDLE_SERVERS = [
    ("pygmp P=2", lambda: pygmp_cmd("echo_server.py", 2)),
    ("gevent", lambda: peer_cmd("echo_gevent.py")),
    ("uvloop", lambda: peer_cmd("echo_asyncio.py", "--uvloop")),
]


def run_idle(client, conns, hold):
    rows = []
    for name, mk in IDLE_SERVERS:
        try:
            srv = Server(name, mk())
        except RuntimeError as e:
            rows.append({"server": name, "error": str(e)[:500]})
            continue
        time.sleep(0.3)
        th0, rss0 = srv.threads(), srv.rss()
        log("idle %-10s %d connections ..." % (name, conns))
        cp = subprocess.Popen([client, "idle", "127.0.0.1", str(srv.port), str(conns), str(hold)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        box = []
        t = threading.Thread(target=lambda: box.append(cp.stdout.readline()), daemon=True)
        t.start()
        t.join(120)
        line = box[0] if box else ""
        r = {"server": name, "conns": conns, "threads_before": th0,
             "rss_before_mib": round(rss0 / 2**20, 1)}
        if line.startswith("ready"):
            time.sleep(1.0)
            th1, rss1 = srv.threads(), srv.rss()
            r.update(threads_after=th1, rss_after_mib=round(rss1 / 2**20, 1),
                     kib_per_conn=round((rss1 - rss0) / 1024 / conns, 2),
                     client=line.strip())
            log("    threads %d -> %d, RSS %.1f -> %.1f MiB, %.2f KiB/conn"
                % (th0, th1, rss0 / 2**20, rss1 / 2**20, r["kib_per_conn"]))
        else:
            r["error"] = "client: %r %s" % (line, "".join(srv.err)[-500:])
            log("   ", r["error"])
        try:
            cp.wait(hold + 30)
        except subprocess.TimeoutExpired:
            cp.kill()
            cp.wait()
        r["exit_status"] = srv.stop()
        rows.append(r)
    return rows


# -- report -------------------------------------------------------------------

def ratio(v, base):
    return "%.2f×" % (v / base) if v and base else "—"


def report(res):
    out = []
    w = out.append
    m = res["machine"]
    w("## Network benchmarks (`bench/net.py%s`)\n" % (" --quick" if res["quick"] else ""))
    w("%s, %d logical CPUs, Python %s, Linux %s. Load generators share the CPUs with the server.\n"
      % (m["cpu"], m["cpus"], m["python"], m["kernel"]))
    if res.get("rounds", 1) > 1:
        w("Medians of %d interleaved rounds (every server once per round). Command: `%s`.\n"
          % (res["rounds"], res["command"]))
    if isinstance(res.get("echo"), list):
        w("### Echo: 64-byte round trips, C epoll client (bench/echo_client.c), %.0f s per run\n"
          % res["params"]["echo_seconds"])
        w("| server | conns | req/s | vs gevent | p50 µs | p99 µs | server OS threads |")
        w("|---|---:|---:|---:|---:|---:|---:|")
        base = {r["conns"]: r.get("rps") for r in res["echo"] if r["server"] == "gevent"}
        for r in res["echo"]:
            if "error" in r and "rps" not in r:
                w("| %s | %d | error | | | | |" % (r["server"], r["conns"]))
                continue
            w("| %s | %d | %.0f | %s | %d | %d | %d |"
              % (r["server"], r["conns"], r["rps"], ratio(r["rps"], base.get(r["conns"])),
                 r["p50_us"], r["p99_us"], r["threads"]))
        w("")
    if isinstance(res.get("http"), list):
        w("### HTTP: `wrk -t2 -c%d --latency` on `/`\n" % res["params"]["http_conns"])
        w("| server | req/s | vs gevent+httptools | vs gevent pywsgi | p50 ms | p99 ms | server OS threads |")
        w("|---|---:|---:|---:|---:|---:|---:|")
        base = next((r.get("rps") for r in res["http"] if r["server"] == "gevent+httptools"), None)
        wsgi = next((r.get("rps") for r in res["http"] if r["server"] == "gevent pywsgi"), None)
        for r in res["http"]:
            if "rps" not in r:
                w("| %s | error | | | | | |" % r["server"])
                continue
            w("| %s | %.0f | %s | %s | %s | %s | %d |"
              % (r["server"], r["rps"], ratio(r["rps"], base), ratio(r["rps"], wsgi),
                 r.get("p50_ms"), r.get("p99_ms"), r["threads"]))
        w("")
    elif res.get("http"):
        w("HTTP: skipped (%s)\n" % res["http"]["skipped"])
    if isinstance(res.get("resp"), list):
        w("### RESP: `redis-benchmark -t ping,set,get -c %d -n %d` (requests/s)\n"
          % (res["params"]["resp_clients"], res["params"]["resp_n"]))
        w("| server | -P | PING_INLINE | PING_MBULK | SET | GET | GET vs gevent | OS threads |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|")
        base = {r["pipeline"]: r["tests"].get("GET", {}).get("rps")
                for r in res["resp"] if r["server"] == "gevent" and "tests" in r}
        for r in res["resp"]:
            if not r.get("tests"):
                w("| %s | %s | error | | | | | |" % (r["server"], r.get("pipeline", "")))
                continue
            t = r["tests"]

            def g(k):
                return "%.0f" % t[k]["rps"] if k in t else "—"
            w("| %s | %d | %s | %s | %s | %s | %s | %d |"
              % (r["server"], r["pipeline"], g("PING_INLINE"), g("PING_MBULK"), g("SET"), g("GET"),
                 ratio(t.get("GET", {}).get("rps"), base.get(r["pipeline"])), r["threads"]))
        w("")
    elif res.get("resp"):
        w("RESP: skipped (%s)\n" % res["resp"]["skipped"])
    if isinstance(res.get("idle"), list):
        w("### Idle connections to the echo server\n")
        w("| server | conns | OS threads before → after | RSS before → after MiB | KiB per conn |")
        w("|---|---:|---|---|---:|")
        for r in res["idle"]:
            if "error" in r:
                w("| %s | %d | error | | |" % (r["server"], r["conns"]))
                continue
            w("| %s | %d | %d → %d | %.1f → %.1f | %.2f |"
              % (r["server"], r["conns"], r["threads_before"], r["threads_after"],
                 r["rss_before_mib"], r["rss_after_mib"], r["kib_per_conn"]))
        w("")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="short runs, small sizes (smoke test)")
    ap.add_argument("--only", default="echo,http,resp,idle")
    ap.add_argument("--seconds", type=float, default=None, help="seconds per echo/http run")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run echo/http/resp this many times, interleaved (every server "
                         "once per round), and report medians (default 1)")
    ap.add_argument("--install", action="store_true",
                    help="apt-get install -y wrk redis-tools redis-server if missing")
    ap.add_argument("--json", default=os.path.join(HERE, "results", "net.json"))
    args = ap.parse_args()
    only = set(args.only.split(","))
    secs = args.seconds or (1.5 if args.quick else 5.0)
    warmup = 0.5 if args.quick else 1.0
    params = {
        "echo_seconds": secs, "echo_warmup": warmup, "echo_conns": [100, 1000],
        "http_conns": 100, "http_seconds": secs,
        "resp_n": 20000 if args.quick else 200000, "resp_clients": 50,
        "idle_conns": 2000 if args.quick else 10000, "idle_hold": 3 if args.quick else 5,
    }
    if args.install:
        install([("wrk", "wrk"), ("redis-tools", "redis-benchmark"), ("redis-server", "redis-server")])
    nofile = raise_nofile()
    if nofile < params["idle_conns"] + 100:
        log("RLIMIT_NOFILE is %d: idle connections capped" % nofile)
        params["idle_conns"] = max(100, (nofile - 200) // 1)
    t0 = time.monotonic()
    res = {
        "quick": args.quick, "params": params,
        "machine": {"cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
                    "python": platform.python_version(), "kernel": platform.release(),
                    "nofile": nofile},
        "command": " ".join([os.path.basename(PY), "bench/net.py"] + sys.argv[1:]),
    }
    try:
        with open("/proc/cpuinfo") as f:
            mm = re.search(r"model name\s*:\s*(.*)", f.read())
            if mm:
                res["machine"]["cpu"] = mm.group(1).strip()
    except OSError:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        client = build_client(tmp)
        runs = {"echo": [], "http": [], "resp": []}
        for rnd in range(max(1, args.rounds)):
            if args.rounds > 1:
                log("round %d of %d" % (rnd + 1, args.rounds))
            if "echo" in only:
                runs["echo"].append(run_echo(client, params["echo_conns"], secs, warmup))
            if "http" in only:
                runs["http"].append(run_http(secs, params["http_conns"]))
            if "resp" in only:
                runs["resp"].append(run_resp(params["resp_n"], params["resp_clients"]))
        res["rounds"] = max(1, args.rounds)
        keys = {"echo": lambda r: (r["server"], r["conns"]), "http": lambda r: r["server"],
                "resp": lambda r: (r["server"], r["pipeline"])}
        for what, rounds in runs.items():
            if rounds:
                res[what] = _median_rows(rounds, keys[what])
        if "idle" in only:
            res["idle"] = run_idle(client, params["idle_conns"], params["idle_hold"])
    res["wall_seconds"] = round(time.monotonic() - t0, 1)
    md = report(res)
    res["markdown"] = md
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(res, f, indent=1)
    print(md)
    log("done in %.0f s; JSON in %s" % (res["wall_seconds"], args.json))


if __name__ == "__main__":
    main()

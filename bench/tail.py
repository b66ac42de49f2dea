"""Tail latency and fairness under pipelined load (issue 10, item 5).

    python bench/tail.py [--seconds S] [--rounds R] [--only http,resp]
                         [--servers pygmp1,pygmp2,gevent] [--json PATH]

Four *heavy* clients each write 1,000 pipelined requests at once, read the
1,000 replies, and start again; beside them one *light* client sends one
request at a time (a 2 ms pause between requests) and records the latency of
each.  Reported per server: the light client's p50 / p99 / max (ms), and the
heavy clients' throughput (requests/s) over the same window.

Servers: examples/http_server.py and examples/kv_server.py at GOMAXPROCS=1
and at the default (num_cpu(): 2 on the 2-CPU reference box), and gevent's peers from bench/peers/
(pywsgi; the same store on gevent's StreamServer).  Rounds are interleaved
(round 1 of every server, then round 2, ...); the report gives the medians
over rounds of each statistic.

The clients are Python: the heavy ones are threads of one process (they only
count reply bytes), the light one is its own process, so neither's GIL
touches the other's timings.  Run it with the venv that has pygmp installed
and gevent (the `bench` extra), from anywhere.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from net import EX, Server, log, peer_cmd, pygmp_cmd, raise_nofile  # noqa: E402

PY = sys.executable

HTTP_REQ = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
RESP_SET = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nhello\r\n"
RESP_REQ = b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n"


def _read_http_reply(sock):
    """Read one HTTP reply (Content-Length framing) and return its size."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = sock.recv(65536)
        if not d:
            raise OSError("eof")
        buf += d
    head, _, body = buf.partition(b"\r\n\r\n")
    n = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            n = int(v)
    while len(body) < n:
        d = sock.recv(65536)
        if not d:
            raise OSError("eof")
        body += d
    return len(head) + 4 + n


def connect(port, proto):
    """A connected socket and the size in bytes of one reply to REQ."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if proto == "http":
        s.sendall(HTTP_REQ)
        size = _read_http_reply(s)
    else:
        s.sendall(RESP_SET)
        r = b""
        while not r.endswith(b"\r\n"):
            r += s.recv(100)
        s.sendall(RESP_REQ)
        want = b"$5\r\nhello\r\n"
        r = b""
        while len(r) < len(want):
            r += s.recv(100)
        assert r == want, r
        size = len(want)
    return s, size


def _readn(s, buf, n):
    view = memoryview(buf)
    got = 0
    while got < n:
        k = s.recv_into(view[: min(len(buf), n - got)])
        if not k:
            raise OSError("eof")
        got += k


# -- client processes -----------------------------------------------------------

def heavy_main(port, proto, nclients, depth, secs, pause=0.0):
    req = (HTTP_REQ if proto == "http" else RESP_REQ) * depth
    counts = [0] * nclients
    stop = time.monotonic() + secs
    errs = []

    def run(i):
        try:
            s, size = connect(port, proto)
            buf = bytearray(1 << 20)
            while time.monotonic() < stop:
                s.sendall(req)
                _readn(s, buf, size * depth)
                counts[i] += depth
                if pause:
                    time.sleep(pause)
            s.close()
        except OSError as e:
            errs.append(repr(e))

    ts = [threading.Thread(target=run, args=(i,)) for i in range(nclients)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    el = time.monotonic() - t0
    print(json.dumps({"heavy_rps": sum(counts) / el, "per_client": counts, "errors": errs}),
          flush=True)


def light_main(port, proto, secs, gap):
    s, size = connect(port, proto)
    req = HTTP_REQ if proto == "http" else RESP_REQ
    buf = bytearray(65536)
    lat = []
    stop = time.monotonic() + secs
    pc = time.perf_counter
    while time.monotonic() < stop:
        t0 = pc()
        s.sendall(req)
        _readn(s, buf, size)
        lat.append(pc() - t0)
        time.sleep(gap)
    s.close()
    print(json.dumps({"lat": lat}), flush=True)


# -- driver ------------------------------------------------------------------------

def servers(proto, names, before=None):
    ex = "http_server.py" if proto == "http" else "kv_server.py"
    peer = "http_gevent.py" if proto == "http" else "kv_gevent.py"
    exb = os.path.join(EX, ex)
    table = {
        # the same example served by another interpreter/venv (--before PY:
        # e.g. a venv with the previous pygmp installed), in the same run
        "before1": ("before P=1", lambda: [before, exb, "--gomaxprocs", "1", "127.0.0.1:0"],
                    {"GOMAXPROCS": "1"}),
        "beforeN": ("before default P", lambda: [before, exb, "127.0.0.1:0"], {}),
        "pygmp1": ("pygmp P=1", lambda: pygmp_cmd(ex, 1), {"GOMAXPROCS": "1"}),
        # the runtime's default GOMAXPROCS (num_cpu(); 2 on the reference box)
        "pygmpN": ("pygmp default P", lambda: [PY, os.path.join(EX, ex), "127.0.0.1:0"], {}),
        "gevent": ("gevent", lambda: peer_cmd(peer), {}),
    }
    return [table[n] for n in names]


def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, int(round(q * (len(xs) - 1)))))
    return xs[k]


def one_run(port, proto, secs, warm, depth, nheavy, gap, gil_pid=None, pause=0.0):
    me = os.path.abspath(__file__)
    hv = subprocess.Popen([PY, me, "--role", "heavy", "--port", str(port), "--proto", proto,
                           "--seconds", str(secs + warm), "--heavy", str(nheavy),
                           "--depth", str(depth), "--heavy-pause", str(pause)],
                          stdout=subprocess.PIPE, text=True)
    time.sleep(warm)
    gil = {}
    if gil_pid is not None:
        import gilprobe
        box = []
        gt = threading.Thread(target=lambda: box.append(gilprobe.record(gil_pid, max(1.0, secs - 1))))
        gt.start()
    lt = subprocess.run([PY, me, "--role", "light", "--port", str(port), "--proto", proto,
                         "--seconds", str(secs), "--gap", str(gap)],
                        capture_output=True, text=True, timeout=secs + 120)
    if gil_pid is not None:
        gt.join()
        gil = box[0] if box else {}
    hout, _ = hv.communicate(timeout=secs + warm + 120)
    h = json.loads(hout.strip().splitlines()[-1]) if hout.strip() else {"heavy_rps": 0, "errors": ["no output"]}
    if lt.returncode != 0 or not lt.stdout.strip():
        return {"error": lt.stderr[-1000:]}
    lat = [x * 1e3 for x in json.loads(lt.stdout.strip().splitlines()[-1])["lat"]]
    r = {"n": len(lat), "p50_ms": pct(lat, 0.50), "p99_ms": pct(lat, 0.99),
         "max_ms": max(lat), "heavy_rps": h["heavy_rps"], "heavy_errors": h.get("errors")}
    if gil:
        r["gil"] = gil
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--role", default="driver", choices=["driver", "heavy", "light"])
    ap.add_argument("--port", type=int)
    ap.add_argument("--proto", default="http")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--heavy", type=int, default=4)
    ap.add_argument("--depth", type=int, default=1000)
    ap.add_argument("--gap", type=float, default=0.002)
    ap.add_argument("--heavy-pause", type=float, default=0.0,
                    help="seconds each heavy client waits between its batches (0: none, "
                         "as issue 10; >0 lets a server read hit EAGAIN between batches)")
    ap.add_argument("--before", default=None,
                    help="python of a venv with another pygmp: adds servers before1,beforeN")
    ap.add_argument("--only", default="http,resp")
    ap.add_argument("--servers", default="pygmp1,pygmpN,gevent")
    ap.add_argument("--env", default="", help="extra KEY=VAL,... for the pygmp servers")
    ap.add_argument("--diag", action="store_true",
                    help="run the pygmp servers under bench/tail_diag.py (scheduler counters)")
    ap.add_argument("--switchinterval", type=float, default=None,
                    help="sys.setswitchinterval for the pygmp servers (implies --diag's wrapper)")
    ap.add_argument("--gil", action="store_true",
                    help="GIL waits per server thread with perf uprobes (bench/gilprobe.py; root)")
    ap.add_argument("--json", default=os.path.join(HERE, "results", "tail.json"))
    args = ap.parse_args()
    if args.role == "heavy":
        return heavy_main(args.port, args.proto, args.heavy, args.depth, args.seconds,
                          args.heavy_pause)
    if args.role == "light":
        return light_main(args.port, args.proto, args.seconds, args.gap)
    raise_nofile()
    extra = dict(kv.split("=", 1) for kv in args.env.split(",") if kv)
    res = {"params": vars(args), "rows": []}
    names = args.servers.split(",")
    if args.before and "before1" not in names:
        names = ["before1", "beforeN"] + names
    for proto in args.only.split(","):
        runs = {n: [] for n in names}
        for rnd in range(args.rounds):
            for key, (label, mk, env) in zip(names, servers(proto, names, args.before)):
                e = dict(env)
                cmd = mk()
                diag = None
                if key.startswith(("pygmp", "before")):
                    e.update(extra)
                    if args.diag or args.switchinterval:
                        diag = os.path.join(tempfile.mkdtemp(), "diag.json")
                        cmd = [cmd[0], os.path.join(HERE, "tail_diag.py"), diag] + cmd[1:]
                    if args.switchinterval:
                        e["TAIL_SWITCHINTERVAL"] = str(args.switchinterval)
                srv = Server(label, cmd, env=e)
                try:
                    r = one_run(srv.port, proto, args.seconds, args.warmup, args.depth,
                                args.heavy, args.gap, srv.p.pid if args.gil else None,
                                args.heavy_pause)
                finally:
                    srv.stop()
                if diag and os.path.exists(diag):
                    with open(diag) as f:
                        r["diag"] = json.load(f)
                    tnames = r["diag"].get("threads", {})
                    if "gil" in r:
                        r["gil"] = {tnames.get(str(v["tid"]), k): v for k, v in r["gil"].items()}
                log("%s %-22s round %d: %s" % (proto, label, rnd + 1,
                                                {k: (round(v, 2) if isinstance(v, float) else v)
                                                 for k, v in r.items() if k not in ("gil", "diag")}))
                for k in ("gil", "diag"):
                    if k in r:
                        log("    %s: %s" % (k, json.dumps(r[k], sort_keys=True)))
                runs[key].append(r)
        for key, (label, _, _) in zip(names, servers(proto, names, args.before)):
            ok = [r for r in runs[key] if "error" not in r]
            row = {"proto": proto, "server": label, "runs": runs[key]}
            for k in ("p50_ms", "p99_ms", "max_ms", "heavy_rps"):
                row[k] = statistics.median(r[k] for r in ok) if ok else None
            res["rows"].append(row)
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(res, f, indent=1)
    print("| proto | server | light p50 ms | light p99 ms | light max ms | heavy req/s |")
    print("|---|---|---:|---:|---:|---:|")
    for r in res["rows"]:
        if r["p99_ms"] is None:
            print("| %s | %s | error | | | |" % (r["proto"], r["server"]))
            continue
        print("| %s | %s | %.1f | %.1f | %.1f | %.0f |" % (r["proto"], r["server"], r["p50_ms"],
                                                         r["p99_ms"], r["max_ms"], r["heavy_rps"]))


if __name__ == "__main__":
    main()

"""One shared netpoller vs one poller per P (HACKING.md "## Netpoller").

Runs a goroutine-per-connection echo server under both parker modes (default: per-P;
PYGMP_NETPOLL_SHARED=1: one poller for all Ps) at several GOMAXPROCS values and
drives it with bench/echo_client.c (a one-thread C epoll client, compiled here)
doing 64-byte round trips.  Every configuration runs ROUNDS times, interleaved,
and the median run (by requests/s) is reported.  "hops" is the share of Gs
readied by an I/O event from a thread other than their home P's worker
(pygmp.runtime.netfd.stats ready_remote / all): each one costs a cross-thread
wake-up and, on a GIL build, up to a switch interval of waiting for the GIL.

    python bench/netpoll_choice.py [--seconds S] [--rounds R] [--procs 1,2,4]
                                   [--conns 100,1000]

Run it with the venv that has pygmp installed (non-editable: the compiled
netpoller).  Prints a markdown table; every run is bounded in time.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def build_client(tmp):
    exe = os.path.join(tmp, "echo_client")
    cc = shutil.which("cc") or shutil.which("gcc")
    subprocess.run([cc, "-O2", "-o", exe, os.path.join(HERE, "echo_client.c")], check=True)
    return exe


SERVER = r"""
import json, sys
from pygmp import go, net
from pygmp.runtime import gomaxprocs, netfd
gomaxprocs(int(sys.argv[1]))
ln = net.listen("tcp", "127.0.0.1:0")
def handle(c):
    try:
        while True:
            d = c.read(65536)
            if not d:
                return
            c.write(d)
    except OSError:
        pass
    finally:
        c.close()
def serve():
    while True:
        go(handle, ln.accept())
go(serve)
print(ln.addr().port, flush=True)
sys.stdin.read()                      # until the parent closes our stdin
print(json.dumps(netfd.stats), flush=True)
"""


def run_one(client, mode, procs, conns, seconds):
    env = dict(os.environ)
    env.pop("PYGMP_NETPOLL_SHARED", None)
    if mode == "shared":
        env["PYGMP_NETPOLL_SHARED"] = "1"
    srv = subprocess.Popen([sys.executable, "-c", SERVER, str(procs)], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                           start_new_session=True, cwd="/")   # import the installed pygmp
    try:
        port = int(srv.stdout.readline())
        out = subprocess.run([client, "load", "127.0.0.1", str(port), str(conns),
                              str(seconds), "1"], capture_output=True, text=True,
                             timeout=seconds + 60).stdout
        m = dict(re.findall(r"(\w+)=([\d.]+)", out))
        srv.stdin.close()
        st = json.loads(srv.stdout.readline())
        ready = st["ready_local"] + st["ready_remote"]
        return {"rps": float(m["rps"]), "p50": float(m["p50_us"]),
                "p99": float(m["p99_us"]), "errors": int(float(m.get("errors", 0))),
                "hops": st["ready_remote"] / ready if ready else 0.0}
    finally:
        os.killpg(srv.pid, signal.SIGKILL)
        srv.wait(10)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--procs", default="1,2,4")
    ap.add_argument("--conns", default="100,1000")
    a = ap.parse_args()
    procs = [int(x) for x in a.procs.split(",")]
    conns = [int(x) for x in a.conns.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        client = build_client(tmp)
        res = {}
        for r in range(a.rounds):
            for c in conns:
                for p in procs:
                    for mode in ("per-P", "shared"):
                        x = run_one(client, mode, p, c, a.seconds)
                        res.setdefault((c, p, mode), []).append(x)
                        print("round %d conns=%d procs=%d %-6s %s" % (r, c, p, mode, x),
                              file=sys.stderr, flush=True)
    print("cpus=%d seconds=%s rounds=%d (median run by rps)\n" % (os.cpu_count(), a.seconds, a.rounds))
    print("| conns | GOMAXPROCS | per-P rps | shared rps | ratio | per-P p50/p99 µs | shared p50/p99 µs "
          "| per-P hops | shared hops |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in conns:
        for p in procs:
            row = []
            for mode in ("per-P", "shared"):
                xs = sorted(res[(c, p, mode)], key=lambda x: x["rps"])
                row.append(xs[len(xs) // 2])
            pp, sh = row
            print("| %d | %d | %.0f | %.0f | %.2f | %.0f / %.0f | %.0f / %.0f | %.0f%% | %.0f%% |" % (
                c, p, pp["rps"], sh["rps"], pp["rps"] / sh["rps"] if sh["rps"] else 0,
                pp["p50"], pp["p99"], sh["p50"], sh["p99"], 100 * pp["hops"], 100 * sh["hops"]))


if __name__ == "__main__":
    main()

"""Parsing wrk's output, shared by bench/net.py and bench/wsgi.py."""
import re


def wrk_time(s):
    """wrk's '1.23ms' / '850.00us' / '1.02s' / '1.5m' in milliseconds (None if unparsable)."""
    m = re.match(r"([\d.]+)(us|ms|s|m)$", s)
    if not m:
        return None
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[m.group(2)]


def parse_wrk(out):
    """requests/s, request count, p50/p90/p99 (ms, with --latency), socket
    errors and non-2xx/3xx count from one wrk run's stdout."""
    r = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        r["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in", out)
    if m:
        r["requests"] = int(m.group(1))
    for pct in ("50", "90", "99"):
        m = re.search(r"^\s+%s%%\s+(\S+)" % pct, out, re.M)
        if m:
            r["p%s_ms" % pct] = wrk_time(m.group(1))
    m = re.search(r"Socket errors: (.*)", out)
    if m:
        r["socket_errors"] = m.group(1).strip()
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        r["non2xx"] = int(m.group(1))
    return r

"""pygmp.metrics.prometheus_text()/collector() and pygmp.debug.serve() (API.md
"Prometheus and the debug endpoint")."""
import re
import socket

import pytest

from pygmp import chan, go, metrics
import pygmp.debug

from _helpers import recv_timeout

LINE = re.compile(r'^[a-z_][a-z0-9_]*(\{le="[^"]+"\})? \S+$')


def parse(text):
    """{sample name (with labels): value}, checking the exposition syntax."""
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
        elif line.startswith("# HELP "):
            assert "\n" not in line
        else:
            assert LINE.match(line), line
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples, types


def test_names_follow_the_contract():
    assert metrics.prometheus_name("/sched/goroutines:goroutines") == "pygmp_sched_goroutines_goroutines"
    assert metrics.prometheus_name("/pygmp/threads/syscall-idle:threads") == "pygmp_threads_syscall_idle_threads"


def test_text_has_every_metric_with_its_type():
    samples, types = parse(metrics.prometheus_text())
    assert types["pygmp_sched_goroutines_goroutines"] == "gauge"
    assert types["pygmp_sched_gomaxprocs_threads"] == "gauge"
    assert types["pygmp_sched_steals_goroutines_total"] == "counter"
    assert types["pygmp_sched_latencies_seconds"] == "histogram"
    assert len(types) == len(metrics.all())
    for name, kind in types.items():
        if kind == "counter":
            assert name.endswith("_total")
    assert samples["pygmp_sched_goroutines_goroutines"] >= 1
    assert samples['pygmp_sched_latencies_seconds_bucket{le="+Inf"}'] == \
        samples["pygmp_sched_latencies_seconds_count"]


def test_histogram_buckets_are_cumulative():
    from pygmp import syscall
    for _ in range(5):
        syscall.call(abs, -1)
    samples, _ = parse(metrics.prometheus_text())
    buckets = [v for k, v in samples.items() if k.startswith("pygmp_sched_latencies_seconds_bucket")]
    assert buckets == sorted(buckets)
    assert samples["pygmp_sched_latencies_seconds_sum"] >= 0


def test_collector_for_prometheus_client():
    prometheus_client = pytest.importorskip("prometheus_client")
    reg = prometheus_client.CollectorRegistry()
    reg.register(metrics.collector())
    text = prometheus_client.generate_latest(reg).decode()
    samples, types = parse("\n".join(l for l in text.splitlines() if not l.startswith("# HELP")))
    assert types["pygmp_sched_goroutines_goroutines"] == "gauge"
    assert types["pygmp_sched_steals_goroutines_total"] == "counter"
    assert "pygmp_sched_steals_goroutines_total" in samples
    assert types["pygmp_sched_latencies_seconds"] == "histogram"


def http_get(addr, path, method="GET"):
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"%s %s HTTP/1.1\r\nHost: x\r\n\r\n" % (method.encode(), path.encode()))
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, head, body


def test_debug_endpoint():
    addr = pygmp.debug.serve("127.0.0.1:0")
    assert re.match(r"^127\.0\.0\.1:\d+$", addr)
    ch = chan()

    def parked():
        ch.recv()
    go(parked)
    status, head, body = http_get(addr, "/metrics")
    assert status == 200 and b"text/plain; version=0.0.4" in head
    samples, _ = parse(body.decode())
    assert samples["pygmp_sched_goroutines_goroutines"] >= 2
    status, _, body = http_get(addr, "/debug/goroutines")
    assert status == 200
    text = body.decode()
    assert "goroutine 1 [" in text and "[chan receive" in text and "in parked" in text
    assert http_get(addr, "/nope")[0] == 404
    assert http_get(addr, "/metrics", "POST")[0] == 405
    status, head, body = http_get(addr, "/metrics", "HEAD")
    assert status == 200 and body == b""
    ch.close()


def test_debug_serve_errors():
    with pytest.raises(TypeError):
        pygmp.debug.serve(6060)
    addr = pygmp.debug.serve("127.0.0.1:0")
    with pytest.raises(OSError):
        pygmp.debug.serve(addr)                 # already in use


def test_debug_bad_request_does_not_kill_server():
    addr = pygmp.debug.serve("127.0.0.1:0")
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"garbage\r\n\r\n")
        assert b" 400 " in s.recv(1000)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"x" * 20000)
        assert b" 431 " in s.recv(1000)
    assert http_get(addr, "/")[0] == 200

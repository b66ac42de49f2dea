"""Helpers for the pygmp.monkey tests.  Patching is process-global: every
patched scenario runs in a fresh interpreter (``run_patched``), so the pytest
process itself never sees a patched module."""
import json
import textwrap

from _helpers import run_script

# The threading/queue/subprocess half lives in its own modules; these tests
# cover the network half and leave it out, so they run with either half.
PATCH_NET = "pygmp.monkey.patch_all(threading=False, queue=False, subprocess=False)"

PRELUDE = '''
import pygmp.monkey
{patch}
import json, os, select, selectors, socket, sys, threading, time
from pygmp import go, chan
import pygmp.runtime

def in_g(fn, *args, timeout=30):
    """fn(*args) in a goroutine; its result here, or its exception re-raised."""
    from pygmp import select as _psel
    from pygmp.time import after
    ch = chan(1)
    def body():
        try:
            ch.send((True, fn(*args)))
        except BaseException as e:
            ch.send((False, e))
    go(body)
    i, v = _psel(ch.recv, after(timeout).recv)
    if i == 1:
        raise AssertionError("goroutine did not finish in %ss" % timeout)
    ok, r = v
    if not ok:
        raise r
    return r

class ThreadSampler:
    """The process's OS thread count, sampled every 5 ms by a plain thread."""
    def __init__(self):
        import psutil
        self.proc = psutil.Process()
        self.max = self.proc.num_threads()
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()
    def run(self):
        while not self.stop:
            self.max = max(self.max, self.proc.num_threads())
            time.sleep(0.005)
    def done(self):
        self.stop = True
        self.t.join()
        return self.max

def emit(**kw):
    print("RESULT " + json.dumps(kw), flush=True)
'''


def run_patched(body, gomaxprocs=2, timeout=90, patch=PATCH_NET, env=None):
    """Run PRELUDE + body in a fresh interpreter with GOMAXPROCS set; return
    (CompletedProcess, {key: value} merged from every ``emit(...)`` line)."""
    src = PRELUDE.format(patch=patch) + "\n" + textwrap.dedent(body)
    e = {"GOMAXPROCS": str(gomaxprocs)}
    if env:
        e.update(env)
    r = run_script(src, timeout=timeout, env=e)
    out = {}
    for line in r.stdout.splitlines():
        if line.startswith("RESULT "):
            out.update(json.loads(line[7:]))
    assert r.returncode == 0, "child failed (rc %s):\nstdout:\n%s\nstderr:\n%s" % (
        r.returncode, r.stdout[-3000:], r.stderr[-5000:])
    return r, out

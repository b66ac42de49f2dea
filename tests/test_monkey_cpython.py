"""CPython's own tests for the patched areas (all of test_socket,
test_selectors, test_select and test_epoll, test_time's sleep; test_ssl and
test_poll under the ``stress`` mark), from the running interpreter's ``test`` package, run under
``pygmp.monkey.patch_all()`` by tests/monkey_cpython_run.py in a child
process.  The runner runs the whole unittest run inside one goroutine, so the
test methods take the patched paths (test_socket's client halves run on plain
threads: the unpatched-from-a-thread paths of the same objects).  The tests
it skips, each with its reason, are listed in tests/monkey_cpython_skips.py."""
import os
import subprocess
import sys

import pytest

from _helpers import _env

RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "monkey_cpython_run.py")

def _run(names, timeout):
    try:
        import test.support  # noqa: F401
    except ImportError:
        pytest.skip("this interpreter has no 'test' package")
    env = _env({"GOMAXPROCS": "2", "MONKEY_CPYTHON_DUMP_AFTER": str(timeout - 10)})
    r = subprocess.run([sys.executable, RUNNER] + names, capture_output=True, text=True,
                       errors="replace",
                       timeout=timeout, env=env, cwd=os.path.dirname(RUNNER))
    line = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")]
    assert r.returncode == 0 and line, "CPython's tests failed under patch_all():\n%s" % (
        r.stderr[-8000:])
    return dict(kv.split("=") for kv in line[-1][7:].split())


@pytest.mark.timeout(200)
def test_cpython_socket_selectors_time():
    names = ["test.test_socket", "test.test_selectors", "test.test_select", "test.test_epoll",
             "test.test_time.TimeTestCase.test_sleep"]
    res = _run(names, 180)
    assert int(res["run"]) >= 600, res


@pytest.mark.stress
@pytest.mark.timeout(400)
def test_cpython_ssl_and_poll():
    names = ["test.test_ssl.BasicSocketTests", "test.test_ssl.ThreadedTests",
             "test.test_ssl.SSLObjectTests", "test.test_ssl.TestPostHandshakeAuth",
             "test.test_poll"]
    res = _run(names, 380)
    assert int(res["run"]) >= 100, res

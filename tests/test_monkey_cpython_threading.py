"""CPython's own threading / queue / subprocess tests, run under
pygmp.monkey's patch_threading(), patch_queue() and patch_subprocess() in a
child interpreter, with the unittest runner inside a goroutine (so every
patched path is the goroutine one; see _monkey_cpython_runner.py).  The tests
listed in monkey_cpython_threading_skips.py are skipped, each with its reason; every
other selected test must pass.
"""
import json
import os
import subprocess
import sys
import tempfile

import pytest

from _helpers import REPO, _env
from monkey_cpython_threading_skips import SKIPS

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNER = os.path.join(HERE, "_monkey_cpython_runner.py")

PRIMITIVES = ["test_threading." + c for c in (
    "LockTests", "PyRLockTests", "EventTests", "ConditionTests",
    "ConditionAsRLockTests", "SemaphoreTests", "BoundedSemaphoreTests", "BarrierTests")]
THREADS = ["test_threading." + c for c in (
    "ThreadTests", "TimerTests", "ExceptHookTests", "ThreadingExceptionTests")]
QUEUES = ["test_queue." + c for c in (
    "PyQueueTest", "PyLifoQueueTest", "PyPriorityQueueTest", "PyFailingQueueTest",
    "PySimpleQueueTest", "PygmpSimpleQueueTest")]
SUBPROCESS = ["test_subprocess.ProcessTestCase." + t for t in (
    "test_call_seq", "test_call_timeout", "test_check_output", "test_check_output_timeout",
    "test_check_output_input_arg", "test_communicate", "test_communicate_returns",
    "test_communicate_stdin", "test_communicate_stdout", "test_communicate_stderr",
    "test_communicate_timeout", "test_communicate_timeout_large_output",
    "test_communicate_pipe_buf", "test_communicate_epipe", "test_poll", "test_wait",
    "test_wait_timeout", "test_threadsafe_wait", "test_stdout_pipe", "test_stdin_pipe",
    "test_stderr_pipe", "test_universal_newlines_communicate_stdin_stdout_stderr",
    "test_writes_before_communicate", "test_io_buffered_by_default",
    "test_io_unbuffered_works", "test_repr", "test_invalid_args", "test_class_getitems",
    "test_stdout_stderr_pipe")]


def run_cpython_tests(names, timeout=120):
    fd, out = tempfile.mkstemp(prefix="pygmp_cpy_", suffix=".json")
    os.close(fd)
    try:
        r = subprocess.run([sys.executable, RUNNER, out] + names, capture_output=True,
                           text=True, timeout=timeout, cwd=REPO,
                           env=_env({"GOMAXPROCS": "2"}))
        assert r.returncode == 0, "rc=%s\n%s" % (r.returncode, r.stderr[-5000:])
        with open(out) as f:
            res = json.load(f)
    finally:
        os.unlink(out)
    bad = res["failures"] + res["errors"] + res["unexpected"]
    assert not bad, "\n\n".join("%s:\n%s" % (k, v) for k, v in res["details"].items()) or bad
    assert res["run"] > 0
    return res


def test_skip_list_gives_reasons():
    assert SKIPS
    for name, why in SKIPS.items():
        assert name.count(".") == 2, name
        assert isinstance(why, str) and len(why) > 20, name


@pytest.mark.timeout(300)
def test_cpython_threading_primitives():
    res = run_cpython_tests(PRIMITIVES)
    assert res["run"] >= 90, res["run"]


@pytest.mark.timeout(300)
def test_cpython_threading_threads():
    res = run_cpython_tests(THREADS)
    assert res["run"] >= 40, res["run"]


@pytest.mark.timeout(300)
def test_cpython_queue():
    res = run_cpython_tests(QUEUES)
    assert res["run"] >= 30, res["run"]


@pytest.mark.timeout(300)
def test_cpython_subprocess():
    res = run_cpython_tests(SUBPROCESS)
    assert res["run"] == len(SUBPROCESS), res["run"]

"""Child process of tests/test_monkey_cpython_threading.py: CPython's own tests
for threading, queue and subprocess, run under pygmp.monkey's patches with the
unittest runner inside a goroutine (the main thread is not one, so only a
goroutine exercises the patched paths).

    python _monkey_cpython_runner.py OUT.json test_threading.LockTests ...

Writes {"run": n, "failures": [ids], "errors": [ids], "skipped": n,
"unexpected": [ids], "seconds": s} to OUT.json.
"""
import importlib
import json
import os
import sys
import time
import unittest

from pygmp.monkey._threading import patch_threading
from pygmp.monkey._queue import patch_queue
from pygmp.monkey._subprocess import patch_subprocess

patch_threading()
patch_queue()
patch_subprocess()

import queue  # noqa: E402
from test.support import threading_helper  # noqa: E402
from pygmp import go, chan  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from monkey_cpython_threading_skips import SKIPS  # noqa: E402

# threading_cleanup() waits up to 1 s for _thread._count() to drop back: the
# runtime's syscall pool threads (idle ones live 10 s) would make it wait after
# every test that handed off a call.  It only warns; don't wait.
threading_helper.threading_cleanup = lambda *a: None


def load(names):
    suite = unittest.TestSuite()
    loader = unittest.TestLoader()
    for name in names:
        modname, clsname = name.split(".", 1)
        mod = importlib.import_module("test." + modname)
        if "." in clsname:          # one test: module.Class.test_name
            for t in loader.loadTestsFromName(clsname, mod):
                suite.addTest(t)
            continue
        if clsname == "PygmpSimpleQueueTest":
            cls = type("PygmpSimpleQueueTest", (mod.BaseSimpleQueueTest, unittest.TestCase),
                       {"setUp": _sq_setup, "queue": queue})
        else:
            cls = getattr(mod, clsname)
        for t in loader.loadTestsFromTestCase(cls):
            suite.addTest(t)
    return suite


def _sq_setup(self):
    self.type2test = queue.SimpleQueue          # the patched one
    self.q = self.type2test()


def short_id(t):
    # "test.test_threading.LockTests.test_x" -> "test_threading.LockTests.test_x"
    i = t.id()
    return i[len("test."):] if i.startswith("test.") else i.split(".", 1)[-1]


def apply_skips(suite):
    out = unittest.TestSuite()
    for t in suite:
        sid = short_id(t)
        if sid not in SKIPS:
            out.addTest(t)
            continue
        # skipped by the list: the method replaced by one that skips
        meth = getattr(t, t._testMethodName)
        reason = SKIPS[sid]

        def skipper(self=t, reason=reason):
            self.skipTest("pygmp.monkey: " + reason)
        setattr(t, t._testMethodName, skipper)
        del meth
        out.addTest(t)
    return out


def main():
    outpath, names = sys.argv[1], sys.argv[2:]
    suite = apply_skips(load(names))
    stream = sys.stderr
    box = chan(1)

    def run():
        try:
            r = unittest.TextTestRunner(stream=stream, verbosity=2).run(suite)
            box.send(r)
        except BaseException as e:    # never a panic: report it
            box.send(e)
    t0 = time.monotonic()
    go(run)
    r = box.recv()
    dt = time.monotonic() - t0
    if isinstance(r, BaseException):
        raise r
    res = {
        "run": r.testsRun,
        "failures": [short_id(t) for t, _ in r.failures],
        "errors": [short_id(t) for t, _ in r.errors],
        "unexpected": [short_id(t) for t in r.unexpectedSuccesses],
        "skipped": len(r.skipped),
        "seconds": dt,
        "details": {short_id(t): tb[-1500:] for t, tb in r.failures + r.errors},
    }
    with open(outpath, "w") as f:
        json.dump(res, f)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)       # leaked goroutines of failed tests must not hold the exit


if __name__ == "__main__":
    main()

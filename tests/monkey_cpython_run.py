"""Run CPython's own test classes (from the interpreter's ``test`` package)
under ``pygmp.monkey`` (tests/test_monkey_cpython.py runs this in a child).

    python tests/monkey_cpython_run.py test.test_socket.GeneralModuleTests ...

The network half is patched (``patch_all(threading=False, queue=False,
subprocess=False)``: the tests' own helper threads stay plain threads) and
the whole unittest run happens inside one goroutine, so each test method
runs on a worker thread and really takes the patched paths (a test's client
half, which test_socket runs on a plain ``_thread`` thread, takes the
unpatched-from-a-thread paths of the same patched objects).  The tests listed
in monkey_cpython_skips.py are skipped with their reason.  Exit status 0 when
the run succeeded."""
import os
import sys

import pygmp.monkey
pygmp.monkey.patch_all(threading=False, queue=False, subprocess=False)

import importlib   # noqa: E402
import unittest    # noqa: E402

from pygmp import chan, go   # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from monkey_cpython_skips import SKIPS   # noqa: E402


def _apply_skips():
    for key, reason in SKIPS.items():
        clspath, _, meth = key.rpartition(".")
        modname, _, clsname = clspath.rpartition(".")
        try:
            mod = importlib.import_module(modname)
        except ImportError:
            continue
        cls = getattr(mod, clsname, None)
        if cls is None:
            continue
        for klass in cls.__mro__:       # the method may be inherited: skip it on cls only
            if meth in klass.__dict__:
                setattr(cls, meth, unittest.skip(reason)(klass.__dict__[meth]))
                break


def main(names):
    if os.environ.get("MONKEY_CPYTHON_DUMP_AFTER"):
        # a hang prints every thread's stack and ends the run
        import faulthandler
        faulthandler.dump_traceback_later(float(os.environ["MONKEY_CPYTHON_DUMP_AFTER"]),
                                          exit=True)
    _apply_skips()
    suite = unittest.defaultTestLoader.loadTestsFromNames(names)
    done = chan(1)

    def run():
        try:
            r = unittest.TextTestRunner(stream=sys.stderr, verbosity=int(os.environ.get("V", "1"))).run(suite)
            done.send(r)
        except BaseException as e:     # noqa: BLE001
            done.send(e)

    go(run)
    r = done.recv()
    if isinstance(r, BaseException):
        raise r
    print("RESULT run=%d failures=%d errors=%d skipped=%d" % (
        r.testsRun, len(r.failures), len(r.errors), len(r.skipped)), flush=True)
    return 0 if r.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

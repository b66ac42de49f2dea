"""python -m pygmp.monkey SCRIPT [ARGS]: patch_all(), then run SCRIPT as
``__main__`` in the main goroutine, with ``sys.argv`` (``[SCRIPT, ARGS...]``)
and ``sys.path[0]`` (the script's directory) as ``python SCRIPT`` sets them.
An exception escaping the script prints its traceback and exits 1;
``SystemExit`` keeps its status."""

import os
import runpy
import sys

USAGE = "usage: python -m pygmp.monkey SCRIPT [ARGS...]\n"


def main():
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        sys.stderr.write(USAGE)
        return 2 if len(sys.argv) < 2 else 0
    import pygmp.monkey
    pygmp.monkey.patch_all()
    script = sys.argv[1]
    sys.argv[:] = sys.argv[1:]
    sys.path[0] = os.path.dirname(os.path.realpath(script))
    runpy.run_path(script, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())

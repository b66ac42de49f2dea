"""Build glue for pygmp's C parts; the metadata lives in pyproject.toml.

- ``pygmp.runtime._netpoll``: the netpoller, generated and compiled by cffi
  (API mode, out-of-line) from csrc/netpoll_build.py.
- ``pygmp._hot``: the runtime core, a CPython extension over greenlet's C API
  (csrc/*.c); required: there is no pure-Python fallback.

Both need a C compiler: the build checks for one first and stops with a plain
message when there is none.
"""

import os
import tempfile

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

try:  # setuptools >= 64 vendors distutils
    from setuptools.errors import CompileError, ExecError, PlatformError
except ImportError:  # pragma: no cover - older setuptools
    from distutils.errors import CompileError, DistutilsExecError as ExecError
    from distutils.errors import DistutilsPlatformError as PlatformError

HERE = os.path.dirname(os.path.abspath(__file__))

NO_COMPILER = (
    "pygmp needs a working C compiler to build its netpoller "
    "(pygmp.runtime._netpoll, compiled by cffi at install time), "
    "and none could be run{detail}. Install one and retry, e.g. gcc: "
    "`apt-get install build-essential` (Debian/Ubuntu), "
    "`dnf install gcc` (Fedora/RHEL), `apk add build-base` (Alpine), "
    "`xcode-select --install` (macOS); or set CC to a compiler."
)
NO_HEADERS = (
    "pygmp's C compiler works but cannot compile against Python.h{detail}: "
    "install the Python development headers, e.g. "
    "`apt-get install python3-dev` (Debian/Ubuntu) or `dnf install python3-devel`."
)


class BuildExt(build_ext):
    """build_ext that first proves the C compiler (and Python.h) work."""

    def build_extensions(self):
        self._check_compiler()
        super().build_extensions()

    def _try_compile(self, tmp, name, text):
        src = os.path.join(tmp, name)
        with open(src, "w") as f:
            f.write(text)
        # The include dirs (Python's among them) are already set on the compiler.
        self.compiler.compile([src], output_dir=os.path.join(tmp, "obj"))

    def _check_compiler(self):
        compiler = self.compiler
        cc = getattr(compiler, "compiler_so", None) or getattr(compiler, "cc", None)
        if isinstance(cc, (list, tuple)):
            cc = cc[0] if cc else None
        detail = f" (tried `{cc}`)" if cc else ""
        with tempfile.TemporaryDirectory(prefix="pygmp-cc-") as tmp:
            try:
                self._try_compile(tmp, "cc_check.c", "int pygmp_cc_check(void) { return 0; }\n")
            except (CompileError, ExecError, OSError) as e:
                raise PlatformError(NO_COMPILER.format(detail=detail) + f" [{e}]") from None
            try:
                self._try_compile(
                    tmp,
                    "py_check.c",
                    "#define PY_SSIZE_T_CLEAN\n#include <Python.h>\n"
                    "int pygmp_py_check(void) { return Py_IsInitialized(); }\n",
                )
            except (CompileError, ExecError, OSError) as e:
                raise PlatformError(NO_HEADERS.format(detail=detail) + f" [{e}]") from None


# The runtime core (csrc/runtime.h lists what each file holds), the network
# wait and the kernel poller included (netpoll_epoll.c and netpoll_kqueue.c
# are each guarded by #ifdef: exactly one compiles to something).  cffi still
# builds the same poller files as pygmp.runtime._netpoll for runtime/netpoll.py
# (its tests and bench/netpoll_wake.py).
CORE_SOURCES = ["csrc/module.c", "csrc/lock.c", "csrc/proc.c", "csrc/chan.c",
                "csrc/select.c", "csrc/stackcache.c", "csrc/timers.c", "csrc/gbody.c",
                "csrc/netpoll.c", "csrc/netfd.c", "csrc/netpoll_epoll.c", "csrc/netpoll_kqueue.c",
                "csrc/preempt.c", "csrc/sysmon.c", "csrc/trace.c", "csrc/sched.c"]


def ext_modules():
    import greenlet  # build requirement; ships greenlet.h next to __init__.py

    return [
        Extension(
            "pygmp._hot",
            CORE_SOURCES,
            depends=["csrc/runtime.h", "csrc/netpoll.h"],
            include_dirs=[os.path.dirname(greenlet.__file__), "csrc"],
            extra_compile_args=["-fvisibility=hidden"],
        )
    ]


setup(
    ext_modules=ext_modules(),
    cffi_modules=["csrc/netpoll_build.py:ffibuilder"],
    cmdclass={"build_ext": BuildExt},
)

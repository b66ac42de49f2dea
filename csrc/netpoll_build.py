"""cffi build script for ``pygmp.runtime._netpoll`` (API mode, out-of-line).

setup.py names it in ``cffi_modules=["csrc/netpoll_build.py:ffibuilder"]``, so
the extension is generated and compiled by ``pip install``.  It can also be run
directly (``python csrc/netpoll_build.py``) to build the module in place in a
scratch directory.

The backend is picked from ``sys.platform`` at build time:

* Linux                          -> ``netpoll_epoll.c``  (epoll + eventfd)
* macOS, FreeBSD, NetBSD, OpenBSD, DragonFly -> ``netpoll_kqueue.c`` (kqueue)

``PYGMP_BUILD_NETPOLL=epoll|kqueue`` in the environment overrides the choice (for
testing the kqueue code on Linux against libkqueue:
``PYGMP_BUILD_NETPOLL=kqueue`` compiles netpoll_kqueue.c with
``-DPYGMP_NETPOLL_KQUEUE`` against libkqueue installed under
``PYGMP_LIBKQUEUE_PREFIX``, default ``/usr``).

cffi releases the GIL around every call into C in API mode, which is what
np_wait() needs (it blocks); the module keeps that default.
"""

import os
import sys

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))

CDEF = """
#define NP_READ 1
#define NP_WRITE 2
#define NP_ERR 4
#define NP_HUP 8
#define NP_MAX_EVENTS 256
#define NP_TOKEN_RESERVED ...
#define NP_KQUEUE ...

typedef struct np_event {
    uint64_t token;
    uint32_t flags;
    uint32_t _pad;
} np_event;

typedef struct np_poller np_poller;

np_poller *np_open(void);
void np_close(np_poller *p);
int np_add(np_poller *p, int fd, uint64_t token);
int np_del(np_poller *p, int fd);
int np_wait(np_poller *p, np_event *evs, int max, int timeout_ms);
int np_break(np_poller *p);
"""


def backend():
    forced = os.environ.get("PYGMP_BUILD_NETPOLL", "").strip().lower()
    if forced:
        if forced not in ("epoll", "kqueue"):
            raise RuntimeError(f"PYGMP_BUILD_NETPOLL={forced!r}: expected 'epoll' or 'kqueue'")
        return forced
    plat = sys.platform
    if plat.startswith("linux"):
        return "epoll"
    if plat == "darwin" or "bsd" in plat or plat.startswith("dragonfly"):
        return "kqueue"
    raise RuntimeError(
        f"pygmp has no netpoller for platform {plat!r}: "
        "it supports Linux (epoll) and macOS/BSD (kqueue)"
    )


def _path(name):
    # setuptools prefers source paths relative to the project root (the cwd
    # while setup.py runs); fall back to absolute ones when built elsewhere.
    full = os.path.join(HERE, name)
    rel = os.path.relpath(full)
    return full if rel.startswith("..") else rel


def make_ffibuilder():
    kind = backend()
    kwargs = dict(
        sources=[_path(f"netpoll_{kind}.c")],
        include_dirs=[_path("")],
        # Listing every netpoller file as a dependency also puts them all in
        # the sdist (setuptools adds sources and depends), so a wheel built
        # from it on either platform family has what it needs.
        depends=[_path(n) for n in ("netpoll.h", "netpoll_epoll.c",
                                    "netpoll_kqueue.c", "netpoll_build.py")],
    )
    if kind == "kqueue" and not (sys.platform == "darwin" or "bsd" in sys.platform
                                 or sys.platform.startswith("dragonfly")):
        # kqueue emulated by libkqueue (testing only)
        prefix = os.environ.get("PYGMP_LIBKQUEUE_PREFIX", "/usr")
        kwargs["define_macros"] = [("PYGMP_NETPOLL_KQUEUE", "1")]
        kwargs["include_dirs"].append(os.path.join(prefix, "include", "kqueue"))
        kwargs["libraries"] = ["kqueue"]
        kwargs["library_dirs"] = [os.path.join(prefix, "lib")]
        kwargs["runtime_library_dirs"] = [os.path.join(prefix, "lib")]
    ffi = FFI()
    ffi.cdef(CDEF)
    prelude = f'#include "netpoll.h"\n#define NP_KQUEUE {int(kind == "kqueue")}\n'
    ffi.set_source("pygmp.runtime._netpoll", prelude, **kwargs)
    return ffi


ffibuilder = make_ffibuilder()

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)

"""pygmp.monkey: the standard library made goroutine-aware.

    import pygmp.monkey
    pygmp.monkey.patch_all()        # first thing, before other imports

or ``python -m pygmp.monkey SCRIPT [ARGS]``.  After patching, in a goroutine,
the blocking-style stdlib calls park the goroutine, never its worker thread:
``socket`` I/O and ``makefile`` (on the netpoller, with the socket's timeout),
name resolution (the handoff, ``pygmp.syscall``), ``ssl`` sockets,
``select``/``poll``/``epoll``/``selectors``, ``time.sleep``, ``os.read`` and
``os.write`` on pipes; ``threading``, ``queue`` and ``subprocess`` too.  From
a thread that is not a goroutine (the main thread, a plain thread) the
patched calls behave as unpatched ones.  See README "Patching the standard
library" and pygmp/HACKING.md "Monkey patching".

Late patching: ``patch_<name>()`` looks through ``sys.modules`` for modules
that took one of the objects it replaces by name before it ran (``from socket
import socket``, ``from time import sleep``, ...): they keep the unpatched
object, so it warns once (``RuntimeWarning``) naming the patched module and
those modules.
"""

import sys as _sys
import warnings as _warnings

from ._core import get_original, is_module_patched

__all__ = ["patch_all", "patch_socket", "patch_dns", "patch_ssl", "patch_select",
           "patch_selectors", "patch_time", "patch_threading", "patch_queue",
           "patch_subprocess", "patch_os", "is_module_patched", "get_original"]

# what each patch replaces: (module, attribute) pairs the late-patch check
# looks for in other modules
_REPLACED = {
    "socket": [("socket", "socket")],
    "dns": [("socket", n) for n in ("getaddrinfo", "gethostbyname", "gethostbyname_ex",
                                   "gethostbyaddr", "getnameinfo")],
    "select": [("select", "select"), ("select", "poll"), ("select", "epoll")],
    "selectors": [("selectors", "DefaultSelector")],
    "time": [("time", "sleep")],
    "os": [("os", "read"), ("os", "write")],
    "threading": [("threading", n) for n in ("Thread", "Timer", "RLock", "local")],
    "queue": [("queue", "SimpleQueue")],
    "subprocess": [("subprocess", "Popen")],
}
# modules that hold a replaced object by design and are covered otherwise
# (ssl's SSLSocket derives from socket.socket: patch_ssl replaces it)
_EXEMPT = {"socket", "_socket", "ssl", "select", "selectors", "time", "os", "posix",
           "threading", "_thread", "_threading_local", "queue", "_queue", "subprocess",
           "__main__", "builtins"}


def _late_check(name):
    """Warn once if modules already hold, by name, what patch ``name`` replaces."""
    import importlib
    objs = {}
    for modname, attr in _REPLACED.get(name, ()):
        try:
            obj = getattr(importlib.import_module(modname), attr)
        except (ImportError, AttributeError):
            continue
        objs[id(obj)] = (obj, "%s.%s" % (modname, attr))
    if not objs:
        return
    holders = []
    for modname, mod in list(_sys.modules.items()):
        if mod is None or modname in _EXEMPT or modname.split(".")[0] == "pygmp":
            continue
        try:
            d = vars(mod)
        except TypeError:
            continue
        for v in list(d.values()):
            hit = objs.get(id(v))
            if hit is not None and hit[0] is v:
                holders.append("%s (%s)" % (modname, hit[1]))
                break
    if holders:
        _warnings.warn(
            "pygmp.monkey: patching %r after these modules took the object by name: %s; "
            "they keep the unpatched one (patch before other imports, or run "
            "python -m pygmp.monkey)" % (name, ", ".join(sorted(holders))),
            RuntimeWarning, stacklevel=_caller_level())


def _caller_level():
    """warnings.warn's stacklevel of the first frame outside this package."""
    f = _sys._getframe(2)
    level = 2
    while f is not None and f.f_globals.get("__name__", "").startswith("pygmp.monkey"):
        f = f.f_back
        level += 1
    return level


def _patch(name, fn):
    if is_module_patched(name):
        return
    _late_check(name)
    fn()


def patch_socket():
    """``socket.socket`` (and through it ``create_connection``, ``socketpair``,
    ``fromfd``, ``makefile`` I/O): parks on the netpoller."""
    from ._socket import patch_socket as _p
    _patch("socket", _p)


def patch_dns():
    """``getaddrinfo``, ``gethostbyname(_ex)``, ``gethostbyaddr``,
    ``getnameinfo``: through the handoff."""
    from ._socket import patch_dns as _p
    _patch("dns", _p)


def patch_ssl():
    """``ssl.SSLSocket``: handshake, read, write and unwrap park on
    want-read/want-write."""
    from ._ssl import patch_ssl as _p
    _patch("ssl", _p)


def patch_select():
    """``select.select``, ``select.poll``, ``select.epoll``."""
    from ._select import patch_select as _p
    _patch("select", _p)


def patch_selectors():
    """``selectors``' ``SelectSelector``, ``PollSelector``, ``EpollSelector``
    and ``DefaultSelector``."""
    from ._select import patch_selectors as _p
    _patch("selectors", _p)


def patch_time():
    """``time.sleep``: ``pygmp.time.sleep`` in a goroutine."""
    from ._os import patch_time as _p
    _patch("time", _p)


def patch_os():
    """``os.read``/``os.write`` on pipes and other pollable fds."""
    from ._os import patch_os as _p
    _patch("os", _p)


def patch_threading():
    """``threading`` (see ``pygmp.monkey._threading``)."""
    from ._threading import patch_threading as _p
    _patch("threading", _p)


def patch_queue():
    """``queue`` (see ``pygmp.monkey._threading``)."""
    from ._queue import patch_queue as _p
    _patch("queue", _p)


def patch_subprocess():
    """``subprocess`` (see ``pygmp.monkey._subprocess``)."""
    from ._subprocess import patch_subprocess as _p
    _patch("subprocess", _p)


def patch_all(*, socket=True, dns=True, ssl=True, select=True, selectors=True,
              time=True, threading=True, queue=True, subprocess=True, os=True):
    """Patch everything; a keyword set to False leaves that part out."""
    flags = dict(socket=socket, dns=dns, ssl=ssl, select=select, selectors=selectors,
                 time=time, threading=threading, queue=queue, subprocess=subprocess, os=os)
    for k, v in flags.items():
        if not isinstance(v, bool):
            raise TypeError("patch_all: %s must be a bool, not %s" % (k, type(v).__name__))
    if socket:
        patch_socket()
    if dns:
        patch_dns()
    if ssl:
        patch_ssl()
    if select:
        patch_select()
    if selectors:
        patch_selectors()
    if time:
        patch_time()
    if os:
        patch_os()
    if threading:
        patch_threading()
    if queue:
        patch_queue()
    if subprocess:
        patch_subprocess()

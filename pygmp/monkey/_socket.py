"""``patch_socket()`` and ``patch_dns()``: ``socket.socket`` on the netpoller,
name resolution through the handoff.

The patched ``socket.socket`` is a subclass of the original.  Its fd is
always non-blocking underneath (the C socket's own timeout is 0); the timeout
the program sets (``settimeout``/``setblocking``/``socket.setdefaulttimeout``)
is kept here and honoured as ``socket`` defines it.  Every I/O method runs the
stdlib's own C method (argument checks, errors and results are the
stdlib's); on EAGAIN a goroutine parks on the runtime's netpoller
(``FD.wait``, on a runtime ``FD`` that owns a duplicate of the fd, made on
the first wait) with the socket's timeout as the deadline, and retries; a
thread that is not a goroutine waits in ``poll()`` as the unpatched call would.
``close()`` (and ``detach()``) close that FD, which wakes every goroutine
parked on the socket with ``OSError(EBADF)``.
"""

import errno as _errno
import operator as _operator
import os as _os
import socket as _socketmod
import threading as _threading

import _socket

from . import _wait
from ._core import get_original, mark_patched, patch_item

_ss = _socket.socket
_Orig = get_original("socket", "socket")
_timeout_exc = _socketmod.timeout
_READ, _WRITE = _wait.READ, _wait.WRITE
_in_goroutine = _wait.in_goroutine
_monotonic = _wait.monotonic
_ErrClosed = _wait.ErrClosed
_RTTimeout = _wait.RTTimeout
_FD = _wait.FD
_fdlock = _threading.Lock()     # publishes a socket's FD once (the original Lock: taken at import)
_SOL_SOCKET, _SO_ERROR = _socket.SOL_SOCKET, _socket.SO_ERROR
_EINPROGRESS = _errno.EINPROGRESS
_EWOULDBLOCK = _errno.EWOULDBLOCK


_MSG_DONTWAIT = getattr(_socket, "MSG_DONTWAIT", 0)


def _dontwait(flags):
    return isinstance(flags, int) and bool(flags & _MSG_DONTWAIT)


def _merge(args, kw, names):
    """Positional arguments from keyword ones (recv_into(buf, nbytes=..))."""
    args = list(args)
    for i, name in enumerate(names):
        if name in kw:
            if i < len(args):
                raise TypeError("argument for %s given by name ('%s') and position (%d)"
                                % (names[0], name, i + 1))
            while len(args) < i:
                args.append(0)
            args.append(kw.pop(name))
    if kw:
        raise TypeError("'%s' is an invalid keyword argument" % next(iter(kw)))
    return tuple(args)


def _timeout_value(value):
    """settimeout's argument as the stdlib parses it: None, or a float >= 0."""
    if value is None:
        return None
    if isinstance(value, float):
        if value != value:
            raise ValueError("Invalid value NaN (not a number)")
    else:
        try:
            value = _operator.index(value)
        except TypeError:
            raise TypeError("'%s' object cannot be interpreted as an integer or float"
                            % type(value).__name__) from None
    if value < 0:
        raise ValueError("Timeout value out of range")
    return float(value)


class socket(_Orig):
    """``socket.socket`` whose blocking calls park a goroutine on the
    netpoller (and block a plain thread as before)."""

    __slots__ = ("_pg_fd", "_pg_timeout", "_pg_extra")

    def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
        _Orig.__init__(self, family, type, proto, fileno)
        self._pg_fd = None
        self._pg_extra = None
        self._pg_timeout = _ss.gettimeout(self)     # the default timeout, or fileno's
        _ss.setblocking(self, False)

    # -- timeouts: kept here; the C socket stays non-blocking

    def settimeout(self, value):
        value = _timeout_value(value)
        _ss.setblocking(self, False)    # as the C call: OSError for a bad fd
        self._pg_timeout = value

    def gettimeout(self):
        return self._pg_timeout

    def setblocking(self, flag):
        _ss.setblocking(self, False)
        self._pg_timeout = None if flag else 0.0

    def getblocking(self):
        return self._pg_timeout != 0.0

    @property
    def timeout(self):
        return self._pg_timeout

    # -- the wait

    def _pg_getfd(self):
        fd = self._pg_fd
        if fd is None:
            with _fdlock:
                fd = self._pg_fd
                if fd is None:
                    if _ss.fileno(self) < 0:
                        raise _wait.ebadf()
                    fd = self._pg_fd = _FD(self)    # a duplicate: closing either leaves the other
        return fd

    def _pg_wait(self, mode, deadline):
        """Wait (goroutine: park; thread: poll) until ready or ``deadline``."""
        if _in_goroutine():
            fd = self._pg_getfd()
            t = None if deadline is None else deadline - _monotonic()
            try:
                if not fd.wait(mode, t):
                    self._pg_wait_own(mode, t)
            except _ErrClosed:
                raise _wait.ebadf() from None
            except _RTTimeout:
                raise _timeout_exc("timed out") from None
        else:
            n = _ss.fileno(self)
            if n < 0:
                raise _wait.ebadf()
            if not _wait.thread_wait(n, mode, deadline):
                raise _timeout_exc("timed out")

    def _pg_wait_own(self, mode, t):
        """Another goroutine waits on this socket in that direction (one
        pollDesc slot each): wait on an FD of our own over another duplicate,
        with our own deadline; close() closes it too."""
        with _fdlock:
            if self._pg_fd is None or _ss.fileno(self) < 0:
                raise _ErrClosed()
            own = _FD(self)
            extra = self._pg_extra
            if extra is None:
                extra = self._pg_extra = set()
            extra.add(own)
        try:
            own.wait(mode, t)
        finally:
            with _fdlock:
                extra.discard(own)
            own.close()

    def _pg_takefds(self):
        """Under _fdlock: take every FD of this socket out (close/detach)."""
        fds = []
        if self._pg_fd is not None:
            fds.append(self._pg_fd)
            self._pg_fd = None
        if self._pg_extra:
            fds.extend(self._pg_extra)
            self._pg_extra = None
        return fds

    def _pg_io(self, meth, mode, args, flagpos=None):
        """``meth(self, *args)``, waiting out EAGAIN by the socket's timeout;
        ``args[flagpos]``, if given, holds the call's flags (MSG_DONTWAIT:
        never wait, as the C call does not)."""
        try:
            return meth(self, *args)
        except BlockingIOError:
            timeout = self._pg_timeout
            if timeout == 0.0 or (flagpos is not None and len(args) > flagpos
                                  and _dontwait(args[flagpos])):
                raise
        deadline = None if timeout is None else _monotonic() + timeout
        while True:
            self._pg_wait(mode, deadline)
            try:
                return meth(self, *args)
            except BlockingIOError:
                pass

    # -- I/O

    def _accept(self):
        return self._pg_io(_ss._accept, _READ, ())

    # Fast path (a blocking socket in a goroutine whose FD exists, plain
    # arguments, no flags): the C FD's own loop (csrc/netfd.c) tries the
    # call, parks and retries without coming back to Python.
    def recv(self, *args):
        fd = self._pg_fd
        if fd is not None and len(args) == 1 and type(args[0]) is int \
                and self._pg_timeout is None and _in_goroutine():
            try:
                return fd.recv(args[0])
            except _ErrClosed:
                raise _wait.ebadf() from None
        return self._pg_io(_ss.recv, _READ, args, 1)

    def recv_into(self, *args, **kw):
        fd = self._pg_fd
        if fd is not None and not kw and 1 <= len(args) <= 2 and self._pg_timeout is None \
                and _in_goroutine():
            try:
                return fd.recv_into(*args)
            except _ErrClosed:
                raise _wait.ebadf() from None
        if kw:
            args = _merge(args, kw, ("buffer", "nbytes", "flags"))
        return self._pg_io(_ss.recv_into, _READ, args, 2)

    def recvfrom(self, *args):
        return self._pg_io(_ss.recvfrom, _READ, args, 1)

    def recvfrom_into(self, *args, **kw):
        if kw:
            args = _merge(args, kw, ("buffer", "nbytes", "flags"))
        return self._pg_io(_ss.recvfrom_into, _READ, args, 2)

    def send(self, *args):
        fd = self._pg_fd
        if fd is not None and len(args) == 1 and type(args[0]) is bytes \
                and self._pg_timeout is None and _in_goroutine():
            try:
                return fd.send(args[0])
            except _ErrClosed:
                raise _wait.ebadf() from None
        return self._pg_io(_ss.send, _WRITE, args, 1)

    def sendto(self, *args):
        if args and _needs_lookup(self, args[-1]):
            args = args[:-1] + (_resolve_for(self, args[-1]),)
        return self._pg_io(_ss.sendto, _WRITE, args, 1 if len(args) == 3 else None)

    if hasattr(_ss, "recvmsg"):
        def recvmsg(self, *args):
            return self._pg_io(_ss.recvmsg, _READ, args, 2)

        def recvmsg_into(self, *args):
            if args and type(args[0]) not in (list, tuple):
                args = (list(args[0]),) + args[1:]      # an iterator is read once
            return self._pg_io(_ss.recvmsg_into, _READ, args, 2)

        def sendmsg(self, *args):
            if args and type(args[0]) not in (list, tuple):
                args = (list(args[0]),) + args[1:]
            if len(args) > 1 and type(args[1]) not in (list, tuple):
                args = (args[0], list(args[1])) + args[2:]
            return self._pg_io(_ss.sendmsg, _WRITE, args, 2)

    def sendall(self, data, flags=0):
        timeout = self._pg_timeout
        fd = self._pg_fd
        if fd is not None and flags == 0 and timeout is None and _in_goroutine():
            try:
                fd.sendall(data, flags)
                return None
            except _ErrClosed:
                raise _wait.ebadf() from None
        try:
            n = _ss.send(self, data, flags)     # the stdlib's argument checks
        except BlockingIOError:
            if timeout == 0.0 or _dontwait(flags):
                raise
            n = 0
        with memoryview(data) as view, view.cast("B") as bv:
            total = len(bv)
            if n >= total:
                return None
            deadline = None if timeout is None else _monotonic() + timeout
            while n < total:
                try:
                    n += _ss.send(self, bv[n:], flags)
                    continue
                except BlockingIOError:
                    if timeout == 0.0 or _dontwait(flags):
                        raise
                self._pg_wait(_WRITE, deadline)
        return None

    def _pg_connect(self, address):
        """Returns once connected, else raises; EINPROGRESS is waited out."""
        if _needs_lookup(self, address):
            address = _resolve_for(self, address)
        try:
            _ss.connect(self, address)
            return
        except BlockingIOError as e:
            timeout = self._pg_timeout
            if timeout == 0.0:
                raise
            again = e.errno != _EINPROGRESS     # EAGAIN: a unix listener's backlog is full
        deadline = None if timeout is None else _monotonic() + timeout
        while True:
            self._pg_wait(_WRITE, deadline)
            if again:
                try:
                    _ss.connect(self, address)
                    return
                except BlockingIOError as e:
                    if e.errno == _EINPROGRESS:
                        again = False
                    elif _in_goroutine():
                        from .. import _hot
                        _hot.sleep(0.001)
                    continue
            err = _ss.getsockopt(self, _SOL_SOCKET, _SO_ERROR)
            if err:
                raise OSError(err, _os.strerror(err))
            try:
                _ss.getpeername(self)
                return
            except OSError:
                continue                        # a spurious wake: not connected yet

    def connect(self, address):
        self._pg_connect(address)

    def connect_ex(self, address):
        try:
            self._pg_connect(address)
            return 0
        except _timeout_exc:
            return _EWOULDBLOCK
        except _socket.gaierror:
            raise
        except OSError as e:
            if e.errno is None:
                raise
            return e.errno

    # -- close: wakes the goroutines parked on this socket (EBADF)

    def _real_close(self, _ss=_ss):
        with _fdlock:                   # no new FD once the number is gone
            fds = self._pg_takefds()
            n = _ss.detach(self)        # no syscall under the lock
        if n >= 0:
            try:
                _os.close(n)
            except OSError as e:        # as socket.close(): a reset is no error
                if e.errno != _errno.ECONNRESET:
                    raise
        for fd in fds:
            fd.close()

    def detach(self):
        with _fdlock:
            fds = self._pg_takefds()
            r = _Orig.detach(self)
        for fd in fds:
            fd.close()
        return r


def _needs_lookup(sock, address):
    """An (host, port...) address with a host name the C call would resolve
    on the worker thread, in a goroutine."""
    return (type(address) is tuple and len(address) >= 2 and isinstance(address[0], str)
            and not _is_literal(address[0]) and _in_goroutine()
            and _ss.family.__get__(sock) in (_socket.AF_INET, _socket.AF_INET6))


def _getaddrinfo(*args):
    if _dns_slots is None:                      # dns not patched: a handoff still
        from .. import syscall as _syscall
        return _syscall.call(get_original("socket", "getaddrinfo"), *args)
    return _socketmod.getaddrinfo(*args)


def _resolve_for(sock, address):
    """A host name in a connect address, resolved off the worker thread
    (the C socket would call getaddrinfo on it)."""
    fam = _ss.family.__get__(sock)
    infos = _getaddrinfo(address[0], address[1], fam, _ss.type.__get__(sock),
                         _ss.proto.__get__(sock))
    sa = infos[0][4]
    if fam == _socket.AF_INET6 and len(address) > 2:
        sa = (sa[0], sa[1]) + tuple(address[2:])
    return sa


# ---------------------------------------------------------------------------
# name resolution: through the handoff (pygmp.syscall) in a goroutine

def _is_literal(host):
    if host is None:
        return True
    if isinstance(host, bytes):
        try:
            host = host.decode("ascii")
        except UnicodeDecodeError:
            return False
    if not isinstance(host, str):
        return False
    if host == "":
        return True
    for fam in (_socket.AF_INET, _socket.AF_INET6):
        try:
            _socket.inet_pton(fam, host)
            return True
        except (OSError, ValueError):
            pass
    return False


# Lookups in flight through the handoff at once (each holds a pool thread
# while it waits for the resolver); more goroutines queue on this channel.
DNS_CONCURRENCY = 8
_dns_slots = None


def _resolver(orig, numeric_shortcut):
    from .. import syscall as _syscall

    def resolve(*args, **kwargs):
        if not _in_goroutine():
            return orig(*args, **kwargs)
        if numeric_shortcut and args and _is_literal(args[0]):
            return orig(*args, **kwargs)        # numeric: no lookup, nothing blocks
        slots = _dns_slots
        slots.send(None)
        try:
            return _syscall.call(orig, *args, **kwargs)
        finally:
            slots.recv()
    resolve.__name__ = orig.__name__
    resolve.__qualname__ = orig.__name__
    resolve.__doc__ = orig.__doc__
    return resolve


_FORWARD = ("getaddrinfo", "gethostbyname", "gethostbyname_ex")   # a numeric host needs no lookup
DNS_NAMES = ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr",
             "getnameinfo")


def patch_dns():
    global _dns_slots
    from .. import chan
    _dns_slots = chan(DNS_CONCURRENCY)
    for name in DNS_NAMES:
        orig = get_original("socket", name)
        patch_item(_socketmod, name, _resolver(orig, name in _FORWARD))
    mark_patched("dns")


def patch_socket():
    patch_item(_socketmod, "socket", socket)
    mark_patched("socket")

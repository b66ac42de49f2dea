"""pygmp.net: goroutine-aware sockets (Go's net package, the common part).

    ln = net.listen("tcp", "127.0.0.1:0")
    def serve(c):
        with c:
            while data := c.read(4096):
                c.write(data)
    go(lambda: [go(serve, ln.accept()) for _ in iter(int, 1)])
    c = net.dial("tcp", ln.addr())

Networks: ``tcp``, ``tcp4``, ``tcp6``, ``unix`` for ``listen``/``dial``;
``udp``, ``udp4``, ``udp6`` for ``listen_packet`` (and ``dial``).  Addresses
are Go's: ``"127.0.0.1:8080"``, ``"localhost:http"``, ``":0"`` (every
interface / the local system), ``"[::1]:80"``; for unix a filesystem path
(``"@name"`` is Linux's abstract namespace).  A malformed address raises
``ValueError`` naming it; a name that does not resolve raises
``socket.gaierror``.  Name resolution runs on a small helper thread pool, so a
worker thread never stalls in ``getaddrinfo``.

Addresses returned (``Listener.addr()``, ``Conn.local_addr()``,
``Conn.remote_addr()``, the address from ``read_from``) are ``Addr`` objects: a
``str`` holding Go's ``String()`` form (``"127.0.0.1:8080"``, ``"[::1]:80"``,
or the unix path), so they compare with, print as and can be passed back as
address strings, with ``.network``, ``.host`` and ``.port`` attributes.

Every call works from a goroutine (which parks; its worker thread runs other
goroutines meanwhile) and from the main thread or a plain thread (which blocks).

Errors: a passed deadline raises ``pygmp.net.TimeoutError`` (a subclass of the
built-in ``TimeoutError``); using a closed conn or listener raises
``pygmp.net.ErrClosed`` (an ``OSError``), and ``close()`` wakes every
goroutine blocked on it with that error (``close()`` itself may be called any
number of times); connection refused/reset and broken pipes surface as
``ConnectionRefusedError``, ``ConnectionResetError``, ``BrokenPipeError``.
"""

import os as _os
import queue as _queue
import socket as _socket
import threading as _threading
import time as _time

from .runtime import netfd as _netfd
from .runtime import proc as _proc
from .runtime.netfd import ErrClosed, TimeoutError

# The real classes, bound at import: pygmp.monkey may replace the module's
# attributes later, and the runtime's own threads and locks must stay real.
_SimpleQueue = _queue.SimpleQueue
_Thread = _threading.Thread

__all__ = ["listen", "dial", "listen_packet", "Listener", "Conn", "PacketConn",
           "Addr", "ErrClosed", "TimeoutError"]

_monotonic = _time.monotonic

_STREAM = {"tcp": _socket.AF_UNSPEC, "tcp4": _socket.AF_INET, "tcp6": _socket.AF_INET6}
_PACKET = {"udp": _socket.AF_UNSPEC, "udp4": _socket.AF_INET, "udp6": _socket.AF_INET6}


class Addr(str):
    """A network address: the ``str`` is Go's form (``"host:port"``,
    ``"[v6]:port"``, or the unix path); ``network``, ``host`` (``str``) and
    ``port`` (``int``; None for unix) give the parts."""

    __slots__ = ("network", "host", "port")

    def __new__(cls, network, host, port=None):
        if port is None:
            text = host
        elif ":" in host:
            text = "[%s]:%d" % (host, port)
        else:
            text = "%s:%d" % (host, port)
        self = str.__new__(cls, text)
        self.network = network
        self.host = host
        self.port = port
        return self

    def __repr__(self):
        return "Addr(%r, %r)" % (self.network, str(self))


def _sockaddr_to_addr(network, family, sa):
    if family == _socket.AF_UNIX:
        if isinstance(sa, bytes):
            sa = ("@" + sa[1:].decode("utf-8", "surrogateescape")) if sa[:1] == b"\0" \
                else sa.decode("utf-8", "surrogateescape")
        return Addr(network, sa or "")
    host, port = sa[0], sa[1]
    return Addr(network, host, port)


# ---------------------------------------------------------------------------
# address parsing and name resolution

def _check_network(network, table, what):
    if not isinstance(network, str):
        raise TypeError("%s: network must be a str, not %s" % (what, type(network).__name__))
    if network not in table:
        raise ValueError("%s: unknown network %r" % (what, network))


def _split_host_port(address, proto):
    """Go's SplitHostPort + port lookup: (host or "", port int)."""
    if not isinstance(address, str):
        raise TypeError("address must be a str, not %s" % type(address).__name__)
    if address.startswith("["):
        end = address.find("]")
        if end < 0:
            raise ValueError("address %r: missing ']' in address" % address)
        host = address[1:end]
        rest = address[end + 1:]
        if not rest:
            raise ValueError("address %r: missing port in address" % address)
        if not rest.startswith(":") or ":" in rest[1:]:
            raise ValueError("address %r: unexpected characters after ']'" % address)
        port = rest[1:]
        if ":" not in host:
            raise ValueError("address %r: brackets around a non-IPv6 host" % address)
    else:
        i = address.rfind(":")
        if i < 0:
            raise ValueError("address %r: missing port in address" % address)
        host, port = address[:i], address[i + 1:]
        if ":" in host:
            raise ValueError("address %r: too many colons in address" % address)
        if "[" in host or "]" in host:
            raise ValueError("address %r: unexpected '[' or ']' in address" % address)
    if port.isascii() and port.isdigit():
        n = int(port)
        if n > 65535:
            raise ValueError("address %r: invalid port %s" % (address, port))
    elif port.startswith(("-", "+")) or not port:
        raise ValueError("address %r: invalid port %r" % (address, port))
    else:
        try:
            n = _socket.getservbyname(port, proto)
        except OSError:
            raise ValueError("address %r: unknown port %r" % (address, port)) from None
    if any(c.isspace() for c in host) or "/" in host:
        raise ValueError("address %r: invalid host %r" % (address, host))
    return host, n


def _literal_family(host):
    """AF_INET / AF_INET6 for an IP literal, None for a name."""
    try:
        _socket.inet_pton(_socket.AF_INET, host)
        return _socket.AF_INET
    except OSError:
        pass
    h = host.split("%", 1)[0]
    try:
        _socket.inet_pton(_socket.AF_INET6, h)
        return _socket.AF_INET6
    except OSError:
        return None


# -- the resolver pool: getaddrinfo off the worker threads --------------------

_RESOLVERS_MAX = 4
_RESOLVER_IDLE = 30.0
_rlock = _threading.Lock()
_rq = None
_rstate = {"pid": None, "threads": 0, "idle": 0}


def _resolver_loop(q):
    while True:
        try:
            job = q.get(timeout=_RESOLVER_IDLE)
        except _queue.Empty:
            with _rlock:
                if q.empty():
                    _rstate["threads"] -= 1
                    _rstate["idle"] -= 1
                    return
            continue
        with _rlock:
            _rstate["idle"] -= 1
        fn, args, ch = job
        try:
            res = (True, fn(*args))
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            res = (False, e)
        ch._try_send(res)         # readies the caller first, then...
        s = _proc._sched
        if s is not None:         # ...the call stops counting as in flight
            with s.lock:
                s.nsyscall -= 1
        with _rlock:
            _rstate["idle"] += 1


def _offthread(fn, *args, deadline=None):
    """Run ``fn(*args)`` on a resolver thread and wait for it (parking a
    goroutine, blocking a thread).  ``deadline``: monotonic, raises TimeoutError."""
    from .runtime.chan import Chan, select
    global _rq
    ch = Chan(1)
    s = _proc._sched or _proc.start()
    with s.lock:
        s.nsyscall += 1          # checkdead: a blocking call is in flight
    with _rlock:
        if _rstate["pid"] != _os.getpid():
            _rq = _SimpleQueue()
            _rstate.update(pid=_os.getpid(), threads=0, idle=0)
        q = _rq
        q.put((fn, args, ch))
        start = _rstate["idle"] == 0 and _rstate["threads"] < _RESOLVERS_MAX
        if start:
            _rstate["threads"] += 1
            _rstate["idle"] += 1
    if start:
        t = _Thread(target=_resolver_loop, args=(q,), name="pygmp-resolver",
                              daemon=True)
        t._pygmp_runtime = True
        t.start()
    if deadline is None:
        ok, v = ch.recv()
    else:
        from .time import after
        rem = deadline - _monotonic()
        if rem <= 0:
            raise TimeoutError()
        i, r = select(ch.recv, after(rem).recv)
        if i == 1:
            raise TimeoutError()
        ok, v = r
    if not ok:
        raise v
    return v


def _resolve(network, family, socktype, host, port, deadline, passive, address=None):
    """[(family, sockaddr)] for host/port, IPv4 first."""
    fam = _literal_family(host) if host else None
    if fam is not None:
        if family != _socket.AF_UNSPEC and fam != family:
            raise ValueError("address %r: not an %s address for network %r"
                             % (address or host, "IPv4" if family == _socket.AF_INET else "IPv6", network))
        if fam == _socket.AF_INET:
            return [(fam, (host, port))]
        infos = _socket.getaddrinfo(host, port, fam, socktype, 0, _socket.AI_NUMERICHOST)
        return [(fam, infos[0][4])]
    if not host:
        if passive:
            if family == _socket.AF_INET6 or (family == _socket.AF_UNSPEC and _has_dualstack()):
                return [(_socket.AF_INET6, ("::", port, 0, 0))]
            return [(_socket.AF_INET, ("0.0.0.0", port))]
        if family == _socket.AF_INET6:
            return [(_socket.AF_INET6, ("::1", port, 0, 0))]
        return [(_socket.AF_INET, ("127.0.0.1", port))]
    infos = _offthread(_socket.getaddrinfo, host, port, family, socktype,
                       deadline=deadline)
    out = []
    seen = set()
    for fam, _t, _p, _c, sa in infos:
        if fam not in (_socket.AF_INET, _socket.AF_INET6) or (fam, sa) in seen:
            continue
        seen.add((fam, sa))
        out.append((fam, sa))
    out.sort(key=lambda e: e[0] != _socket.AF_INET)
    if not out:
        raise _socket.gaierror(_socket.EAI_NONAME, "no suitable address for %r" % host)
    return out


_dualstack = None


def _has_dualstack():
    global _dualstack
    if _dualstack is None:
        ok = False
        if _socket.has_ipv6:
            try:
                s = _socket.socket(_socket.AF_INET6, _socket.SOCK_STREAM)
                try:
                    s.setsockopt(_socket.IPPROTO_IPV6, _socket.IPV6_V6ONLY, 0)
                    s.bind(("::1", 0))
                    ok = True
                finally:
                    s.close()
            except OSError:
                ok = False
        _dualstack = ok
    return _dualstack


def _unix_path(address):
    if not isinstance(address, str):
        raise TypeError("address must be a str, not %s" % type(address).__name__)
    if not address or "\0" in address:
        raise ValueError("address %r: invalid unix socket path" % address)
    if address.startswith("@"):
        return b"\0" + address[1:].encode("utf-8", "surrogateescape")
    return address


def _check_deadline(t, who):
    if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float))):
        raise TypeError("%s: deadline must be a time.time() value or None, not %s"
                        % (who, type(t).__name__))


# ---------------------------------------------------------------------------
# Conn

class Conn:
    """A stream connection (TCP or unix).  Reads and writes may run in two
    goroutines at once; reads are serialized with each other, writes too."""

    __slots__ = ("_fd", "_network", "_laddr", "_raddr", "__weakref__")

    def __init__(self, fd, network, raddr=None):
        self._fd = fd
        self._network = network
        self._laddr = None
        self._raddr = raddr

    def __repr__(self):
        state = "closed" if self._fd.closing else "%s->%s" % (self._laddr or "?", self._raddr or "?")
        return "<pygmp.net.Conn %s %s>" % (self._network, state)

    # The I/O methods are one call into C each (csrc/netfd.c), which checks
    # the arguments as documented here.

    def read(self, n):
        """At most ``n`` bytes, as soon as any are there; ``b""`` at EOF
        (``n`` an int >= 0: TypeError / ValueError otherwise)."""
        return self._fd.read(n)

    def recv(self, bufsize, flags=0):
        """socket.recv: at most ``bufsize`` bytes; ``b""`` at EOF."""
        return self._fd.recv(bufsize, flags)

    def recv_into(self, buffer, nbytes=0, flags=0):
        """socket.recv_into: fill ``buffer``; returns the byte count (0 at EOF)."""
        return self._fd.recv_into(buffer, nbytes, flags)

    def write(self, data):
        """Write all of ``data``; returns its length."""
        return self._fd.write(data)

    def send(self, data, flags=0):
        """socket.send: write some of ``data``; returns how many bytes."""
        return self._fd.send(data, flags)

    def sendall(self, data, flags=0):
        """socket.sendall: write all of ``data``; returns None."""
        self._fd.sendall(data, flags)

    def close(self):
        """Close the connection; goroutines blocked on it get ErrClosed."""
        self._fd.close()

    def close_write(self):
        """Shut down the writing side (the peer reads EOF)."""
        self._shutdown(_socket.SHUT_WR)

    def close_read(self):
        """Shut down the reading side."""
        self._shutdown(_socket.SHUT_RD)

    def _shutdown(self, how):
        self._fd.shutdown(how)

    def set_deadline(self, t):
        """Read and write deadline: an absolute time.time() value, or None."""
        _check_deadline(t, "set_deadline")
        self._fd.set_deadline(t, True, True)

    def set_read_deadline(self, t):
        _check_deadline(t, "set_read_deadline")
        self._fd.set_deadline(t, True, False)

    def set_write_deadline(self, t):
        _check_deadline(t, "set_write_deadline")
        self._fd.set_deadline(t, False, True)

    def local_addr(self):
        """The local address, an ``Addr`` (a "host:port" / path string)."""
        a = self._laddr
        if a is None:
            fd = self._fd
            if fd.closing:
                raise ErrClosed()
            a = self._laddr = _sockaddr_to_addr(self._network, fd.family, fd.getsockname())
        return a

    def remote_addr(self):
        """The peer's address, an ``Addr`` (a "host:port" / path string)."""
        a = self._raddr
        if a is None:
            fd = self._fd
            if fd.closing:
                raise ErrClosed()
            try:
                sa = fd.getpeername()
            except OSError:
                sa = "" if fd.family == _socket.AF_UNIX else None
            if sa is None:
                return None
            a = self._raddr = _sockaddr_to_addr(self._network, fd.family, sa)
        return a

    def fileno(self):
        return self._fd.sysfd

    @property
    def closed(self):
        return self._fd.closing

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class PacketConn(Conn):
    """A datagram socket (``listen_packet("udp", ...)``)."""

    __slots__ = ()

    def read_from(self, n):
        """One datagram (at most ``n`` bytes of it) and its sender: (bytes, Addr)."""
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError("read_from: n must be an int, not %s" % type(n).__name__)
        data, sa = self._fd.recvfrom(max(n, 0))
        return data, _sockaddr_to_addr(self._network, self._fd.family, sa)

    def write_to(self, data, addr):
        """Send ``data`` as one datagram to ``addr`` ("host:port" or Addr)."""
        fd = self._fd
        sa = _packet_target(self._network, fd.family, addr)
        return fd.sendto(data, sa)

    recvfrom = read_from

    def sendto(self, data, addr):
        return self.write_to(data, addr)


def _packet_target(network, family, addr):
    if isinstance(addr, tuple):
        host = addr[0] if addr else None
        if len(addr) < 2 or not isinstance(host, str) or not host \
                or _literal_family(host) is not None:
            return addr                     # numeric (or malformed: sendto says why)
        port = addr[1]                      # a name: resolve it here, off the worker
    else:
        host, port = _split_host_port(addr, "udp")
    fam = family if family in (_socket.AF_INET, _socket.AF_INET6) else _socket.AF_UNSPEC
    cands = _resolve(network, _socket.AF_UNSPEC, _socket.SOCK_DGRAM, host, port, None, False, addr)
    for f, sa in cands:
        if f == fam:
            return sa
    f, sa = cands[0]
    if fam == _socket.AF_INET6 and f == _socket.AF_INET:
        return ("::ffff:" + sa[0], sa[1], 0, 0)
    return sa


# ---------------------------------------------------------------------------
# Listener

class Listener:
    """A stream listener.  ``accept()`` parks until a connection arrives;
    ``close()`` wakes goroutines blocked in ``accept()`` with ErrClosed (and
    removes the socket file of a unix listener)."""

    __slots__ = ("_fd", "_network", "_addr", "_unlink", "__weakref__")

    def __init__(self, fd, network, unlink=None):
        self._fd = fd
        self._network = network
        self._addr = _sockaddr_to_addr(network, fd.family, fd.getsockname())
        self._unlink = unlink

    def __repr__(self):
        return "<pygmp.net.Listener %s %s%s>" % (self._network, self._addr,
                                                 " closed" if self._fd.closing else "")

    def accept(self):
        """The next connection, a Conn."""
        fd, sa = self._fd.accept()          # TCP conns come with TCP_NODELAY
        raddr = None
        if fd.family != _socket.AF_UNIX:
            raddr = _sockaddr_to_addr(self._network, fd.family, sa)
        return Conn(fd, self._network, raddr)

    def close(self):
        fd = self._fd
        first = not fd.closing
        fd.close()
        if first and self._unlink:
            try:
                _os.unlink(self._unlink)
            except OSError:
                pass

    def addr(self):
        """The listening address, an ``Addr`` ("host:port" / path string)."""
        return self._addr

    def set_deadline(self, t):
        """Deadline for accept(): an absolute time.time() value, or None."""
        _check_deadline(t, "set_deadline")
        self._fd.set_deadline(t, True, False)

    def fileno(self):
        return self._fd.sysfd

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _somaxconn():
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            n = int(f.read().strip())
    except (OSError, ValueError):
        n = 4096
    return max(128, min(n, 65535))


def listen(network, address):
    """Listen on ``address``: a Listener.  ``network``: tcp, tcp4, tcp6, unix."""
    if network == "unix":
        path = _unix_path(address)
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            s.bind(path)
            s.listen(_somaxconn())
        except BaseException:
            s.close()
            raise
        return Listener(_netfd.fd_from(s), network, unlink=path if isinstance(path, str) else None)
    _check_network(network, _STREAM, "listen")
    host, port = _split_host_port(address, "tcp")
    family = _STREAM[network]
    fam, sa = _resolve(network, family, _socket.SOCK_STREAM, host, port, None, True, address)[0]
    s = _socket.socket(fam, _socket.SOCK_STREAM)
    try:
        s.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        if fam == _socket.AF_INET6:
            v6only = 1 if network == "tcp6" else 0
            try:
                s.setsockopt(_socket.IPPROTO_IPV6, _socket.IPV6_V6ONLY, v6only)
            except OSError:
                pass
        s.bind(sa)
        s.listen(_somaxconn())
    except BaseException:
        s.close()
        raise
    return Listener(_netfd.fd_from(s), network)


def listen_packet(network, address):
    """A PacketConn bound to ``address``.  ``network``: udp, udp4, udp6."""
    _check_network(network, _PACKET, "listen_packet")
    host, port = _split_host_port(address, "udp")
    family = _PACKET[network]
    fam, sa = _resolve(network, family, _socket.SOCK_DGRAM, host, port, None, True, address)[0]
    s = _socket.socket(fam, _socket.SOCK_DGRAM)
    try:
        if fam == _socket.AF_INET6:
            try:
                s.setsockopt(_socket.IPPROTO_IPV6, _socket.IPV6_V6ONLY,
                             1 if network == "udp6" else 0)
            except OSError:
                pass
        s.bind(sa)
    except BaseException:
        s.close()
        raise
    return PacketConn(_netfd.fd_from(s), network)


def dial(network, address, timeout=None):
    """Connect to ``address``: a Conn.  ``network``: tcp, tcp4, tcp6, unix (udp,
    udp4, udp6 give a connected PacketConn).  ``timeout`` (seconds) bounds the
    whole dial, name resolution included: pygmp.net.TimeoutError."""
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError("dial: timeout must be a number of seconds or None")
    deadline = None if timeout is None else _monotonic() + timeout
    if network == "unix":
        path = _unix_path(address)
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        fd = _netfd.fd_from(s)
        _connect(fd, path, deadline, network, address)
        return Conn(fd, network, Addr(network, address))
    if network in _PACKET:
        host, port = _split_host_port(address, "udp")
        cands = _resolve(network, _PACKET[network], _socket.SOCK_DGRAM, host, port, deadline, False,
                         address)
        fam, sa = cands[0]
        fd = _netfd.fd_from(_socket.socket(fam, _socket.SOCK_DGRAM))
        try:
            fd.connect(sa)
        except BaseException:
            fd.close()
            raise
        return PacketConn(fd, network)
    _check_network(network, _STREAM, "dial")
    host, port = _split_host_port(address, "tcp")
    cands = _resolve(network, _STREAM[network], _socket.SOCK_STREAM, host, port, deadline, False,
                     address)
    err = None
    for fam, sa in cands:
        s = _socket.socket(fam, _socket.SOCK_STREAM)
        try:
            s.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)   # Go's default
        except OSError:
            pass
        fd = _netfd.fd_from(s)                   # the FD owns the fd number from here
        try:
            _connect(fd, sa, deadline, network, address)
        except TimeoutError:
            raise
        except OSError as e:
            err = e
            continue
        return Conn(fd, network, _sockaddr_to_addr(network, fam, sa))
    raise err


def _connect(fd, sa, deadline, network, address):
    try:
        if deadline is not None:
            rem = deadline - _monotonic()
            if rem <= 0:
                raise TimeoutError("dial %s %s: i/o timeout" % (network, address))
            fd.set_deadline(_time.time() + rem, False, True)
        try:
            fd.connect(sa)
        except TimeoutError:
            raise TimeoutError("dial %s %s: i/o timeout" % (network, address)) from None
        if deadline is not None:
            fd.set_deadline(None, False, True)
    except BaseException:
        fd.close()
        raise

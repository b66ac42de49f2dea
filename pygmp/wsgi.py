"""pygmp.wsgi: a WSGI server (PEP 3333) with a goroutine per connection.

    from pygmp import wsgi
    wsgi.serve(app, "127.0.0.1:8000")          # blocks while it serves

    python -m pygmp.wsgi MODULE:APP --bind HOST:PORT [--gomaxprocs N]

HTTP/1.1 with keep-alive and pipelining, chunked request and response bodies,
``Expect: 100-continue`` (the ``100 Continue`` goes out when the application
first reads ``wsgi.input``), ``wsgi.multithread`` true: requests run in
goroutines on GOMAXPROCS worker threads.  Requests are parsed by httptools
(llhttp, Node.js's parser), never by hand.

Errors.  A malformed request is answered ``400`` and its connection closed; a
request line or header section over the limits gets ``431`` (never unbounded
memory: at most one 64 KiB read past a limit is buffered).  An exception raised
by the application is logged with its traceback to stderr and answered
``500`` (if the response had not started), and that connection is closed; the
server and every other connection carry on.  Timeouts bound what a client can
hold: the request head must arrive within ``header_timeout`` seconds of its
first byte, an idle keep-alive connection is closed after
``keepalive_timeout``, each read of a request body and each write of a response
must progress within ``read_timeout`` / ``write_timeout`` (slowloris clients
are cut off; a slow client only ever parks its own goroutine).  The time an
application spends computing a response is not limited.

Addresses: ``"host:port"`` (Go style; ``":8000"`` is every interface, port 0
picks a free one), ``"unix:/path"``, a ``pygmp.net.Listener``, or a list of
those.  ``Server`` gives the bound addresses and a graceful ``shutdown``.

Goroutines are not threads: ``threading.local`` is shared by the goroutines
of one worker thread, and a blocking call that pygmp does not hand off
(``time.sleep``, a C library's own socket) holds up the other goroutines of
its worker thread.  Use ``pygmp.time.sleep``, ``pygmp.net`` and
``pygmp.syscall.call``, or contextvars, which are per goroutine.
"""

import errno as _errno
import os as _os
import socket as _socket
import ssl as _ssl
import sys as _sys
import traceback as _traceback

from . import chan as _chan, go as _go, select as _select
from . import net as _net
from . import sync as _sync
from . import time as _gtime
from ._wsgibody import (DEFAULTS, SERVER_SOFTWARE, BadRequest, ClientDisconnected, FileWrapper,
                        _mono)
from ._wsgiconn import _Connection
from ._tls import TLSConn as _TLSConn

for _cls in (BadRequest, ClientDisconnected, FileWrapper):
    _cls.__module__ = __name__      # their public home

__all__ = ["serve", "Server", "FileWrapper", "ClientDisconnected", "BadRequest"]


def _listener_from_socket(sock):
    """A pygmp.net.Listener around an already listening socket (gunicorn's)."""
    fl = getattr(_net, "file_listener", None)
    if fl is not None:
        return fl(sock)
    from .runtime import netfd
    network = "unix" if sock.family == getattr(_socket, "AF_UNIX", None) else "tcp"
    return _net.Listener(netfd.FD(sock), network)


def _listen(address, backlog):
    if isinstance(address, _net.Listener):
        return address
    if isinstance(address, _socket.socket):
        return _listener_from_socket(address)
    if not isinstance(address, str):
        raise TypeError("address must be a 'host:port' or 'unix:PATH' str, a "
                        "pygmp.net.Listener, or a list of them, not %s" % type(address).__name__)
    if address.startswith("unix:"):
        ln = _net.listen("unix", address[5:])
    else:
        ln = _net.listen("tcp", address)
    if backlog is not None:
        s = _socket.fromfd(ln.fileno(), _socket.AF_INET if ln.addr().port is not None
                           else _socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            s.listen(backlog)           # same socket, another fd: sets its backlog
        finally:
            s.close()
    return ln


def _check_timeout(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
        raise ValueError("%s must be a number of seconds >= 0, not %r" % (name, v))
    return float(v)


def _check_limit(name, v):
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError("%s must be an int >= 1, not %r" % (name, v))
    return v


def _default_log_exception(env, exc_info):
    try:
        where = "%s %s" % (env.get("REQUEST_METHOD"), env.get("RAW_URI"))
        peer = env.get("REMOTE_ADDR", "")
        text = "pygmp.wsgi: error handling %s (client %s):\n%s" % (
            where, peer, "".join(_traceback.format_exception(*exc_info)))
        err = _sys.stderr
        err.write(text)
        err.flush()
    except Exception:   # noqa: BLE001 - logging must never take the connection down
        pass


class Server:
    """A WSGI server on one or more listeners.

    ``Server(app, address, ...)`` listens at once (errors binding raise
    here); ``serve()`` serves until ``shutdown()``/``close()`` (blocking;
    ``start()`` serves in goroutines and returns).  ``addrs`` are the bound
    addresses (``pygmp.net.Addr``), ``addr`` the first one.

    Keywords: ``backlog`` (listen queue), ``max_connections`` (open
    connections at most; further clients wait in the listen queue),
    the timeouts and limits of ``DEFAULTS``, ``environ`` (extra keys for
    every request's environ), ``multiprocess`` (``wsgi.multiprocess``),
    ``log_exception(environ, exc_info)`` (default: the traceback to stderr),
    ``on_request(environ, status, headers, bytes_sent, seconds)`` (called
    after each response, in its goroutine), ``environ_hook(environ)`` (may
    edit each environ before the application sees it), ``ssl_context``
    (a server-side ``ssl.SSLContext``: every connection speaks TLS, the
    handshake parking its goroutine like any read; ``wsgi.url_scheme`` is
    ``https``).
    """

    def __init__(self, app, address, *, backlog=1024, max_connections=None,
                 header_timeout=DEFAULTS["header_timeout"],
                 keepalive_timeout=DEFAULTS["keepalive_timeout"],
                 read_timeout=DEFAULTS["read_timeout"],
                 write_timeout=DEFAULTS["write_timeout"],
                 max_request_line=DEFAULTS["max_request_line"],
                 max_headers=DEFAULTS["max_headers"],
                 max_header_size=DEFAULTS["max_header_size"],
                 max_head_bytes=DEFAULTS["max_head_bytes"],
                 environ=None, multiprocess=False, log_exception=None, on_request=None,
                 environ_hook=None, ssl_context=None):
        if not callable(app):
            raise TypeError("app must be a WSGI callable, not %s" % type(app).__name__)
        if ssl_context is not None and not isinstance(ssl_context, _ssl.SSLContext):
            raise TypeError("ssl_context must be an ssl.SSLContext, not %s"
                            % type(ssl_context).__name__)
        self._ssl = ssl_context
        if backlog is not None and (isinstance(backlog, bool) or not isinstance(backlog, int)
                                    or backlog < 1):
            raise ValueError("backlog must be an int >= 1, not %r" % (backlog,))
        if max_connections is not None:
            _check_limit("max_connections", max_connections)
        self.app = app
        self.header_timeout = _check_timeout("header_timeout", header_timeout)
        self.keepalive_timeout = _check_timeout("keepalive_timeout", keepalive_timeout)
        self.read_timeout = _check_timeout("read_timeout", read_timeout)
        self.write_timeout = _check_timeout("write_timeout", write_timeout)
        for t in ("header_timeout", "read_timeout", "write_timeout"):
            if getattr(self, t) <= 0:
                raise ValueError("%s must be > 0" % t)
        self.max_request_line = _check_limit("max_request_line", max_request_line)
        self.max_headers = _check_limit("max_headers", max_headers)
        self.max_header_size = _check_limit("max_header_size", max_header_size)
        self.max_head_bytes = _check_limit("max_head_bytes", max_head_bytes)
        self.max_connections = max_connections
        self._log_exception = log_exception or _default_log_exception
        self._on_request = on_request
        self._environ_hook = environ_hook
        addrs = address if isinstance(address, (list, tuple)) else [address]
        if not addrs:
            raise ValueError("no address to listen on")
        self.listeners = []
        try:
            for a in addrs:
                self.listeners.append(_listen(a, backlog))
        except BaseException:
            for ln in self.listeners:
                if ln is not address and ln not in addrs:
                    ln.close()
            raise
        self._environ = dict(environ or {})
        self._multiprocess = bool(multiprocess)
        self._mu = _sync.Mutex()
        self._conns = set()
        self._slots = _sync.Semaphore(max_connections) if max_connections else None
        self._stopping = False
        self._closed = False
        self._started = False
        self._quit = _chan()            # closed by shutdown/close: the janitor ends
        self._done = _chan()            # closed by close(): serving is over
        self._accepting = 0             # accept loops still running
        self._accept_done = _chan()     # closed when the last accept loop ends
        self._empty = None              # closed when the last connection ends after stopping
        self._tick = min(1.0, max(0.05, min(x for x in (
            self.header_timeout, self.keepalive_timeout or 1.0, self.read_timeout,
            self.write_timeout)) / 4))

    @property
    def addrs(self):
        return [ln.addr() for ln in self.listeners]

    @property
    def addr(self):
        return self.listeners[0].addr()

    def _env0(self, ln):
        a = ln.addr()
        env = {
            "SERVER_NAME": a.host if a.port is not None else str(a),
            "SERVER_PORT": str(a.port) if a.port is not None else "",
            "SCRIPT_NAME": "",
            "SERVER_SOFTWARE": SERVER_SOFTWARE,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "https" if self._ssl is not None else "http",
            "wsgi.errors": _sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": self._multiprocess,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "wsgi.file_wrapper": FileWrapper,
        }
        if self._ssl is not None:
            env["HTTPS"] = "on"
        env.update(self._environ)
        return env

    def start(self):
        """Serve in goroutines and return at once."""
        if self._started:
            return
        if self._closed:
            raise RuntimeError("the server was shut down")
        self._started = True
        self._accepting = len(self.listeners)
        for ln in self.listeners:
            _go(self._accept_loop, ln, self._env0(ln))
        _go(self._janitor)

    def serve(self):
        """Serve until the listeners close (``shutdown()`` or ``close()``
        from another goroutine, or closed by their owner; connections in
        flight go on, as Go's ``Serve`` returns) or, in the main thread,
        Ctrl-C (KeyboardInterrupt: everything is closed, then it propagates)."""
        self.start()
        try:
            _select(self._done.recv, self._accept_done.recv)
        except BaseException:
            self.close()
            raise

    # -- accepting --

    def _accept_loop(self, ln, env0):
        try:
            self._accept(ln, env0)
        finally:
            mu = self._mu
            mu.lock()
            self._accepting -= 1
            last = self._accepting == 0
            mu.unlock()
            if last:
                self._accept_done.close()

    def _accept(self, ln, env0):
        slots = self._slots
        backoff = 0.005
        while True:
            if slots is not None:
                slots.acquire()
            if self._stopping:
                if slots is not None:
                    slots.release()
                return
            try:
                conn = ln.accept()
            except _net.ErrClosed:
                if slots is not None:
                    slots.release()
                return
            except OSError as e:
                if slots is not None:
                    slots.release()
                if self._stopping:
                    return
                if e.errno not in (_errno.ECONNABORTED, _errno.EPROTO, _errno.EINTR):
                    _sys.stderr.write("pygmp.wsgi: accept: %s\n" % e)
                _gtime.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            backoff = 0.005
            _go(self._serve_conn, conn, env0)

    def _serve_conn(self, conn, env0):
        env = env0.copy()
        try:
            ra = conn.remote_addr()
        except OSError:
            ra = None
        if ra is not None and ra.port is not None:
            env["REMOTE_ADDR"] = ra.host
            env["REMOTE_PORT"] = str(ra.port)
        else:
            env["REMOTE_ADDR"] = ""
            env["REMOTE_PORT"] = ""
        c = _Connection(self, conn if self._ssl is None else _TLSConn(conn, self._ssl), env)
        mu = self._mu
        mu.lock()
        self._conns.add(c)
        mu.unlock()
        try:
            if not self._stopping:
                c.run()
        except Exception:   # noqa: BLE001 - a bug here must not end the process
            _sys.stderr.write("pygmp.wsgi: internal error on a connection:\n%s"
                              % _traceback.format_exc())
        finally:
            conn.close()
            mu.lock()
            self._conns.discard(c)
            last = not self._conns
            empty = self._empty
            mu.unlock()
            if self._slots is not None:
                self._slots.release()
            if last and empty is not None:
                try:
                    empty.close()
                except Exception:   # noqa: BLE001 - closed already
                    pass

    def _janitor(self):
        """Close connections whose deadline passed (idle keep-alive, slow
        request heads, stalled body reads and response writes)."""
        tk = _gtime.Ticker(self._tick)
        try:
            while True:
                i, _ = _select(tk.c.recv, self._quit.recv)
                if i == 1:
                    return
                now = _mono()
                mu = self._mu
                mu.lock()
                conns = list(self._conns)
                mu.unlock()
                for c in conns:
                    d = c.deadline
                    if d and d < now:
                        c.conn.close()
        finally:
            tk.stop()

    # -- stopping --

    def connections(self):
        """How many connections are open now."""
        return len(self._conns)

    def stop_accepting(self):
        """Begin a graceful stop and return at once: close the listeners and
        the idle connections; requests in flight go on, and their responses
        say ``Connection: close``.  (``shutdown`` then waits for them.)"""
        mu = self._mu
        mu.lock()
        first = not self._stopping
        self._stopping = True
        if self._empty is None:
            self._empty = _chan()
        conns = list(self._conns)
        mu.unlock()
        if first:
            for ln in self.listeners:
                ln.close()
        for c in conns:
            if c.idle:
                c.conn.close()
        return conns

    def shutdown(self, timeout=None):
        """Graceful stop: stop accepting, close idle connections, let requests
        in flight finish (their responses say ``Connection: close``), for at
        most ``timeout`` seconds (None: no limit); then close what is left.
        Returns True if every connection ended by itself."""
        if timeout is not None:
            timeout = _check_timeout("timeout", timeout)
        conns = self.stop_accepting()
        empty = self._empty
        mu = self._mu
        if conns:
            mu.lock()
            left = bool(self._conns)
            mu.unlock()
            if left:
                if timeout is None:
                    empty.recv()
                else:
                    _select(empty.recv, _gtime.after(timeout).recv)
        mu.lock()
        clean = not self._conns
        mu.unlock()
        self.close()
        return clean

    def close(self):
        """Stop at once: close the listeners and every connection."""
        mu = self._mu
        mu.lock()
        self._stopping = True
        was = self._closed
        self._closed = True
        conns = list(self._conns)
        mu.unlock()
        for ln in self.listeners:
            ln.close()
        for c in conns:
            c.conn.close()
        if not was:
            self._quit.close()
            self._done.close()


def serve(app, address, *, backlog=1024, max_connections=None, **options):
    """Serve the WSGI ``app`` on ``address`` (``"host:port"``,
    ``"unix:PATH"``, a ``pygmp.net.Listener`` or a list of them) with a
    goroutine per connection; blocks while it serves (run it with
    ``pygmp.go`` to do more).  ``options``: see ``Server``."""
    Server(app, address, backlog=backlog, max_connections=max_connections,
           **options).serve()


# -- python -m pygmp.wsgi -------------------------------------------------------

def load_app(spec):
    """``MODULE:APP`` (APP an attribute path, or ``NAME()`` to call a
    factory; ``MODULE`` alone means ``MODULE:application``) -> the callable."""
    import importlib
    if not isinstance(spec, str) or not spec:
        raise ValueError("the application must be given as MODULE:APP")
    mod, _, attr = spec.partition(":")
    attr = attr or "application"
    if not mod:
        raise ValueError("%r: missing the module in MODULE:APP" % spec)
    if "" not in _sys.path and _os.getcwd() not in _sys.path:
        _sys.path.insert(0, _os.getcwd())
    m = importlib.import_module(mod)
    call = attr.endswith("()")
    if call:
        attr = attr[:-2]
    obj = m
    for part in attr.split("."):
        if not part.isidentifier():
            raise ValueError("%r: %r is not an attribute name" % (spec, attr))
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError("%r: module %r has no attribute %r" % (spec, mod, attr)) from None
    if call:
        obj = obj()
    if not callable(obj):
        raise ValueError("%r: %r is not callable" % (spec, obj))
    return obj


def main(argv=None):
    import argparse
    import signal
    from . import signal as gsignal
    from .runtime import gomaxprocs

    ap = argparse.ArgumentParser(
        prog="python -m pygmp.wsgi",
        description="Serve a WSGI application with pygmp: a goroutine per connection.")
    ap.add_argument("app", metavar="MODULE:APP", help="the WSGI application, e.g. myapp:app")
    ap.add_argument("-b", "--bind", action="append", metavar="ADDRESS",
                    help="HOST:PORT or unix:PATH to listen on (repeatable; default "
                         "127.0.0.1:8000)")
    ap.add_argument("--gomaxprocs", type=int, default=0, metavar="N",
                    help="number of Ps (worker threads running goroutines); default: "
                         "$GOMAXPROCS or the CPUs available")
    ap.add_argument("--backlog", type=int, default=1024, help="listen queue length")
    ap.add_argument("--max-connections", type=int, default=None, metavar="N",
                    help="open connections at most (default: no limit)")
    ap.add_argument("--keepalive-timeout", type=float, default=DEFAULTS["keepalive_timeout"],
                    metavar="S", help="close idle keep-alive connections after S seconds "
                                      "(0: no keep-alive)")
    ap.add_argument("--header-timeout", type=float, default=DEFAULTS["header_timeout"],
                    metavar="S", help="a request head must arrive within S seconds")
    ap.add_argument("--read-timeout", type=float, default=DEFAULTS["read_timeout"],
                    metavar="S", help="each read of a request body within S seconds")
    ap.add_argument("--write-timeout", type=float, default=DEFAULTS["write_timeout"],
                    metavar="S", help="each write of a response within S seconds")
    ap.add_argument("--graceful-timeout", type=float, default=10.0, metavar="S",
                    help="on SIGTERM/Ctrl-C, let requests in flight finish for at most "
                         "S seconds (a second signal stops at once)")
    ap.add_argument("--certfile", metavar="PATH", help="serve TLS with this certificate chain")
    ap.add_argument("--keyfile", metavar="PATH", help="its private key (default: in --certfile)")
    args = ap.parse_args(argv)
    if args.gomaxprocs < 0:
        ap.error("--gomaxprocs must be >= 1")
    if args.keyfile and not args.certfile:
        ap.error("--keyfile needs --certfile")
    ctx = None
    if args.certfile:
        try:
            ctx = _ssl.create_default_context(_ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(args.certfile, args.keyfile)
        except (OSError, _ssl.SSLError) as e:
            print("pygmp.wsgi: cannot load the certificate: %s" % e, file=_sys.stderr)
            return 1
    try:
        app = load_app(args.app)
    except (ValueError, ImportError) as e:
        print("pygmp.wsgi: cannot load %s: %s" % (args.app, e), file=_sys.stderr)
        return 1
    if args.gomaxprocs:
        gomaxprocs(args.gomaxprocs)
    sigs = _chan(4)
    gsignal.notify(sigs, signal.SIGINT, signal.SIGTERM)
    try:
        srv = Server(app, args.bind or ["127.0.0.1:8000"], backlog=args.backlog,
                     max_connections=args.max_connections,
                     keepalive_timeout=args.keepalive_timeout,
                     header_timeout=args.header_timeout, read_timeout=args.read_timeout,
                     write_timeout=args.write_timeout, ssl_context=ctx)
    except (OSError, ValueError, TypeError) as e:
        print("pygmp.wsgi: %s" % e, file=_sys.stderr)
        return 1
    srv.start()
    for a in srv.addrs:
        print("listening on %s" % a, flush=True)
    sig = sigs.recv()
    print("pygmp.wsgi: %s: stopping (requests in flight have %gs to finish)"
          % (signal.Signals(sig).name, args.graceful_timeout), file=_sys.stderr, flush=True)
    done = _chan()
    _go(lambda: (srv.shutdown(args.graceful_timeout), done.close()))
    _select(done.recv, sigs.recv)
    srv.close()
    return 0


if __name__ == "__main__":
    from pygmp.wsgi import main as _main
    _sys.exit(_main())

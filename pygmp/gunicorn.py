"""pygmp.gunicorn: a gunicorn worker that serves with pygmp.

    gunicorn -k pygmp.gunicorn.Worker MODULE:APP
    gunicorn -k pygmp.gunicorn.Worker -w 4 --reuse-port --worker-connections 2000 MODULE:APP

Each worker process patches the standard library (``pygmp.monkey.patch_all()``,
before the application is imported, as ``-k gevent`` does) and serves its
connections with ``pygmp.wsgi``: a goroutine per connection, run by GOMAXPROCS worker threads (set ``GOMAXPROCS`` in the
environment to choose; the default is the CPUs the process may use).
Several workers (``-w N``) are how a server scales past one process: on a GIL
build one process runs Python on one core at a time, so give each core a
worker and keep GOMAXPROCS small (1 or 2).  With ``--reuse-port``, gunicorn
versions that open a socket per worker (27 does) let the kernel spread new
connections over the workers (SO_REUSEPORT); otherwise the workers share one
listening socket and whichever is free accepts.

gunicorn's worker contract:

- heartbeat: a goroutine touches the worker's temporary file every
  ``--timeout``/4 seconds (at most every second), so the master kills
  (``--timeout``) a worker whose goroutines cannot run any more: every worker
  thread stuck in a blocking call that pygmp does not hand off;
- ``--worker-connections``: open connections at most, per worker (further
  clients wait in the listen queue);
- ``--max-requests`` (+ ``--max-requests-jitter``): after that many requests
  the worker stops gracefully and the master starts a new one;
- ``--keep-alive``: seconds an idle keep-alive connection is kept (0: none);
- ``--limit-request-line``, ``--limit-request-fields``,
  ``--limit-request-field_size``: answered ``431`` beyond them;
- SIGTERM (also what the master sends on SIGHUP reload, ``--max-requests``
  and scale-down): graceful stop: stop accepting, close idle connections,
  finish the requests in flight (their responses say ``Connection: close``)
  for at most ``--graceful-timeout`` seconds, then exit;
- SIGINT / SIGQUIT: quick stop (``worker_int`` hook); SIGABRT (sent by the
  master on timeout): ``worker_abort`` hook and exit 1; SIGUSR1: reopen log
  files; the worker stops when its parent changes;
- errors go to gunicorn's error log, requests to its access log when one is
  configured; ``secure_scheme_headers`` from ``forwarded_allow_ips`` set
  ``wsgi.url_scheme``.

TLS: ``--certfile``/``--keyfile`` (and gunicorn's other ssl settings,
through its ``ssl_context`` hook) serve HTTPS, the handshake parking the
connection's goroutine like any read.

Not supported: ``pre_request``/``post_request`` hooks, HTTP/2, the uwsgi and proxy protocols.
"""

import datetime as _datetime
import os as _os
import signal as _signal
import sys as _sys

from gunicorn.workers.base import Worker as _BaseWorker

__all__ = ["Worker"]


class _AccessResponse:
    __slots__ = ("status", "sent", "headers")

    def __init__(self, status, sent, headers):
        self.status = status
        self.sent = sent
        self.headers = headers


class _AccessRequest:
    __slots__ = ("headers",)

    def __init__(self, environ):
        self.headers = [(k[5:].replace("_", "-"), v) for k, v in environ.items()
                        if k.startswith("HTTP_")]


def _allow_check(cfg):
    """A predicate: may this peer address set the secure scheme headers?"""
    import ipaddress
    allowed = list(getattr(cfg, "forwarded_allow_ips", None) or [])
    if "*" in allowed:
        return lambda addr: True
    nets = []
    for a in allowed:
        try:
            nets.append(ipaddress.ip_network(a, strict=False))
        except ValueError:
            pass
    cache = {}

    def ok(addr):
        v = cache.get(addr)
        if v is None:
            if not addr:            # a unix socket: trusted, as gunicorn does
                v = True
            else:
                try:
                    ip = ipaddress.ip_address(addr)
                    v = any(ip in n for n in nets)
                except ValueError:
                    v = False
            if len(cache) < 4096:
                cache[addr] = v
        return v
    return ok


class Worker(_BaseWorker):
    """``gunicorn -k pygmp.gunicorn.Worker``: connections served by goroutines."""

    def init_process(self):
        # As gunicorn's gevent worker does: the standard library made
        # goroutine-aware (pygmp.monkey) in the worker process, before the
        # application is imported, so its blocking libraries (redis-py,
        # requests, database drivers on Python sockets, threading locks)
        # park goroutines instead of holding a worker thread.
        from pygmp import monkey
        monkey.patch_all()
        super().init_process()

    def init_signals(self):
        # The master's handlers were inherited: back to the defaults, then the
        # signals gunicorn sends a worker become values on a channel that the
        # main goroutine selects on (pygmp.signal, Go's signal.Notify).
        from pygmp import chan
        from pygmp import signal as gsignal
        for s in self.SIGNALS:
            _signal.signal(s, _signal.SIG_DFL)
        self._sigs = chan(16)
        gsignal.notify(self._sigs, _signal.SIGTERM, _signal.SIGQUIT, _signal.SIGINT,
                       _signal.SIGUSR1, _signal.SIGABRT, _signal.SIGWINCH)

    # -- per request (in the connection's goroutine) --

    def _access_log(self, environ, status, headers, sent, seconds):
        try:
            self.log.access(_AccessResponse(status, sent, headers), _AccessRequest(environ),
                            environ, _datetime.timedelta(seconds=seconds))
        except Exception:   # noqa: BLE001 - logging never fails a request
            pass

    def _count_request(self):
        # at the start of each request, as gunicorn's workers count: the
        # last one's response already says Connection: close
        self.nr += 1
        if self.nr >= self.max_requests and self.alive:
            self.log.info("Autorestarting worker after current request.")
            self.alive = False
            self._srv.stop_accepting()
            self._wake.do(self._stop.close)

    def _log_exception(self, env, exc_info):
        self.log.error("Error handling request %s", env.get("RAW_URI", "?"),
                       exc_info=exc_info)

    def _ssl_context(self):
        if not getattr(self.cfg, "is_ssl", False):
            return None
        from gunicorn import sock
        return sock.ssl_context(self.cfg)

    def _environ_hook(self):
        secure = getattr(self.cfg, "secure_scheme_headers", None) or {}
        count = self.max_requests < _sys.maxsize
        if not secure and not count:
            return None
        keys = [("HTTP_" + k.upper().replace("-", "_"), v) for k, v in secure.items()]
        allowed = _allow_check(self.cfg)
        count_request = self._count_request

        def hook(env):
            if count:
                count_request()
            for key, want in keys:
                v = env.get(key)
                if v is not None and allowed(env.get("REMOTE_ADDR", "")):
                    env["wsgi.url_scheme"] = "https" if v == want else "http"
                    return
        return hook

    def _heartbeat(self, interval):
        from pygmp import time as gtime
        while True:
            self.notify()
            gtime.sleep(interval)

    # -- the worker's main goroutine --

    def run(self):
        from pygmp import chan, go, select
        from pygmp import sync
        from pygmp import time as gtime
        from pygmp import wsgi

        cfg = self.cfg
        self._stop = chan()
        self._wake = sync.Once()
        acc = getattr(self.log, "access_log_enabled", None)
        self._access = bool(acc if acc is not None else getattr(cfg, "accesslog", None))
        env = {}
        try:
            from gunicorn.http.wsgi import base_environ
            env.update(base_environ(cfg))
        except Exception:   # noqa: BLE001 - an older/newer gunicorn: our own defaults
            pass
        env["wsgi.multithread"] = True
        env.pop("wsgi.input", None)
        import gunicorn
        env["SERVER_SOFTWARE"] = "pygmp gunicorn/%s" % gunicorn.__version__

        def limit(name, default, unlimited):
            v = getattr(cfg, name, default)
            return v if v and v > 0 else unlimited

        listeners = [wsgi._listener_from_socket(getattr(s, "sock", s)) for s in self.sockets]
        srv = self._srv = wsgi.Server(
            self.wsgi, listeners, backlog=None,
            max_connections=max(1, int(getattr(cfg, "worker_connections", 1000) or 1000)),
            keepalive_timeout=float(getattr(cfg, "keepalive", 2) or 0),
            max_request_line=limit("limit_request_line", 4094, 1 << 20),
            max_headers=limit("limit_request_fields", 100, 32768),
            max_header_size=limit("limit_request_field_size", 8190, 1 << 20),
            max_head_bytes=min(1 << 20, max(65536, limit("limit_request_line", 4094, 1 << 20)
                                            + limit("limit_request_fields", 100, 32768)
                                            * limit("limit_request_field_size", 8190, 1 << 20))),
            environ=env, multiprocess=getattr(cfg, "workers", 1) > 1,
            log_exception=self._log_exception,
            on_request=self._access_log if self._access else None,
            environ_hook=self._environ_hook(), ssl_context=self._ssl_context())
        srv.start()
        # self.timeout is half of --timeout (gunicorn's arbiter); 0: no timeout
        interval = max(0.05, min(1.0, self.timeout / 2.0)) if self.timeout else 1.0
        go(self._heartbeat, interval)

        quick = False
        while self.alive:
            i, sig = select(self._sigs.recv, self._stop.recv, gtime.after(1.0).recv)
            if i == 0:
                quick = self._signal(sig, srv)
            if self.ppid != _os.getppid():
                self.log.info("Parent changed, shutting down: %s", self)
                self.alive = False
        if quick:
            srv.close()
            return
        done = chan()
        go(lambda: (done.close() if srv.shutdown(cfg.graceful_timeout) else
                    (self.log.warning("Worker graceful timeout (pid:%s)", self.pid),
                     done.close())))
        while True:
            i, sig = select(done.recv, self._sigs.recv)
            if i == 0:
                return
            if self._signal(sig, srv):
                srv.close()
                return

    def _signal(self, sig, srv):
        """Act on a signal; True for a quick stop."""
        if sig == _signal.SIGTERM:
            self.alive = False
        elif sig in (_signal.SIGINT, _signal.SIGQUIT):
            self.alive = False
            self.cfg.worker_int(self)
            return True
        elif sig == _signal.SIGABRT:
            self.alive = False
            self.cfg.worker_abort(self)
            srv.close()
            _sys.exit(1)
        elif sig == _signal.SIGUSR1:
            self.log.reopen_files()
        else:
            self.log.debug("worker: SIGWINCH ignored.")
        return False

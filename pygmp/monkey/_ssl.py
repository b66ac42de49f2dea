"""``patch_ssl()``: ``ssl.SSLSocket`` over the patched socket.

The patched ``SSLSocket`` derives from the original ``ssl.SSLSocket`` and
from the patched ``socket.socket`` (so its plain-socket calls, ``connect``,
``accept`` and ``close`` are the patched ones).  OpenSSL works on the
non-blocking fd: the TLS calls (handshake, read, write, shutdown) raise
``SSLWantReadError``/``SSLWantWriteError`` underneath, and the goroutine parks
on the netpoller for that direction with the socket's timeout as the deadline,
then retries; with timeout 0 the want-errors reach the caller, as for a
non-blocking ``ssl`` socket.  ``SSLContext.sslsocket_class`` is pointed at it,
so ``wrap_socket`` on any socket (even one made before patching) gives one;
the name ``ssl.SSLSocket`` stays the original class (ssl.py's own
``super(SSLSocket, self)`` needs it), which ours derives from, so
``isinstance(s, ssl.SSLSocket)`` holds.
"""

import ssl as _sslmod

from . import _wait
from ._core import get_original, mark_patched, patch_item
from ._socket import socket as _PSocket

_OrigSSLSocket = get_original("ssl", "SSLSocket")
_WantRead = _sslmod.SSLWantReadError
_WantWrite = _sslmod.SSLWantWriteError
_READ, _WRITE = _wait.READ, _wait.WRITE
_monotonic = _wait.monotonic


def _retry(sock, fn, args, block=False):
    """Run a TLS call, waiting out want-read/want-write with the socket's timeout."""
    deadline = None
    first = True
    while True:
        try:
            return fn(*args)
        except (_WantRead, _WantWrite) as e:
            mode = _READ if isinstance(e, _WantRead) else _WRITE
            timeout = sock._pg_timeout
            if timeout == 0.0 and not block:
                raise
        if first:
            first = False
            if timeout is not None and timeout != 0.0:
                deadline = _monotonic() + timeout
        sock._pg_wait(mode, deadline)


class SSLSocket(_OrigSSLSocket, _PSocket):
    """``ssl.SSLSocket`` whose handshake, reads and writes park a goroutine
    on want-read/want-write."""

    def read(self, len=1024, buffer=None):
        return _retry(self, _OrigSSLSocket.read, (self, len, buffer))

    def write(self, data):
        return _retry(self, _OrigSSLSocket.write, (self, data))

    def send(self, data, flags=0):
        if self._sslobj is None:
            return _PSocket.send(self, data, flags)
        return _retry(self, _OrigSSLSocket.send, (self, data, flags))

    def do_handshake(self, block=False):
        self._check_connected()
        return _retry(self, self._sslobj.do_handshake, (), block)

    def unwrap(self):
        return _retry(self, _OrigSSLSocket.unwrap, (self,))


def patch_ssl():
    # Only the context's class: ssl.py's own code says super(SSLSocket, self)
    # with its module global, which must stay the original class.
    patch_item(_sslmod.SSLContext, "sslsocket_class", SSLSocket, name="ssl.SSLContext")
    mark_patched("ssl")

"""TLS over a pygmp.net conn, for pygmp.wsgi's ``ssl_context`` (and so the
gunicorn worker's ``--certfile``/``--keyfile``).

The OpenSSL state is an ``ssl.SSLObject`` over two memory BIOs: ciphertext
goes through the conn's own read/write, which park the goroutine on the
netpoller, so a handshake or a record never holds a worker thread.  One
goroutine owns a ``TLSConn`` (the WSGI connection's): OpenSSL's state is not
shared, so no lock.  ``close`` from another goroutine (the server's janitor,
a shutdown) closes the underlying conn, which wakes the owner's read or write
with ``ErrClosed`` as for a plain conn.

The handshake runs on the first read, inside the connection's goroutine,
while the connection counts as idle: a client that never finishes it is
closed by the server's janitor after the keep-alive timeout, as an idle
connection is.
"""

import ssl as _ssl

_READ = 65536


class TLSConn:
    """A server-side TLS conn with the subset of ``pygmp.net.Conn`` that
    pygmp.wsgi uses: read, write, close_write, close, the addresses."""

    __slots__ = ("_conn", "_in", "_out", "_obj", "_shook")

    def __init__(self, conn, context):
        self._conn = conn
        self._in = _ssl.MemoryBIO()
        self._out = _ssl.MemoryBIO()
        self._obj = context.wrap_bio(self._in, self._out, server_side=True)
        self._shook = False

    def _flush(self):
        data = self._out.read()
        if data:
            self._conn.write(data)

    def _fill(self):
        """More ciphertext from the peer; False at its EOF."""
        data = self._conn.read(_READ)
        if not data:
            self._in.write_eof()
            return False
        self._in.write(data)
        return True

    def _handshake(self):
        while True:
            try:
                self._obj.do_handshake()
                break
            except _ssl.SSLWantReadError:
                self._flush()
                if not self._fill():
                    raise ConnectionResetError("TLS handshake: the client closed the connection")
        self._flush()
        self._shook = True

    def read(self, n):
        """Up to ``n`` bytes of plaintext, ``b""`` at the peer's EOF (a
        close_notify or a plain close)."""
        if not self._shook:
            self._handshake()
        while True:
            try:
                return self._obj.read(n)
            except _ssl.SSLWantReadError:
                self._flush()           # a renegotiation or a key update may answer
                if not self._fill():
                    return b""
            except _ssl.SSLZeroReturnError:
                return b""
            except _ssl.SSLEOFError:
                return b""

    def write(self, data):
        if not self._shook:
            self._handshake()
        view = memoryview(data)
        while view:
            try:
                n = self._obj.write(view)
            except _ssl.SSLWantReadError:   # only while a renegotiation is under way
                self._flush()
                if not self._fill():
                    raise BrokenPipeError("TLS: the client closed the connection")
                continue
            view = view[n:]
            self._flush()
        return len(data)

    def close_write(self):
        try:
            if self._shook:
                self._obj.unwrap()          # close_notify
        except (_ssl.SSLError, ValueError):
            pass
        try:
            self._flush()
        except OSError:
            pass
        self._conn.close_write()

    def close(self):
        self._conn.close()

    def remote_addr(self):
        return self._conn.remote_addr()

    def local_addr(self):
        return self._conn.local_addr()

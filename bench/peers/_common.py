"""Shared bits of the benchmark peer servers (not pygmp): argument parsing,
the address, and the page the HTTP peers serve (the same bytes as
examples/http_server.py; bench/net.py checks that they match)."""

import argparse
import os
import sys

PAGE = (b"<!doctype html>\n<html><head><title>pygmp</title></head>\n"
        b"<body><h1>Hello from pygmp</h1>"
        b"<p>Served by a goroutine.</p></body></html>\n")

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "examples")


def parse_args(doc, uvloop=False):
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("address", nargs="?", default="127.0.0.1:0")
    if uvloop:
        ap.add_argument("--uvloop", action="store_true", help="run on uvloop")
    args = ap.parse_args()
    host, _, port = args.address.rpartition(":")
    args.host, args.port = host or "127.0.0.1", int(port)
    return args


def announce(sockname):
    print("listening on %s:%d" % (sockname[0], sockname[1]), flush=True)


def kv_store():
    """examples/kv_store.py (the Session and Store the pygmp server uses)."""
    if EXAMPLES not in sys.path:
        sys.path.insert(0, EXAMPLES)
    import kv_store
    return kv_store


class NoLock:
    """A single-threaded event loop needs no lock around the store."""

    def lock(self):
        pass

    def unlock(self):
        pass


def echo_session():
    """The echo protocol as a session: every chunk goes straight back."""
    return lambda data: (data, False)


def serve_gevent(doc, new_session):
    """A gevent StreamServer, a greenlet per connection, driving
    ``new_session()`` (a callable ``data -> (reply, close)``) per connection."""
    import socket
    from gevent.server import StreamServer

    def handle(sock, addr):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # as Go, asyncio, uvloop
        process = new_session()
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                out, close = process(data)
                if out:
                    sock.sendall(out)
                if close:
                    return
        except OSError:
            pass
        finally:
            sock.close()

    args = parse_args(doc)
    srv = StreamServer((args.host, args.port), handle, backlog=4096)
    srv.start()
    announce(srv.address)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        srv.stop(timeout=0)


def serve_asyncio(doc, new_session):
    """asyncio (``--uvloop``: uvloop) with a Protocol per connection, asyncio's
    cheapest path, driving ``new_session()`` as serve_gevent does."""
    import asyncio

    class Proto(asyncio.Protocol):
        def connection_made(self, transport):
            self.t = transport
            self.process = new_session()

        def data_received(self, data):
            out, close = self.process(data)
            if out:
                self.t.write(out)
            if close:
                self.t.close()

    async def serve(args):
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(Proto, args.host, args.port, backlog=4096)
        announce(srv.sockets[0].getsockname())
        async with srv:
            await srv.serve_forever()

    args = parse_args(doc, uvloop=True)
    if args.uvloop:
        import uvloop
        uvloop.install()
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass

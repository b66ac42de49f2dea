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

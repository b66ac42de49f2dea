"""A TCP echo server: one goroutine per connection.

    python examples/echo_server.py [--gomaxprocs N] [ADDRESS]

ADDRESS is HOST:PORT (default 127.0.0.1:7000; port 0 picks a free one).  The
first line on stdout is ``listening on HOST:PORT``.  Ctrl-C (SIGINT) or
SIGTERM closes the listener and exits with status 0.
"""

import sys

from _serve import parser, serve

LOAD = """
Try it:
  python3 -c "import socket; s = socket.create_connection(('127.0.0.1', 7000)); s.sendall(b'hi'); print(s.recv(9))"
Load it with the C echo client of the benchmarks (64-byte round trips):
  cc -O2 -o /tmp/echo_client bench/echo_client.c
  /tmp/echo_client load 127.0.0.1 7000 100 5   # 100 connections, 5 seconds
"""


def handle(conn):
    """Echo everything back until the peer closes."""
    while True:
        data = conn.read(65536)
        if not data:
            return
        conn.write(data)


def main(argv=None):
    args = parser(__doc__, "127.0.0.1:7000", LOAD).parse_args(argv)
    return serve("echo_server", args, handle)


if __name__ == "__main__":
    sys.exit(main())

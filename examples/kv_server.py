"""A Redis-protocol (RESP2) key-value server: one goroutine per connection.

    python examples/kv_server.py [--gomaxprocs N] [ADDRESS]

Commands: PING, ECHO, GET, SET (EX/PX/NX/XX/KEEPTTL), DEL, EXISTS, INCR,
INCRBY, DECR, DECRBY, MGET, MSET, DBSIZE, FLUSHALL, HELLO 2, QUIT and a stub
CONFIG GET (for redis-benchmark).  Every complete command in a read is
answered and the replies go out in one write (pipelining).  The parser, the
store and the command set live in ``kv_store.py`` beside this file (no pygmp
there, so the benchmark's gevent and asyncio peers share them).  An unknown
command gets an error reply; malformed input gets ``-ERR Protocol error:
...`` and the connection is closed, with Redis's limits: at most 1,048,576
arguments, 512 MB per argument, 64 KiB per inline command or header line.

The dict is shared by every goroutine on every P: one ``pygmp.sync.Mutex``
guards it, taken once per batch of pipelined commands (parsing happens
outside it).  Expiry (EX/PX) is checked lazily on access against the
monotonic clock.

ADDRESS is HOST:PORT (default 127.0.0.1:6380; port 0 picks a free one).  The
first line on stdout is ``listening on HOST:PORT``.  Ctrl-C (SIGINT) or
SIGTERM closes the listener and exits with status 0.
"""

import sys

from pygmp.sync import Mutex

from _serve import parser, serve
from kv_store import Session, Store

LOAD = """
Try it (apt-get install redis-tools):
  redis-cli -p 6380 set greeting hello
  redis-cli -p 6380 get greeting
Load it with redis-benchmark:
  redis-benchmark -p 6380 -t ping,set,get -c 50 -n 200000 -q
  redis-benchmark -p 6380 -t ping,set,get -c 50 -n 200000 -q -P 16   # pipelined
"""


def handle(conn, st):
    sess = Session(st)
    while True:
        data = conn.read(65536)
        if not data:
            return
        out, close = sess.process(data)     # takes st.mu around the commands
        if out:
            conn.write(out)
        if close:
            return


def main(argv=None):
    args = parser(__doc__, "127.0.0.1:6380", LOAD).parse_args(argv)
    return serve("kv_server", args, handle, Store(Mutex()))


if __name__ == "__main__":
    sys.exit(main())

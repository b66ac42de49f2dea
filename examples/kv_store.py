"""The key space and the RESP2 command set of examples/kv_server.py, free of
pygmp so that the benchmark's gevent and asyncio peers (bench/peers/) run the
very same code.

``Store`` holds the data (the caller supplies its lock); ``Session`` is one
connection's protocol state: ``process(data)`` parses every complete command
with ``hiredis.Reader``, runs it and returns all the replies as one bytes
object (pipelining: one write per read).  Inline commands (a plain
``PING\r\n`` line, as redis-benchmark's PING_INLINE sends) are split on
whitespace when they start at a command boundary; an inline command that
follows a RESP command in the same read is a protocol error here (real Redis
accepts that mix; no client we know of sends it).  Expiry (EX/PX) is checked
lazily on access against the monotonic clock.
"""

import re
import time

import hiredis

_monotonic = time.monotonic
_INT_RE = re.compile(rb"-?(0|[1-9][0-9]*)")
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1

OK = b"+OK\r\n"
NIL = b"$-1\r\n"
PONG = b"+PONG\r\n"
E_SYNTAX = b"-ERR syntax error\r\n"
E_NOTINT = b"-ERR value is not an integer or out of range\r\n"


def bulk(v):
    return b"$%d\r\n%s\r\n" % (len(v), v)


def integer(n):
    return b":%d\r\n" % n


def err_arity(name):
    return b"-ERR wrong number of arguments for '%s' command\r\n" % name.lower()


def parse_int(b):
    if _INT_RE.fullmatch(b) is None:
        return None
    n = int(b)
    return n if _I64_MIN <= n <= _I64_MAX else None


class Store:
    """The key space: ``data`` maps key -> value (bytes); ``expires`` maps a
    key that has a TTL to its monotonic deadline.  Callers hold ``mu``."""

    def __init__(self, lock):
        self.mu = lock          # guards data and expires; held by the caller
        self.data = {}
        self.expires = {}

    def _expired(self, k, now):
        dl = self.expires.get(k)
        if dl is not None and dl <= now:
            del self.expires[k]
            self.data.pop(k, None)
            return True
        return False

    def get(self, k, now):
        if self.expires and self._expired(k, now):
            return None
        return self.data.get(k)

    def set(self, k, v, deadline=None, keepttl=False):
        self.data[k] = v
        if deadline is not None:
            self.expires[k] = deadline
        elif not keepttl:
            self.expires.pop(k, None)

    def delete(self, k, now):
        if self.expires and self._expired(k, now):
            return False
        if k in self.data:
            del self.data[k]
            self.expires.pop(k, None)
            return True
        return False

    def size(self, now):
        for k in [k for k, dl in self.expires.items() if dl <= now]:
            del self.expires[k]
            self.data.pop(k, None)
        return len(self.data)

    def flush(self):
        self.data.clear()
        self.expires.clear()


# -- commands: f(store, args, now) -> reply bytes; args excludes the name ----

def c_ping(st, a, now):
    if not a:
        return PONG
    if len(a) == 1:
        return bulk(a[0])
    return err_arity(b"PING")


def c_echo(st, a, now):
    return bulk(a[0]) if len(a) == 1 else err_arity(b"ECHO")


def c_get(st, a, now):
    if len(a) != 1:
        return err_arity(b"GET")
    v = st.get(a[0], now)
    return NIL if v is None else bulk(v)


def c_set(st, a, now):
    if len(a) < 2:
        return err_arity(b"SET")
    key, val = a[0], a[1]
    deadline = None
    nx = xx = keepttl = False
    i = 2
    while i < len(a):
        opt = a[i].upper()
        if opt in (b"EX", b"PX") and i + 1 < len(a) and deadline is None and not keepttl:
            n = parse_int(a[i + 1])
            if n is None:
                return E_NOTINT
            if n <= 0:
                return b"-ERR invalid expire time in 'set' command\r\n"
            deadline = now + (n if opt == b"EX" else n / 1000.0)
            i += 2
        elif opt == b"NX" and not xx:
            nx = True
            i += 1
        elif opt == b"XX" and not nx:
            xx = True
            i += 1
        elif opt == b"KEEPTTL" and deadline is None:
            keepttl = True
            i += 1
        else:
            return E_SYNTAX
    if nx or xx:
        exists = st.get(key, now) is not None
        if (nx and exists) or (xx and not exists):
            return NIL
    st.set(key, val, deadline, keepttl)
    return OK


def c_del(st, a, now):
    if not a:
        return err_arity(b"DEL")
    return integer(sum(1 for k in a if st.delete(k, now)))


def c_exists(st, a, now):
    if not a:
        return err_arity(b"EXISTS")
    return integer(sum(1 for k in a if st.get(k, now) is not None))


def _incrby(st, k, by, now):
    v = st.get(k, now)
    n = 0 if v is None else parse_int(v)
    if n is None:
        return E_NOTINT
    n += by
    if not _I64_MIN <= n <= _I64_MAX:
        return b"-ERR increment or decrement would overflow\r\n"
    st.set(k, b"%d" % n, keepttl=True)     # keeps the TTL, as Redis
    return integer(n)


def c_incr(st, a, now):
    return _incrby(st, a[0], 1, now) if len(a) == 1 else err_arity(b"INCR")


def c_decr(st, a, now):
    return _incrby(st, a[0], -1, now) if len(a) == 1 else err_arity(b"DECR")


def c_incrby(st, a, now):
    if len(a) != 2:
        return err_arity(b"INCRBY")
    by = parse_int(a[1])
    return E_NOTINT if by is None else _incrby(st, a[0], by, now)


def c_decrby(st, a, now):
    if len(a) != 2:
        return err_arity(b"DECRBY")
    by = parse_int(a[1])
    return E_NOTINT if by is None else _incrby(st, a[0], -by, now)


def c_mget(st, a, now):
    if not a:
        return err_arity(b"MGET")
    parts = [b"*%d\r\n" % len(a)]
    for k in a:
        v = st.get(k, now)
        parts.append(NIL if v is None else bulk(v))
    return b"".join(parts)


def c_mset(st, a, now):
    if not a or len(a) % 2:
        return err_arity(b"MSET")
    for i in range(0, len(a), 2):
        st.set(a[i], a[i + 1])
    return OK


def c_dbsize(st, a, now):
    return integer(st.size(now)) if not a else err_arity(b"DBSIZE")


def c_flushall(st, a, now):
    if len(a) > 1 or (a and a[0].upper() not in (b"SYNC", b"ASYNC")):
        return E_SYNTAX
    st.flush()
    return OK


_CONFIG = {b"save": b"", b"appendonly": b"no"}


def c_config(st, a, now):
    if len(a) == 2 and a[0].upper() == b"GET":
        v = _CONFIG.get(a[1].lower())      # what redis-benchmark asks for
        return b"*0\r\n" if v is None else b"*2\r\n" + bulk(a[1]) + bulk(v)
    return b"-ERR unsupported CONFIG subcommand\r\n"


def c_hello(st, a, now):
    """RESP2 only: ``HELLO`` / ``HELLO 2`` describe the server; asking for
    RESP3 gets -NOPROTO, as Redis answers an unsupported version."""
    if a and a[0] != b"2":
        if parse_int(a[0]) is None:
            return b"-ERR Protocol version is not an integer or out of range\r\n"
        return b"-NOPROTO sorry, this protocol version is not supported\r\n"
    fields = [(b"server", bulk(b"pygmp-kv")), (b"version", bulk(b"0.1.0")),
              (b"proto", integer(2)), (b"mode", bulk(b"standalone")),
              (b"role", bulk(b"master")), (b"modules", b"*0\r\n")]
    return b"*%d\r\n" % (2 * len(fields)) + b"".join(bulk(k) + v for k, v in fields)


COMMANDS = {
    b"PING": c_ping, b"ECHO": c_echo, b"GET": c_get, b"SET": c_set,
    b"DEL": c_del, b"EXISTS": c_exists, b"INCR": c_incr,
    b"INCRBY": c_incrby, b"DECR": c_decr, b"DECRBY": c_decrby, b"MGET": c_mget,
    b"MSET": c_mset, b"DBSIZE": c_dbsize, b"FLUSHALL": c_flushall,
    b"CONFIG": c_config, b"HELLO": c_hello,
}


def unknown(cmd):
    name = cmd[0].decode("utf-8", "replace")
    args = " ".join("'%s'" % x.decode("utf-8", "replace")[:128] for x in cmd[1:])
    msg = "-ERR unknown command '%s', with args beginning with: %s" % (name[:128], args)
    return msg.replace("\r", " ").replace("\n", " ").encode() + b"\r\n"


def proto_error(msg):
    return ("-ERR Protocol error: %s\r\n" % msg).replace("\n", " ").encode()


MAX_INLINE = 64 * 1024


class Session:
    """One connection's protocol state.  ``process(data)`` parses every
    complete command in ``data`` (plus what earlier calls left over), runs
    them on the store and returns ``(replies, close)``: the replies as one
    bytes object, and whether the connection must be closed after sending
    them.  The caller holds the store's lock around the call.  (The
    benchmark's gevent and asyncio peers reuse this class.)"""

    __slots__ = ("st", "reader", "in_resp", "pend")

    def __init__(self, st):
        self.st = st
        self.reader = hiredis.Reader()
        self.in_resp = False    # the reader holds part of a command
        self.pend = b""         # inline bytes waiting for their newline

    def process(self, data):
        st = self.st
        reader = self.reader
        gets = reader.gets
        if self.pend:
            data, self.pend = self.pend + data, b""
        out = []
        now = _monotonic()
        while True:
            try:
                cmd = gets()
            except hiredis.ProtocolError as e:
                out.append(proto_error(e))
                return b"".join(out), True
            if cmd is False:
                if data is None:
                    break                           # need more input
                if self.in_resp or data[:1] == b"*":
                    reader.feed(data)               # RESP: hiredis parses it
                    data = None
                    self.in_resp = True
                    continue
                # An inline command ("PING\r\n", as redis-cli and
                # redis-benchmark's PING_INLINE send), at a command boundary:
                # one line split on whitespace.
                nl = data.find(b"\n")
                if nl < 0:
                    if len(data) > MAX_INLINE:
                        out.append(proto_error("too big inline request"))
                        return b"".join(out), True
                    self.pend = data
                    break
                cmd = data[:nl].split()
                data = data[nl + 1:] or None
                if not cmd:
                    continue
            else:
                self.in_resp = reader.has_data()
                if type(cmd) is not list or not cmd or \
                        not all(type(x) is bytes for x in cmd):
                    out.append(proto_error("expected an array of bulk strings"))
                    return b"".join(out), True
            name = cmd[0].upper()
            f = COMMANDS.get(name)
            if f is not None:
                out.append(f(st, cmd[1:], now))
            elif name == b"QUIT":
                out.append(OK)
                return b"".join(out), True
            else:
                out.append(unknown(cmd))
        return b"".join(out), False

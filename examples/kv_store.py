"""The key space and the RESP2 command set of examples/kv_server.py, free of
pygmp so that the benchmark's gevent and asyncio peers (bench/peers/) run the
very same code.

``Store`` holds the data (the caller supplies its lock); ``Session`` is one
connection's protocol state: ``process(data)`` parses every complete command
(Redis's own parser, rewritten in Python, with Redis's limits), runs them
under the store's lock and returns all the replies as one bytes object
(pipelining: one write per read).  Inline commands (a plain ``PING\r\n``
line, as redis-cli and redis-benchmark's PING_INLINE send) are split on
whitespace.  Malformed input gets ``-ERR Protocol error: ...`` and the
connection is closed, as Redis does.  Expiry (EX/PX) is checked lazily on
access against the monotonic clock.
"""

import re
import time


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
    msg = str(msg).replace("\r", " ").replace("\n", " ")
    return ("-ERR Protocol error: %s\r\n" % msg).encode("utf-8", "replace")


# Redis's limits (networking.c): PROTO_INLINE_MAX_SIZE, the multibulk count a
# client may announce, and proto-max-bulk-len.
MAX_INLINE = 64 * 1024
MAX_MULTIBULK = 1024 * 1024
MAX_BULK = 512 * 1024 * 1024


# Canonical headers for the fast path: ``*1`` .. ``*64``, ``$0`` .. ``$1023``.
_SHORT = 1024
_COUNT = {b"*%d" % i: i for i in range(1, 65)}
_BULK_HDR = tuple(b"$%d" % i for i in range(_SHORT))


class ProtocolError(Exception):
    """Malformed input: the reply is ``-ERR Protocol error: <message>`` and
    the connection is closed (as Redis does)."""


def _length(line, what):
    """The integer of a ``*N`` / ``$N`` header (``line`` holds the digits).
    Strict, as Redis's string2ll: optional '-', digits, no spaces, no '+'."""
    if 0 < len(line) <= 20 and (line.isdigit() or (line[:1] == b"-" and line[1:].isdigit())):
        return int(line)
    raise ProtocolError("invalid %s length" % what)


class Session:
    """One connection's protocol state.  ``process(data)`` parses every
    complete command in ``data`` (plus what earlier calls left over), runs
    them on the store under its lock and returns ``(replies, close)``: the
    replies as one bytes object, and whether the connection must be closed
    after sending them.  (The benchmark's gevent and asyncio peers reuse this
    class.)

    The parser is Redis's (``processMultibulkBuffer`` and
    ``processInlineBuffer``), with Redis's limits and error messages.  It keeps
    its place between calls, so input is never scanned twice: a half-received
    command keeps the arguments parsed so far (``args``, ``argc``) and only
    its unfinished piece is carried over (``rest``); a header line still
    waiting for its newline resumes the search where the last one stopped
    (``scan``); a bulk string still arriving is not looked at until all its
    announced bytes are there (``need``)."""

    __slots__ = ("st", "rest", "scan", "need", "argc", "args", "bulk")

    def __init__(self, st):
        self.st = st
        self.rest = bytearray()  # unparsed bytes carried over to the next call
        self.scan = 0            # rest[:scan] holds no end of line
        self.need = 0            # rest cannot parse before it holds this many bytes
        self.argc = 0            # arguments still to come in the current multibulk
        self.args = None         # arguments parsed so far (None: between commands)
        self.bulk = -1           # announced length of the next bulk string, once read

    def process(self, data):
        if self.rest or self.args is not None:
            return self._resume(data)
        cmds = []
        pos = self._fast(data, cmds)
        if pos == len(data):
            return self._run(cmds, None)
        return self._parse(data, pos, cmds)

    def _resume(self, data):
        """``data`` continues a command that an earlier call left unfinished."""
        rest = self.rest
        if rest:
            rest += data
            n = len(rest)
            if n < self.need:
                return b"", False                   # a bulk string still arriving
            if not self.need and rest.find(
                    b"\n" if self.args is None and rest[:1] != b"*" else b"\r\n",
                    max(self.scan - 1, 0)) < 0:
                self.scan = n                       # still no end of line
                if n > MAX_INLINE:
                    return proto_error(self._too_big()), True
                return b"", False
            data = bytes(rest)
            rest.clear()
            self.scan = self.need = 0
        return self._parse(data, 0, [])

    def _too_big(self):
        if self.args is None:
            return "too big %s" % ("mbulk count string" if self.rest[:1] == b"*"
                                   else "inline request")
        return "too big bulk count string"

    def _parse(self, data, pos, cmds):
        """Parse ``data[pos:]`` with ``_slow``, keep what is left of an
        unfinished command for the next call, run what is complete."""
        try:
            pos = self._slow(data, pos, cmds)
            err = None
        except ProtocolError as e:
            err = proto_error(e)
            pos = len(data)
        if pos < len(data):
            self.rest += data[pos:]
            self.scan = len(data) - pos
            if self.bulk >= 0:
                self.need = self.bulk + 2
        return self._run(cmds, err)

    @staticmethod
    def _fast(b, cmds):
        """The common case, at C speed: split the input on CRLF once and take
        every leading command whose arguments hold no CRLF, checking each
        ``$N`` header against its argument's length.  Returns where it
        stopped: the first command it does not vouch for (binary data, a long
        argument, an unfinished command, malformed input) goes to ``_slow``,
        and so does the rest of ``b``."""
        parts = b.split(b"\r\n")
        last = len(parts) - 1           # parts[last] has no CRLF after it
        i = 0
        count = _COUNT.get
        hdr = _BULK_HDR.__getitem__
        append = cmds.append
        while i < last:
            p = parts[i]
            c = count(p)
            if c is None:
                if p[:1] == b"*" or b"\n" in p or len(p) > MAX_INLINE:
                    break
                argv = p.split()        # an inline command
                if argv:
                    append(argv)
                i += 1
                continue
            end = i + 1 + 2 * c
            if end > last:
                break
            args = parts[i + 2:end:2]
            try:
                if list(map(hdr, map(len, args))) != parts[i + 1:end:2]:
                    break
            except IndexError:          # an argument of _SHORT bytes or more
                break
            append(args)
            i = end
        if i == last and not parts[last]:
            return len(b)
        return sum(map(len, parts[:i])) + 2 * i

    def _slow(self, b, pos, cmds):
        """Redis's parser, one field at a time from ``pos``, resuming the
        command that the last call left unfinished."""
        n = len(b)
        find = b.find
        while True:
            args = self.args
            if args is None:                        # at a command boundary
                if pos >= n:
                    return pos
                if b[pos] != 42:                    # not '*': an inline command
                    nl = find(b"\n", pos, pos + MAX_INLINE + 1)
                    if nl < 0:
                        if n - pos > MAX_INLINE:
                            raise ProtocolError("too big inline request")
                        return pos
                    line = b[pos:nl]
                    pos = nl + 1
                    argv = line.split()
                    if argv:
                        cmds.append(argv)
                    continue
                nl = find(b"\r\n", pos, pos + MAX_INLINE + 2)
                if nl < 0:
                    if n - pos > MAX_INLINE:
                        raise ProtocolError("too big mbulk count string")
                    return pos
                count = _length(b[pos + 1:nl], "multibulk")
                if count > MAX_MULTIBULK:
                    raise ProtocolError("invalid multibulk length")
                pos = nl + 2
                if count <= 0:
                    continue                        # "*0" / "*-1": nothing to run
                self.args = args = []
                self.argc = count
            append = args.append
            argc = self.argc
            bulk = self.bulk
            while argc:
                if bulk < 0:                        # the "$N" header
                    if pos >= n:
                        break
                    if b[pos] != 36:                # '$'
                        raise ProtocolError("expected '$', got '%s'" % chr(b[pos]))
                    nl = find(b"\r\n", pos, pos + MAX_INLINE + 2)
                    if nl < 0:
                        if n - pos > MAX_INLINE:
                            raise ProtocolError("too big bulk count string")
                        break
                    bulk = _length(b[pos + 1:nl], "bulk")
                    if bulk < 0 or bulk > MAX_BULK:
                        raise ProtocolError("invalid bulk length")
                    pos = nl + 2
                end = pos + bulk
                if end + 2 > n:
                    break
                if b[end:end + 2] != b"\r\n":
                    raise ProtocolError("expected CRLF after a bulk string")
                append(b[pos:end])
                pos = end + 2
                bulk = -1
                argc -= 1
            self.argc = argc
            self.bulk = bulk
            if argc:
                return pos
            cmds.append(args)
            self.args = None

    def _run(self, cmds, err):
        """Run the parsed commands on the store, under its lock (taken once);
        then the protocol error ``err``, if any, which closes the connection."""
        out = []
        close = False
        if cmds:
            st = self.st
            now = _monotonic()
            mu = st.mu
            mu.lock()
            try:
                for cmd in cmds:
                    name = cmd[0].upper()
                    f = COMMANDS.get(name)
                    if f is not None:
                        out.append(f(st, cmd[1:], now))
                    elif name == b"QUIT":
                        out.append(OK)
                        close = True
                        break
                    else:
                        out.append(unknown(cmd))
            finally:
                mu.unlock()
        if err is not None and not close:
            out.append(err)
            close = True
        return b"".join(out), close

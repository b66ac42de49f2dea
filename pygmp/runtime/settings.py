"""Every setting pygmp reads from the environment, declared once (docs/design.md §3
"Settings: one table"; Go's GODEBUG table and gevent's _config are the models).

Each environment variable and each ``GODEBUG`` key has one entry below: name,
type, default, one-line meaning, and means one thing only.  The environment is
parsed once, when the runtime starts (``load()``), never read elsewhere.  As in
Go, unknown ``GODEBUG`` keys are ignored; a bad value gets one warning on
stderr and the default.

Install-time variables (read by ``csrc/netpoll_build.py`` while the package is
being built, before it can be imported) are listed in ``BUILD`` for the record.
"""

import os
import sys


class Var:
    """One setting: ``kind`` is ``int`` (with ``minimum``), ``bool`` (0/1) or
    ``choice`` (one of ``choices``)."""
    __slots__ = ("name", "kind", "default", "meaning", "minimum", "choices")

    def __init__(self, name, kind, default, meaning, minimum=None, choices=()):
        self.name = name
        self.kind = kind
        self.default = default
        self.meaning = meaning
        self.minimum = minimum
        self.choices = choices

    def parse(self, text, where):
        """The value of ``text``, or the default with a warning naming ``where``."""
        text = text.strip()
        try:
            if self.kind == "bool":
                if text in ("0", "1"):
                    return text == "1"
            elif self.kind == "int":
                v = int(text)
                if self.minimum is None or v >= self.minimum:
                    return v
            elif self.kind == "choice":
                if text in self.choices:
                    return text
        except ValueError:
            pass
        want = {"bool": "0 or 1",
                "int": "an integer" + (" >= %d" % self.minimum if self.minimum is not None else ""),
                "choice": " or ".join(self.choices)}[self.kind]
        _warn("pygmp: ignoring %s=%r: want %s; using the default (%r)"
              % (where, text, want, self.default))
        return self.default


# Environment variables read when the runtime starts.
ENV = (
    Var("GOMAXPROCS", "int", None,
        "number of Ps (worker threads running goroutines); default: num_cpu()", minimum=1),
    Var("PYGMP_TIMESLICE_US", "int", 10000,
        "sysmon preempts a goroutine that ran this many microseconds without "
        "yielding (Go: 10 ms; 0: at every sysmon round, for stress tests)", minimum=0),
    Var("PYGMP_STALL_MS", "int", 100,
        "a goroutine holding its worker this many ms where it cannot be preempted "
        "is a stall (counted; reported with GODEBUG=schedstall=1)", minimum=1),
    Var("PYGMP_SYSCALL_KEEPALIVE_MS", "int", 10000,
        "an idle syscall thread (the blocking-call handoff pool) exits after this "
        "many ms without work", minimum=1),
)

# GODEBUG=key=value,key=value (Go's runtime keys; others are ignored, as Go does).
GODEBUG = (
    Var("schedtrace", "int", 0,
        "print Go's SCHED line on stderr every N ms (0: off)", minimum=0),
    Var("scheddetail", "bool", False,
        "with schedtrace: also print the per-P, per-M and per-G lines"),
    Var("asyncpreemptoff", "bool", False,
        "1: no asynchronous preemption of goroutines that never enter the runtime"),
    Var("schedstall", "bool", False,
        "1: report once on stderr a goroutine holding its worker thread > 100 ms"),
)

# Read by csrc/netpoll_build.py at install time only.
BUILD = (
    Var("PYGMP_BUILD_NETPOLL", "choice", "", "force the netpoller backend at build time",
        choices=("epoll", "kqueue")),
    Var("PYGMP_LIBKQUEUE_PREFIX", "choice", "/usr",
        "where libkqueue is installed, for PYGMP_BUILD_NETPOLL=kqueue on Linux"),
)


def _warn(msg):
    try:
        sys.stderr.write(msg + "\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass


class Settings:
    """The parsed settings: one attribute per variable (``GOMAXPROCS``, ...)
    and per GODEBUG key (``schedtrace``, ...)."""

    def __init__(self, environ):
        for v in ENV:
            text = environ.get(v.name, "")
            setattr(self, v.name, v.parse(text, v.name) if text.strip() else v.default)
        for v in GODEBUG:
            setattr(self, v.name, v.default)
        # left to right, a later setting of a key overriding an earlier one (Go)
        for item in environ.get("GODEBUG", "").split(","):
            key, eq, text = item.strip().partition("=")
            key = key.strip()
            var = next((v for v in GODEBUG if v.name == key), None)
            if var is None or not eq:
                continue                  # unknown keys ignored, as Go does
            setattr(self, key, var.parse(text, "GODEBUG " + key))

    def __repr__(self):
        names = [v.name for v in ENV + GODEBUG]
        return "Settings(%s)" % ", ".join("%s=%r" % (n, getattr(self, n)) for n in names)


def load(environ=None):
    """Parse the environment (``os.environ`` by default) into a ``Settings``."""
    return Settings(os.environ if environ is None else environ)


def table():
    """The documentation table: ``(name, kind, default, meaning)`` rows, GODEBUG
    keys as ``GODEBUG=key``."""
    rows = [(v.name, v.kind, v.default, v.meaning) for v in ENV]
    rows += [("GODEBUG=" + v.name, v.kind, v.default, v.meaning) for v in GODEBUG]
    return rows

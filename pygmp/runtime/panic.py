"""Panics and fatal errors (Go's panic.go): how a failing goroutine ends the process."""

import os
import sys
import threading
import traceback

from .stack import creator_text, format_all


class PanicError(Exception):
    """A Go-style runtime panic raised to the caller (e.g. "send on closed channel")."""


class Goexit(BaseException):
    """Raised by ``goexit()`` to unwind the calling goroutine, running its finally blocks."""


# One fatal exit at a time: the first goroutine to panic prints and exits; any
# other thread that gets here blocks until the process is gone.
_dying = threading.Lock()


def _flush():
    for f in (sys.stdout, sys.stderr):
        try:
            if f is not None:
                f.flush()
        except Exception:
            pass


def _write(text):
    try:
        sys.stderr.write(text)
    except Exception:
        try:
            os.write(2, text.encode("utf-8", "replace"))
        except OSError:
            pass


def fatalpanic(g, exc):
    """An exception escaped goroutine ``g``: print Go's panic report and exit 2."""
    _dying.acquire()
    try:
        text = str(exc)
        msg = type(exc).__name__ + (": " + text if text else "")
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        text = "panic: %s\n\ngoroutine %d [running]:\n%s%s\n" % (
            msg, g.goid, tb, creator_text(g))
        _flush()
        _write(text)
    finally:
        _flush()
        os._exit(2)


def exit_from_goroutine(e):
    """``SystemExit`` escaped a goroutine: exit at once with its code, as os.Exit."""
    _dying.acquire()
    code = e.code
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code & 0xFF if code >= 0 else code & 0xFF
    else:
        _flush()
        _write("%s\n" % (code,))
        status = 1
    _flush()
    os._exit(status)


def fatal(msg, sched=None):
    """Go's ``fatal error: msg``: print every goroutine's stack (of ``sched``,
    when given) and exit 2."""
    _dying.acquire()
    try:
        text = "fatal error: %s\n" % msg
        if sched is not None:
            try:
                text += "\n" + format_all(sched)
            except Exception as e:   # a broken dump must not hide the fatal error
                text += "\n(goroutine dump failed: %r)\n" % (e,)
        _flush()
        _write(text)
    finally:
        _flush()
        os._exit(2)

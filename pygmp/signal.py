"""pygmp.signal: incoming OS signals as channel values (Go's os/signal).

    import signal
    from pygmp import chan, signal as gsignal
    c = chan(1)
    gsignal.notify(c, signal.SIGINT, signal.SIGTERM)
    sig = c.recv()          # signal.SIGINT: Ctrl-C no longer raises KeyboardInterrupt
    gsignal.stop(c)

``notify(ch, *signums)`` relays each listed signal to ``ch``; with no signum,
every catchable asynchronous signal (all but SIGKILL, SIGSTOP and the
synchronous SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP, SIGSYS), as
Go's ``Notify(c)``.  Calling it again for the same channel adds signals.  The
value sent is a ``signal.Signals`` member (an ``int`` subclass, so
``v == signal.SIGUSR1`` and ``int(v)`` work), or a plain ``int`` for signals
without a name (real-time signals).  The send never blocks: if ``ch`` has no
room (no buffer space and no receiver waiting), that delivery is dropped, as in
Go, so use a buffered channel.  ``stop(ch)`` ends every relay to ``ch``; when it
returns no further value is sent to ``ch``.  When the last channel for a signal
stops, the previous handler comes back (SIGINT raises KeyboardInterrupt again).

How it works.  Python runs signal handlers only in the main thread, between
bytecodes, and lets only the main thread install them.  pygmp's handler does
nothing but put the signal number on a reentrant queue; a runtime relay thread
(marked ``_pygmp_runtime``) takes it from there and does the non-blocking
channel sends, so no runtime lock is ever taken inside a handler.  The main
goroutine parked in pygmp waits in an interruptible lock, so delivery does not
wait for it to wake up; if the main thread is stuck in C code that retries
``EINTR`` without running handlers, delivery waits until it returns to Python.

Threads.  The handler for a signal is installed by the first ``notify`` for it,
which must then run on the main thread (the main goroutine): from any other
thread ``notify`` raises ``RuntimeError`` saying so.  Once installed (by an
earlier ``notify`` on the main thread that is still subscribed), any goroutine
may subscribe more channels to it.  ``stop`` from another thread cannot
reinstall the previous handler; pygmp's handler stays and forwards the signal
to the previous disposition (it restores it and re-raises the signal on the
main thread when one arrives), so behaviour is the same either way.

Deadlock detection: every subscribed channel counts in ``Sched.nsignal``, so
``fatal error: all goroutines are asleep - deadlock!`` is not reported while a
signal could still wake someone.  Subscriptions do not survive ``fork()``: the
child starts with none (a signal arriving there restores the previous handler).
"""

import os as _os
import queue as _queue
import signal as _signal
import threading as _threading

from .runtime import proc as _proc
from .runtime.chan import Chan as _Chan
from .runtime.panic import PanicError as _PanicError

__all__ = ["notify", "stop"]

_UNCATCHABLE = {getattr(_signal, n) for n in ("SIGKILL", "SIGSTOP") if hasattr(_signal, n)}
_SYNCHRONOUS = {getattr(_signal, n) for n in
                ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGABRT", "SIGTRAP", "SIGSYS")
                if hasattr(_signal, n)}

# State.  ``_subs`` (signum -> tuple of channels) is copy-on-write: writers build
# a new dict under ``_lock`` and rebind it; the handler and the relay read the
# current one without a lock.  ``_prev`` (signum -> the disposition we
# replaced) and ``_chans`` (id(ch) -> (ch, set of signums)) are guarded by _lock.
_lock = _threading.Lock()
_deliver = _threading.Lock()     # held by the relay around each delivery (stop waits on it)
_subs = {}
_prev = {}
_chans = {}
_SimpleQueue = _queue.SimpleQueue   # bound at import: pygmp.monkey may replace these
_Thread = _threading.Thread
_Lock0 = _threading.Lock
_q = _SimpleQueue()       # put() is reentrant: safe in a signal handler
_relay = None                   # the relay thread, started on first use

# counters (pygmp.metrics): signals that reached the handler / values sent / dropped
stats = {"received": 0, "delivered": 0, "dropped": 0}


def _value(signum):
    try:
        return _signal.Signals(signum)
    except ValueError:
        return int(signum)


def _handler(signum, frame):
    # main thread, between bytecodes: no lock may be taken here
    if _subs.get(signum):
        _q.put(signum)
        return
    _forward(signum, frame)


def _forward(signum, frame):
    """No subscriber left (stopped from another thread, or after fork): give
    the signal to the previous disposition, restoring it."""
    prev = _prev.get(signum, _signal.SIG_DFL)
    _signal.signal(signum, prev)
    if _subs.get(signum):        # subscribed again meanwhile: keep ours
        _signal.signal(signum, _handler)
        _q.put(signum)
        return
    if callable(prev):
        prev(signum, frame)
    elif prev == _signal.SIG_DFL:
        _signal.raise_signal(signum)


def _relay_loop(q):
    while True:
        signum = q.get()
        if signum is None:
            return
        stats["received"] += 1
        with _deliver:
            chans = _subs.get(signum, ())
            if chans:
                v = _value(signum)
                for ch in chans:
                    try:
                        sent = ch._try_send(v)
                    except Exception:   # noqa: BLE001 - never let the relay die
                        sent = False
                    stats["delivered" if sent else "dropped"] += 1


def _start_relay():
    global _relay
    if _relay is not None and _relay.is_alive():
        return
    t = _Thread(target=_relay_loop, args=(_q,), name="pygmp-signal", daemon=True)
    t._pygmp_runtime = True
    t.start()
    _relay = t
    s = _proc._sched or _proc.start()
    with s.lock:
        s.runtime_idents.add(t.ident)


def _check_signum(signum):
    if isinstance(signum, bool) or not isinstance(signum, int):
        raise TypeError("signal.notify: signal must be an int, not %s" % type(signum).__name__)
    if signum not in _signal.valid_signals() or signum in _UNCATCHABLE:
        raise ValueError("signal.notify: signal %r cannot be caught" % (signum,))
    return int(signum)


def _all_signals():
    out = []
    for signum in sorted(_signal.valid_signals()):
        if signum in _UNCATCHABLE or signum in _SYNCHRONOUS:
            continue
        out.append(int(signum))
    return out


def _on_main_thread():
    return _threading.current_thread() is _threading.main_thread()


def _nsignal_add(n):
    if n:
        s = _proc._sched or _proc.start()
        with s.lock:
            s.nsignal += n


def _restore_pending_locked():
    """On the main thread: put back the previous handler of signals left with
    no subscriber by a stop() from another thread."""
    for signum in [n for n in _prev if not _subs.get(n)]:
        try:
            if _signal.getsignal(signum) is _handler:
                _signal.signal(signum, _prev[signum])
        except (OSError, ValueError):
            pass
        del _prev[signum]


def notify(ch, *signums):
    """Relay the signals ``signums`` (all catchable ones if none) to ``ch``."""
    global _subs
    if not isinstance(ch, _Chan):
        raise TypeError("signal.notify: ch must be a pygmp chan, not %s" % type(ch).__name__)
    if getattr(ch, "_isnil", False) or type(ch).__name__ == "NilChan":
        raise _PanicError("os/signal: Notify using nil channel")
    explicit = bool(signums)
    sigs = [_check_signum(n) for n in signums] if explicit else _all_signals()
    main = _on_main_thread()
    with _lock:
        if main:
            _restore_pending_locked()
        need = [n for n in sigs if n not in _prev]
        if need and not main:
            raise RuntimeError(
                "pygmp.signal.notify: no handler is installed for %s yet, and Python "
                "installs signal handlers only in the main thread: call notify for it "
                "once from the main goroutine first (any goroutine may subscribe after)"
                % ", ".join(_signal.Signals(n).name if n in _signal.Signals._value2member_map_
                            else str(n) for n in need))
        _start_relay()
        installed = []
        try:
            for n in need:
                try:
                    prev = _signal.signal(n, _handler)
                except (OSError, ValueError, RuntimeError):
                    if explicit:
                        raise
                    continue          # notify(ch): skip what the platform refuses
                _prev[n] = prev
                installed.append(n)
        except BaseException:
            for n in installed:
                _signal.signal(n, _prev.pop(n))
            raise
        key = id(ch)
        ent = _chans.get(key)
        new = ent is None
        if new:
            ent = (ch, set())
            _chans[key] = ent
        subs = dict(_subs)
        for n in sigs:
            if n not in _prev or n in ent[1]:
                continue
            ent[1].add(n)
            subs[n] = subs.get(n, ()) + (ch,)
        if not ent[1]:
            del _chans[key]
            new = False
        _subs = subs
    if new:
        _nsignal_add(1)


def stop(ch):
    """Stop relaying signals to ``ch``.  When it returns, ``ch`` receives no
    more signal values.  Stopping a channel that was never notified is a no-op."""
    global _subs
    with _lock:
        ent = _chans.pop(id(ch), None)
        if ent is None or ent[0] is not ch:
            if ent is not None:
                _chans[id(ch)] = ent
            return
        subs = dict(_subs)
        for n in ent[1]:
            rest = tuple(c for c in subs.get(n, ()) if c is not ch)
            if rest:
                subs[n] = rest
            else:
                subs.pop(n, None)
        _subs = subs
        if _on_main_thread():
            _restore_pending_locked()
    with _deliver:               # a delivery in progress finishes before we return
        pass
    _nsignal_add(-1)


def _after_fork_child():
    global _lock, _deliver, _subs, _chans, _q, _relay
    _lock = _Lock0()
    _deliver = _Lock0()
    _subs = {}                   # the handlers stay; with no subscriber they forward
    _chans = {}
    _q = _SimpleQueue()
    _relay = None


_os.register_at_fork(after_in_child=_after_fork_child)

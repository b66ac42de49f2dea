"""Go's ``context`` package: cancellation, deadlines and request-scoped values.

    from pygmp import context, select
    ctx, cancel = context.with_timeout(context.background(), 0.5)
    try:
        i, _ = select(ctx.done().recv, work.recv)
        if i == 0:
            raise ctx.err()          # context.deadline_exceeded
    finally:
        cancel()                     # always call it: it releases the timer

A context is a tree.  ``background()`` is the root: never cancelled, no values,
no deadline, and its ``done()`` is ``nilchan``.  ``with_cancel``,
``with_timeout``, ``with_deadline`` and ``with_value`` derive children.
Cancelling a context (its ``cancel`` function, its deadline passing, or its
parent being cancelled) closes its ``done()`` channel, sets ``err()`` and
cancels every context derived from it.  ``cancel`` may be called any number of
times, from goroutines or plain threads; only the first call has an effect.

Clock: durations are float seconds (``with_timeout(parent, 0.25)``) and
deadlines are absolute wall-clock ``time.time()`` values, as ``pygmp.net``
conn deadlines and :func:`pygmp.time.now` are.
``with_deadline(parent, time.time() + 5)`` is ``with_timeout(parent, 5)``, and
``ctx.deadline()`` returns ``(t, True)`` with such a ``t``, or
``(None, False)`` when the context has no deadline (Go's
``Deadline() (time.Time, bool)``), so ``conn.set_deadline(ctx.deadline()[0])``
works as is.  A deadline is converted to the monotonic clock once, when it is
set: the timer behind it fires after ``t - time.time()`` seconds, and a later
wall-clock step does not move it (Go's monotonic reading).  A deadline that has
already passed gives a context that is done at once.

Errors: ``err()`` is ``None`` while the context is live, then forever one of
two singletons: ``canceled`` (a ``CanceledError``, an ``Exception``) or
``deadline_exceeded`` (a ``DeadlineExceededError``, also a built-in
``TimeoutError``).  Compare them with ``is``; ``raise ctx.err()`` works.
Because the same object is raised again and again, ``err()`` clears its
``__traceback__`` before returning it, so ``raise ctx.err()`` in a long-running
loop does not accumulate traceback frames on the shared object.

Implementation (as Go's context.go): each cancellable context has its own
``threading.Lock`` guarding its done channel, error and set of children; no
correctness rests on the GIL.  A child registers itself with its nearest
cancellable ancestor; cancelling takes the children out under the parent's lock
and cancels them after releasing it (a lock is never held while another
context's lock is taken), and a child that is cancelled removes itself from
its parent, so short-lived children in a long loop do not pile up.  A deadline
is a ``pygmp.time.after_func`` timer, stopped when the context is cancelled
first.  A child's deadline is the earlier of its own and its parent's: a child
whose parent has an earlier deadline is just a cancel context
and reports the parent's deadline.  Contexts of other (user-written) types work
as parents: a goroutine watches their ``done()`` channel, as Go does.
"""

import threading
import time as _time

from .runtime.chan import Chan, nilchan, select
from . import time as _ptime

__all__ = [
    "Context", "background", "todo", "with_cancel", "with_timeout",
    "with_deadline", "with_value", "without_cancel",
    "canceled", "deadline_exceeded", "CanceledError", "DeadlineExceededError",
]


# -- errors -------------------------------------------------------------------

class CanceledError(Exception):
    """The type of :data:`canceled` (Go's ``context.Canceled``)."""

    def __reduce__(self):           # copy/pickle keep the singleton
        return "canceled"


class DeadlineExceededError(TimeoutError):
    """The type of :data:`deadline_exceeded` (Go's ``context.DeadlineExceeded``);
    a ``TimeoutError``."""

    def __reduce__(self):
        return "deadline_exceeded"

    def timeout(self):
        return True


canceled = CanceledError("context canceled")
deadline_exceeded = DeadlineExceededError("context deadline exceeded")

_walltime = _time.time
_NO_DEADLINE = (None, False)

# A closed channel shared by every context cancelled before anyone asked for
# its done() channel (Go's closedchan).
_closedchan = Chan(0)
_closedchan.close()


def _fresh(err):
    if err is not None:
        err.__traceback__ = None
    return err


# -- the interface ------------------------------------------------------------

class Context:
    """What every context provides; subclass it to write your own.

    ``done()`` returns a channel that is closed when the context is cancelled
    (``nilchan`` if it never can be); ``err()`` returns ``None``,
    ``canceled`` or ``deadline_exceeded``; ``value(key)`` looks ``key`` up
    through the chain of parents (``None`` if absent); ``deadline()`` returns
    ``(t, True)`` with ``t`` the absolute ``time.time()`` deadline, or
    ``(None, False)``.
    """

    __slots__ = ()

    def done(self):
        return nilchan

    def err(self):
        return None

    def value(self, key):
        return None

    def deadline(self):
        return _NO_DEADLINE


class _EmptyCtx(Context):
    __slots__ = ("_name",)

    def __init__(self, name):
        self._name = name

    def __repr__(self):
        return self._name


_background = _EmptyCtx("context.background")
_todo = _EmptyCtx("context.todo")


def background():
    """The root context: never cancelled, no values, no deadline;
    ``done()`` is ``nilchan``.  The same object every call."""
    return _background


def todo():
    """Like :func:`background`, for code that has not been given a context yet."""
    return _todo


def _check_parent(parent):
    if parent is None:
        raise TypeError("cannot create context from nil parent")
    if not hasattr(parent, "done") or not hasattr(parent, "err"):
        raise TypeError("context: parent must be a Context, not %s" % type(parent).__name__)


# -- values -------------------------------------------------------------------

class _ValueCtx(Context):
    __slots__ = ("_parent", "_key", "_val")

    def __init__(self, parent, key, val):
        self._parent = parent
        self._key = key
        self._val = val

    def done(self):
        return self._parent.done()

    def err(self):
        return self._parent.err()

    def deadline(self):
        return _deadline_of(self._parent)

    def value(self, key):
        c = self
        while True:
            t = type(c)
            if t is _ValueCtx:
                k = c._key
                if k is key or k == key:     # identity first, then equality
                    return c._val
                c = c._parent
            elif t is _CancelCtx or t is _TimerCtx or t is _WithoutCancelCtx:
                c = c._parent
            elif t is _EmptyCtx:
                return None
            else:
                return c.value(key)

    def __repr__(self):
        return "%r.with_value(%r, %r)" % (self._parent, self._key, self._val)


def with_value(parent, key, value):
    """A child of ``parent`` whose ``value(key)`` is ``value`` (other keys are
    looked up in ``parent``).  ``key`` must be hashable; as in Go, use a
    private object or class of your own as the key to avoid collisions."""
    _check_parent(parent)
    if key is None:
        raise TypeError("context: nil key")
    hash(key)                       # unhashable keys fail here, not on lookup
    return _ValueCtx(parent, key, value)


class _WithoutCancelCtx(Context):
    __slots__ = ("_parent",)

    def __init__(self, parent):
        self._parent = parent

    def value(self, key):
        return _ValueCtx.value(self, key)

    def __repr__(self):
        return "%r.without_cancel" % (self._parent,)


def without_cancel(parent):
    """A child that keeps ``parent``'s values but is never cancelled and has
    no deadline (Go 1.21's ``WithoutCancel``)."""
    _check_parent(parent)
    return _WithoutCancelCtx(parent)


# -- cancellation -------------------------------------------------------------

def _parent_cancel_ctx(parent):
    """The nearest cancellable ancestor of ours, ``None`` if the chain ends in
    a context that can never be cancelled, or ``parent`` itself (marked by the
    second result False) if a foreign context type is in the way."""
    p = parent
    while True:
        t = type(p)
        if t is _CancelCtx or t is _TimerCtx:
            return p, True
        if t is _ValueCtx:
            p = p._parent
        elif t is _EmptyCtx or t is _WithoutCancelCtx:
            return None, True
        else:
            return p, False


class _CancelCtx(Context):
    __slots__ = ("_parent", "_mu", "_done", "_err", "_children", "_owner", "__weakref__")

    def __init__(self, parent):
        self._parent = parent
        self._mu = threading.Lock()
        self._done = None           # created lazily; _closedchan if cancelled first
        self._err = None
        self._children = None       # set of child cancel contexts
        self._owner = None          # the ancestor we are registered with

    # public
    def done(self):
        d = self._done
        if d is not None:
            return d
        with self._mu:
            d = self._done
            if d is None:
                d = self._done = Chan(0)
            return d

    def err(self):
        with self._mu:
            e = self._err
        return _fresh(e)

    def value(self, key):
        return _ValueCtx.value(self, key)     # iterative walk up the chain

    def deadline(self):
        return _deadline_of(self._parent)

    def __repr__(self):
        return "%r.with_cancel" % (self._parent,)

    # internals
    def _propagate(self):
        """Arrange for this context to be cancelled when its parent is."""
        parent = self._parent
        anc, ours = _parent_cancel_ctx(parent)
        if anc is None:
            return
        if ours:
            with anc._mu:
                perr = anc._err
                if perr is None:
                    ch = anc._children
                    if ch is None:
                        ch = anc._children = set()
                    ch.add(self)
                    self._owner = anc
            if perr is not None:
                self._cancel(False, perr)
            return
        # A foreign context type: watch its done channel.
        pdone = anc.done()
        if pdone is nilchan or pdone is None:
            return
        perr = anc.err()
        if perr is not None:
            self._cancel(False, perr)
            return
        mydone = self.done()

        def watch():
            i, _ = select(pdone.recv, mydone.recv)
            if i == 0:
                self._cancel(False, anc.err())

        from .runtime.proc import go
        go(watch)

    def _cancel(self, remove_from_parent, err):
        """Cancel (once): set err, close done, cancel the children, and
        optionally unregister from the ancestor."""
        with self._mu:
            if self._err is not None:
                return False
            self._err = err
            d = self._done
            if d is None:
                self._done = _closedchan
            else:
                d.close()
            children = self._children
            self._children = None
            owner = self._owner
            self._owner = None
        if children:
            for c in children:
                c._cancel(False, err)
        if remove_from_parent and owner is not None:
            with owner._mu:
                ch = owner._children
                if ch is not None:
                    ch.discard(self)
        return True


def _cancel_func(ctx):
    def cancel():
        """Cancel the context (idempotent; safe from any thread)."""
        ctx._cancel(True, canceled)
    return cancel


def with_cancel(parent):
    """``(ctx, cancel)``: a child of ``parent`` that is cancelled (err
    ``canceled``) when ``cancel()`` is called or when ``parent`` is."""
    _check_parent(parent)
    c = _CancelCtx(parent)
    c._propagate()
    return c, _cancel_func(c)


class _Expire:
    """The deadline timer's callback.  A stopped timer stays in its P's heap
    until the heap is compacted (lazy deletion, as Go's): cancelling the
    context clears ``ctx`` here, so what stays behind is this small object,
    never the context and what it references."""
    __slots__ = ("ctx",)

    def __init__(self, ctx):
        self.ctx = ctx

    def __call__(self):
        c = self.ctx
        self.ctx = None
        if c is not None:
            c._cancel(True, deadline_exceeded)


class _TimerCtx(_CancelCtx):
    __slots__ = ("_deadline", "_timer", "_expire")

    def __init__(self, parent, deadline):
        _CancelCtx.__init__(self, parent)
        self._deadline = deadline
        self._timer = None
        self._expire = None

    def deadline(self):
        return (self._deadline, True)

    def __repr__(self):
        return "%r.with_deadline(%.6f [%.6fs])" % (
            self._parent, self._deadline, self._deadline - _walltime())

    def _cancel(self, remove_from_parent, err):
        if not _CancelCtx._cancel(self, remove_from_parent, err):
            return False
        with self._mu:
            t = self._timer
            self._timer = None
            ex = self._expire
            self._expire = None
        if t is not None:
            t.stop()
        if ex is not None:
            ex.ctx = None
        return True


def _deadline_of(ctx):
    """``ctx.deadline()`` as ``(t, True)`` or ``(None, False)``; a user context
    written for the older one-value form (a number or None) is accepted too."""
    dl = ctx.deadline()
    if type(dl) is tuple:
        return dl
    return _NO_DEADLINE if dl is None else (dl, True)


def _check_number(x, who, what):
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError("%s: %s, not %s" % (who, what, type(x).__name__))
    return float(x)


def with_deadline(parent, t):
    """``(ctx, cancel)``: like :func:`with_cancel`, and also cancelled with
    ``deadline_exceeded`` at ``t``, an absolute ``time.time()`` value.  A ``t``
    already passed gives a context that is done at once.  If ``parent``'s
    deadline is earlier, the child keeps the parent's deadline.  Call
    ``cancel()`` when done to release the timer."""
    _check_parent(parent)
    t = _check_number(t, "with_deadline", "t must be a time.time() value")
    return _with_deadline(parent, t, t - _walltime())


def _with_deadline(parent, t, d):
    """``t``: the wall-clock deadline reported; ``d``: seconds from now until
    it (the timer runs on the monotonic clock)."""
    pd, ok = _deadline_of(parent)
    if ok and pd < t:
        return with_cancel(parent)      # the parent's sooner deadline governs
    c = _TimerCtx(parent, t)
    c._propagate()
    if not d > 0:                       # passed (or NaN): done at once
        c._cancel(True, deadline_exceeded)
        return c, _cancel_func(c)
    with c._mu:
        if c._err is None:
            c._expire = _Expire(c)
            c._timer = _ptime.after_func(d, c._expire)
    return c, _cancel_func(c)


def with_timeout(parent, d):
    """``with_deadline(parent, time.time() + d)``; ``d`` in seconds."""
    _check_parent(parent)
    d = _check_number(d, "with_timeout", "d must be a number of seconds")
    return _with_deadline(parent, _walltime() + d, d)

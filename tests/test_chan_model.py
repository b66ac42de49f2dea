"""Model-based tests: random operation sequences on a pygmp channel, checked
against a sequential model of Go's channel rules.

Variant 1 uses only non-blocking operations (select with default), so every
step is deterministic. Variant 2 also parks goroutines on send / receive; each
such goroutine is waited for until stack(all=True) shows it parked, so FIFO
order of the waiters is deterministic too.
"""
import os
import sys
from collections import deque

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize,
                                 invariant, precondition, rule)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _helpers import is_ready, my_goid, recv_timeout, wait_parked  # noqa: E402

from pygmp import PanicError, chan, default, go, select  # noqa: E402

pytestmark = pytest.mark.timeout(110)

SEND_ON_CLOSED = "send on closed channel"
CLOSE_CLOSED = "close of closed channel"


class ChanModel:
    """Go's rules for a channel with no goroutines waiting on it."""

    def __init__(self, cap):
        self.cap = cap
        self.buf = deque()
        self.closed = False


class NonBlockingChan(RuleBasedStateMachine):
    """Only the main goroutine touches the channel, never blocking."""

    @initialize(cap=st.integers(min_value=0, max_value=4))
    def setup(self, cap):
        self.m = ChanModel(cap)
        self.ch = chan(cap)
        self.counter = 0

    @rule(use_default_first=st.booleans())
    def try_send(self, use_default_first):
        self.counter += 1
        v = self.counter
        cases = [(self.ch.send, v), default]
        if use_default_first:
            cases.reverse()
        send_idx = cases.index(default) ^ 1
        if self.m.closed:
            with pytest.raises(PanicError) as ei:
                select(*cases)
            assert str(ei.value) == SEND_ON_CLOSED
            return
        i, r = select(*cases)
        if len(self.m.buf) < self.m.cap:
            assert (i, r) == (send_idx, None)
            self.m.buf.append(v)
        else:
            assert i != send_idx and r is None

    @rule(ok_form=st.booleans())
    def try_recv(self, ok_form):
        case = self.ch.recv_ if ok_form else self.ch.recv
        i, r = select(case, default)
        if self.m.buf:
            v = self.m.buf.popleft()
            assert i == 0
            assert r == ((v, True) if ok_form else v)
        elif self.m.closed:
            assert i == 0
            assert r == ((None, False) if ok_form else None)
        else:
            assert (i, r) == (1, None)

    @precondition(lambda self: self.m.buf or self.m.closed)
    @rule()
    def blocking_recv_that_cannot_block(self):
        v, ok = self.ch.recv_()
        if self.m.buf:
            assert (v, ok) == (self.m.buf.popleft(), True)
        else:
            assert (v, ok) == (None, False)

    @precondition(lambda self: not self.m.closed and len(self.m.buf) < self.m.cap)
    @rule()
    def blocking_send_that_cannot_block(self):
        self.counter += 1
        self.ch.send(self.counter)
        self.m.buf.append(self.counter)

    @rule()
    def close(self):
        if self.m.closed:
            with pytest.raises(PanicError) as ei:
                self.ch.close()
            assert str(ei.value) == CLOSE_CLOSED
        else:
            self.ch.close()
            self.m.closed = True

    @invariant()
    def len_and_cap(self):
        if hasattr(self, "ch"):
            assert len(self.ch) == len(self.m.buf)
            assert self.ch.cap() == self.m.cap


TestNonBlockingChan = NonBlockingChan.TestCase
TestNonBlockingChan.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])


class ChanWithParkedGoroutines(RuleBasedStateMachine):
    """Main goroutine plus goroutines parked in send / recv on the channel.

    Model: buffer, FIFO queue of parked senders (their values), FIFO queue of
    parked receivers. Each parked goroutine reports its outcome on `results`:
    ("sent", id) / ("sendpanic", id) / ("recv", id, value, ok).
    """

    @initialize(cap=st.integers(min_value=0, max_value=3))
    def setup(self, cap):
        self.cap = cap
        self.ch = chan(cap)
        self.buf = deque()
        self.senders = deque()      # (gid_token, value)
        self.receivers = deque()    # token
        self.closed = False
        self.counter = 0
        self.results = chan(1000)
        self.ids = chan(1)

    # -- helpers
    def _expect(self, expected):
        got = recv_timeout(self.results, 10, "goroutine outcome %r" % (expected,))
        assert got == expected

    def _nothing_more(self):
        assert select(self.results.recv, default) == (1, None)

    def _new_value(self):
        self.counter += 1
        return self.counter

    # -- goroutines that park
    @precondition(lambda self: not self.closed
                  and len(self.buf) == self.cap and not self.receivers)
    @rule()
    def park_sender(self):
        v = self._new_value()
        ch, res, ids = self.ch, self.results, self.ids

        def sender():
            ids.send(my_goid())
            try:
                ch.send(v)
            except PanicError as e:
                res.send(("sendpanic", v, str(e)))
                return
            res.send(("sent", v))

        go(sender)
        wait_parked(recv_timeout(ids), "chan send")
        self.senders.append(v)

    @precondition(lambda self: not self.closed and not self.buf and not self.senders)
    @rule()
    def park_receiver(self):
        tok = self._new_value()
        ch, res, ids = self.ch, self.results, self.ids

        def receiver():
            ids.send(my_goid())
            v, ok = ch.recv_()
            res.send(("recv", tok, v, ok))

        go(receiver)
        wait_parked(recv_timeout(ids), "chan receive")
        self.receivers.append(tok)

    # -- main goroutine operations (never blocking)
    @rule()
    def try_send(self):
        v = self._new_value()
        if self.closed:
            with pytest.raises(PanicError):
                select((self.ch.send, v), default)
            return
        i, r = select((self.ch.send, v), default)
        if self.receivers:
            assert i == 0
            tok = self.receivers.popleft()
            self._expect(("recv", tok, v, True))
        elif len(self.buf) < self.cap:
            assert i == 0
            self.buf.append(v)
        else:
            assert i == 1

    @rule()
    def try_recv(self):
        i, r = select(self.ch.recv_, default)
        if self.buf:
            assert (i, r) == (0, (self.buf.popleft(), True))
            if self.senders:  # Go: first parked sender refills the buffer
                sv = self.senders.popleft()
                self.buf.append(sv)
                self._expect(("sent", sv))
        elif self.senders:   # unbuffered: take straight from the first sender
            sv = self.senders.popleft()
            assert (i, r) == (0, (sv, True))
            self._expect(("sent", sv))
        elif self.closed:
            assert (i, r) == (0, (None, False))
        else:
            assert (i, r) == (1, None)

    @rule()
    def close(self):
        if self.closed:
            with pytest.raises(PanicError):
                self.ch.close()
            return
        self.ch.close()
        self.closed = True
        outcomes = set()
        for tok in self.receivers:
            outcomes.add(("recv", tok, None, False))
        for v in self.senders:
            outcomes.add(("sendpanic", v, SEND_ON_CLOSED))
        got = set()
        for _ in range(len(outcomes)):
            got.add(recv_timeout(self.results, 10, "wake-up on close"))
        assert got == outcomes
        self.receivers.clear()
        self.senders.clear()

    @invariant()
    def consistent(self):
        if hasattr(self, "ch"):
            assert len(self.ch) == len(self.buf)
            self._nothing_more()

    def teardown(self):
        # do not leak parked goroutines between examples
        if hasattr(self, "ch") and not self.closed:
            n = len(self.senders) + len(self.receivers)
            self.ch.close()
            for _ in range(n):
                recv_timeout(self.results, 10, "teardown wake-up")


TestChanWithParkedGoroutines = ChanWithParkedGoroutines.TestCase
TestChanWithParkedGoroutines.settings = settings(
    max_examples=100, stateful_step_count=25, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])


def test_model_helpers_sane():
    c = chan(1)
    assert not is_ready(c)

"""Executable sequential model of the runtime timer heap (csrc/timers.c).

Hypothesis drives random sequences of add / modify / delete / stop and clock
advances against one standalone P (its own heap, driven with an explicit
clock through the test hooks ``_hot._timers_debug`` and ``runtimers(p,
now)``), and checks them against a plain model: a dict of armed timers, fired
in order of their deadlines.  After every step the heap's own invariants are
checked too: the 4-ary heap order, no zombie at the head, the zombie count,
``timer0``, each timer in the heap once, ``active``/``seq`` as the model says.

Two kinds of timers: Python timers (``RTimer(f, arg)``, ``f(arg, seq)``) and
channel timers (``chantimer(c)``: Go 1.23 stop semantics, one-slot channel
that drops a value when full).
"""
import math

import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from pygmp import _hot, chan
from pygmp.runtime.timers import RTimer, chantimer, deltimer

# The runtime's idle workers pick steal victims with the global `random`
# (proc._stealwork) while these examples run; Hypothesis then warns that the
# random module was used inside a strategy.  It was not, by this test.
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")

N_TIMERS = 6
T0 = 1000.0          # the model clock starts here (when values are > 0)


class Model:
    """What the heap must do: armed timers fire once their when <= now, in
    deadline order; a periodic one is re-armed for its next period after now
    (missed periods are skipped)."""

    def __init__(self):
        self.armed = {}   # i -> [when, period, seq]
        self.seq = {}     # i -> current seq

    def add(self, i, when, period):
        self.seq[i] = self.seq.get(i, 0) + 1
        self.armed[i] = [when, period, self.seq[i]]
        return self.seq[i]

    def delete(self, i):
        if i in self.armed:
            del self.armed[i]
            self.seq[i] += 1
            return True
        return False

    def advance(self, now):
        due = sorted(((w, i) for i, (w, _, _) in self.armed.items() if w <= now))
        fired = []
        for when, i in due:
            w, period, seq = self.armed[i]
            fired.append((i, seq, when))
            if period > 0:
                nxt = w + period
                if nxt <= now:
                    nxt = now + period - math.fmod(now - w, period)
                self.armed[i][0] = nxt
            else:
                del self.armed[i]
        return fired


class TimerHeapMachine(RuleBasedStateMachine):
    @initialize(kinds=st.lists(st.sampled_from(["py", "chan"]), min_size=N_TIMERS, max_size=N_TIMERS))
    def setup(self, kinds):
        self.p = _hot.PBase()            # a P with no worker: only this test touches its heap
        self.now = T0
        self.model = Model()
        self.log = []
        self.kinds = kinds
        self.timers, self.chans = [], []
        for i, k in enumerate(kinds):
            if k == "py":
                self.timers.append(RTimer(self._fire, i))
                self.chans.append(None)
            else:
                c = chan(1)
                self.timers.append(chantimer(c))
                self.chans.append(c)
        self.chanfull = [False] * N_TIMERS   # model of each one-slot channel

    def _fire(self, i, seq):
        self.log.append((i, seq))

    # -- operations ------------------------------------------------------------
    @rule(i=st.integers(0, N_TIMERS - 1), dt=st.integers(-5, 40), period=st.sampled_from([0, 0, 0, 3, 7.5]))
    def add(self, i, dt, period):
        """Arm (or, when armed, modify in place) timer i at now + dt."""
        when = self.now + dt
        seq = _hot._timers_debug(self.p, self.timers[i], when, float(period))
        assert seq == self.model.add(i, when, period)
        assert self.timers[i].active

    @rule(i=st.integers(0, N_TIMERS - 1))
    def delete(self, i):
        if self.kinds[i] == "chan":
            # Go 1.23 stop: pending if armed or a value sits unreceived; drains
            was_full = self.chanfull[i]
            got = self.timers[i].stop()
            armed = self.model.delete(i)
            if not armed:   # stop always bumps a chan timer's seq (drops an in-flight send)
                self.model.seq[i] = self.model.seq.get(i, 0) + 1
            expect = armed or was_full
            self.chanfull[i] = False
            assert got == expect
            assert len(self.chans[i]) == 0
        else:
            assert deltimer(self.timers[i]) == self.model.delete(i)
        assert not self.timers[i].active

    @rule(dt=st.integers(0, 30))
    def advance(self, dt):
        self.now += dt
        del self.log[:]
        expected = self.model.advance(self.now)
        n = _hot.runtimers(self.p, self.now)
        assert n == len(expected)
        # Python timers report (i, seq) through f; channel timers through their channel
        exp_py = [(i, s, w) for i, s, w in expected if self.kinds[i] == "py"]
        assert sorted(self.log) == sorted((i, s) for i, s, _ in exp_py)
        when_of = {(i, s): w for i, s, w in exp_py}
        order = [when_of[e] for e in self.log]
        assert order == sorted(order), "fired out of deadline order"
        for i, _, _ in expected:
            if self.kinds[i] == "chan":
                self.chanfull[i] = True
        for i in range(N_TIMERS):
            if self.chans[i] is not None:
                assert len(self.chans[i]) == (1 if self.chanfull[i] else 0)

    @rule(i=st.integers(0, N_TIMERS - 1))
    def receive(self, i):
        c = self.chans[i]
        if c is not None and self.chanfull[i]:
            assert isinstance(c.recv(), float)
            self.chanfull[i] = False

    # -- invariants --------------------------------------------------------------
    @invariant()
    def heap_is_consistent(self):
        if not hasattr(self, "p"):
            return
        heap, zombies, timer0 = _hot._timers_debug(self.p)
        for k in range(1, len(heap)):
            assert heap[(k - 1) // 4][0] <= heap[k][0], "4-ary heap order broken at %d" % k
        assert zombies == sum(1 for _, _, pending in heap if not pending)
        assert len({id(t) for _, t, _ in heap}) == len(heap), "a timer is in the heap twice"
        if heap:
            assert heap[0][2], "a zombie at the head"
            assert timer0 == heap[0][0]
            assert self.p.timer0 == heap[0][0]
        else:
            assert timer0 == math.inf and self.p.timer0 is None
        live = {self.timers.index(t): w for w, t, pending in heap if pending}
        assert live == {i: a[0] for i, a in self.model.armed.items()}
        assert self.p.ntimers == len(self.model.armed)
        for i, t in enumerate(self.timers):
            assert t.active == (i in self.model.armed)
            assert t.seq == self.model.seq.get(i, 0)
            if i in self.model.armed:
                assert t.when == self.model.armed[i][0]
                assert t.seq == self.model.armed[i][2]

    def teardown(self):
        if hasattr(self, "p"):
            for t in self.timers:
                deltimer(t)
            _hot.runtimers(self.p, math.inf)


TestTimerHeap = TimerHeapMachine.TestCase
TestTimerHeap.settings = settings(max_examples=150, stateful_step_count=60, deadline=None,
                                  suppress_health_check=[HealthCheck.too_slow])


def test_compaction_keeps_heap_small():
    """Deleting most of a big heap compacts it (zombies never exceed a quarter
    once the heap has 16 entries), and what is left still fires in order."""
    p = _hot.PBase()
    fired = []
    ts = [RTimer(lambda i, seq: fired.append(i), i) for i in range(1000)]
    for i, t in enumerate(ts):
        _hot._timers_debug(p, t, T0 + 1 + (i * 7919) % 1000, 0.0)
    for i, t in enumerate(ts):
        if i % 10:
            assert deltimer(t) is True
            heap, zombies, _ = _hot._timers_debug(p)
            assert zombies * 4 <= len(heap) or len(heap) < 16
    heap, zombies, _ = _hot._timers_debug(p)
    assert len(heap) - zombies == 100 == p.ntimers
    assert _hot.runtimers(p, T0 + 2000) == 100
    assert fired == sorted(fired, key=lambda i: (i * 7919) % 1000)
    assert _hot._timers_debug(p)[0] == [] and p.timer0 is None


def test_periodic_skips_missed_periods():
    p = _hot.PBase()
    seqs = []
    t = RTimer(lambda a, seq: seqs.append(seq), None)
    seq = _hot._timers_debug(p, t, T0 + 1, 2.0)
    assert _hot.runtimers(p, T0 + 10.5) == 1        # fired once, not five times
    assert seqs == [seq]
    assert t.when == pytest.approx(T0 + 11)         # the next period after now
    assert _hot.runtimers(p, T0 + 11) == 1
    assert t.when == pytest.approx(T0 + 13)
    assert deltimer(t) is True and _hot.runtimers(p, T0 + 100) == 0


def test_rtimer_bad_input():
    with pytest.raises(TypeError):
        RTimer(42, None)
    with pytest.raises(TypeError):
        RTimer(print)
    t = RTimer(lambda a, s: None, None)
    p = _hot.PBase()
    for when, period in ((math.nan, 0.0), (T0, -1.0), (T0, math.nan), (T0, math.inf)):
        with pytest.raises(ValueError):
            _hot._timers_debug(p, t, when, period)
    assert not t.active and t.seq == 0
    with pytest.raises(TypeError):
        deltimer(object())
    with pytest.raises(TypeError):
        _hot.runtimers(object())
    with pytest.raises(TypeError):
        chantimer(object())

"""pygmp.signal (API.md "pygmp.signal"): signals delivered on channels."""
import os
import signal
import sys
import threading
import time as stdtime

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _helpers import in_goroutine, in_thread, is_ready, recv_timeout, run_script  # noqa: E402

from pygmp import PanicError, chan, go, nilchan  # noqa: E402
import pygmp.signal as gsignal  # noqa: E402
from pygmp.runtime import proc  # noqa: E402


def _kill(sig):
    os.kill(os.getpid(), sig)


def _nsignal():
    return proc._sched.nsignal


@pytest.mark.timeout(30)
def test_notify_delivers_signal_to_goroutine():
    c = chan(1)
    gsignal.notify(c, signal.SIGUSR1)
    try:
        got = chan(1)
        go(lambda: got.send(c.recv()))
        stdtime.sleep(0.05)
        _kill(signal.SIGUSR1)
        v = recv_timeout(got, 5, "signal value")
        assert v == signal.SIGUSR1
        assert isinstance(v, signal.Signals) and int(v) == signal.SIGUSR1
    finally:
        gsignal.stop(c)


@pytest.mark.timeout(30)
def test_main_goroutine_parked_receives_signal():
    c = chan(1)
    gsignal.notify(c, signal.SIGUSR2)
    try:
        def sender():
            from pygmp.time import sleep
            sleep(0.1)
            _kill(signal.SIGUSR2)
        go(sender)
        assert recv_timeout(c, 5) == signal.SIGUSR2
    finally:
        gsignal.stop(c)


@pytest.mark.timeout(30)
def test_dropped_when_no_room():
    c = chan(1)
    gsignal.notify(c, signal.SIGUSR1)
    try:
        d0 = gsignal.stats["dropped"]
        for _ in range(3):
            _kill(signal.SIGUSR1)
            stdtime.sleep(0.05)
        deadline = stdtime.monotonic() + 5
        while gsignal.stats["dropped"] < d0 + 2 and stdtime.monotonic() < deadline:
            stdtime.sleep(0.01)
        assert gsignal.stats["dropped"] >= d0 + 2
        assert len(c) == 1
        assert c.recv() == signal.SIGUSR1
        assert not is_ready(c)
    finally:
        gsignal.stop(c)


@pytest.mark.timeout(30)
def test_several_channels_and_signals():
    a, b = chan(4), chan(4)
    gsignal.notify(a, signal.SIGUSR1, signal.SIGUSR2)
    gsignal.notify(b, signal.SIGUSR2)
    try:
        _kill(signal.SIGUSR1)
        _kill(signal.SIGUSR2)
        assert sorted(int(recv_timeout(a, 5)) for _ in range(2)) == sorted(
            [signal.SIGUSR1, signal.SIGUSR2])
        assert recv_timeout(b, 5) == signal.SIGUSR2
        stdtime.sleep(0.05)
        assert not is_ready(b)
    finally:
        gsignal.stop(a)
        gsignal.stop(b)


@pytest.mark.timeout(30)
def test_stop_restores_previous_handler_and_counts():
    seen = []
    prev = signal.signal(signal.SIGUSR1, lambda s, f: seen.append(s))
    try:
        n0 = _nsignal()
        a, b = chan(1), chan(1)
        gsignal.notify(a, signal.SIGUSR1)
        gsignal.notify(b, signal.SIGUSR1)
        gsignal.notify(b, signal.SIGUSR1)          # again: no double count
        assert _nsignal() == n0 + 2
        assert signal.getsignal(signal.SIGUSR1) is not prev
        gsignal.stop(a)
        assert _nsignal() == n0 + 1
        _kill(signal.SIGUSR1)
        assert recv_timeout(b, 5) == signal.SIGUSR1
        assert not is_ready(a)
        gsignal.stop(b)
        gsignal.stop(b)                              # no-op
        assert _nsignal() == n0
        _kill(signal.SIGUSR1)
        stdtime.sleep(0.05)
        assert seen == [signal.SIGUSR1]              # the previous handler is back
        assert not is_ready(b)
    finally:
        signal.signal(signal.SIGUSR1, prev)


def test_bad_arguments():
    with pytest.raises(TypeError):
        gsignal.notify("not a chan", signal.SIGUSR1)
    with pytest.raises(PanicError):
        gsignal.notify(nilchan, signal.SIGUSR1)
    c = chan(1)
    with pytest.raises(ValueError):
        gsignal.notify(c, signal.SIGKILL)
    with pytest.raises(ValueError):
        gsignal.notify(c, 100000)
    with pytest.raises(TypeError):
        gsignal.notify(c, "SIGUSR1")
    gsignal.stop(c)                                  # never notified: no-op


@pytest.mark.timeout(30)
def test_notify_from_goroutine_needs_installed_handler():
    c = chan(1)

    def sub():
        gsignal.notify(c, signal.SIGUSR2)
    with pytest.raises(RuntimeError, match="main"):
        in_goroutine(sub)
    with pytest.raises(RuntimeError, match="main"):
        in_thread(sub)
    # once the main goroutine installed it, goroutines may subscribe and stop
    m = chan(1)
    gsignal.notify(m, signal.SIGUSR2)
    try:
        in_goroutine(sub)
        _kill(signal.SIGUSR2)
        assert recv_timeout(c, 5) == signal.SIGUSR2
        assert recv_timeout(m, 5) == signal.SIGUSR2
        in_goroutine(gsignal.stop, c)
    finally:
        gsignal.stop(m)


@pytest.mark.timeout(60)
def test_sigint_subscription_replaces_keyboardinterrupt():
    r = run_script("""
        import os, signal
        from pygmp import chan, signal as gsignal
        c = chan(1)
        gsignal.notify(c, signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        print("got", int(c.recv()) == signal.SIGINT, flush=True)
        gsignal.stop(c)
        try:
            os.kill(os.getpid(), signal.SIGINT)
            import time; time.sleep(1)
            print("no KeyboardInterrupt")
        except KeyboardInterrupt:
            print("KeyboardInterrupt")
        """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["got True", "KeyboardInterrupt"]


@pytest.mark.timeout(60)
def test_subscription_prevents_deadlock_report_and_external_signal():
    # main waits on the signal channel only: with a subscription that is not a
    # deadlock; a SIGTERM from outside wakes it
    import subprocess
    from _helpers import spawn_script
    p, path = spawn_script("""
        import signal, sys
        from pygmp import chan, signal as gsignal
        c = chan(1)
        gsignal.notify(c, signal.SIGTERM)
        print("ready", flush=True)
        print("got", int(c.recv()), flush=True)
        """)
    try:
        assert p.stdout.readline().strip() == "ready"
        stdtime.sleep(0.5)                      # long enough for checkdead to have run
        assert p.poll() is None
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=20)
        assert p.returncode == 0, err
        assert out.strip() == "got %d" % signal.SIGTERM
        assert "deadlock" not in err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.unlink(path)


@pytest.mark.timeout(60)
def test_deadlock_reported_after_stop():
    r = run_script("""
        import signal
        from pygmp import chan, signal as gsignal
        c = chan(1)
        gsignal.notify(c, signal.SIGUSR1)
        gsignal.stop(c)
        c.recv()
        """)
    assert r.returncode == 2
    assert "all goroutines are asleep - deadlock!" in r.stderr


@pytest.mark.timeout(60)
def test_stop_from_goroutine_forwards_to_default():
    # the last stop() runs in a goroutine: the handler cannot be restored from
    # there, so the next signal is forwarded to the previous (default) action
    r = run_script("""
        import os, signal, time
        from pygmp import chan, go, signal as gsignal
        c = chan(1)
        gsignal.notify(c, signal.SIGTERM)
        done = chan()
        def st():
            gsignal.stop(c)
            done.send(None)
        go(st)
        done.recv()
        print("stopped", flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(2)
        print("survived")
        """)
    assert r.stdout.strip() == "stopped"
    assert r.returncode == -signal.SIGTERM


@pytest.mark.timeout(60)
def test_notify_all_signals():
    r = run_script("""
        import os, signal
        from pygmp import chan, signal as gsignal
        c = chan(4)
        gsignal.notify(c)
        os.kill(os.getpid(), signal.SIGHUP)
        os.kill(os.getpid(), signal.SIGWINCH)
        got = sorted(int(c.recv()) for _ in range(2))
        print(got == sorted([signal.SIGHUP, signal.SIGWINCH]))
        gsignal.stop(c)
        print(signal.getsignal(signal.SIGHUP) == signal.SIG_DFL)
        """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "True"]

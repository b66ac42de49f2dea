"""Program-level behaviour (API.md "Program-level behaviour"), each in a child
interpreter: exit statuses, panic output, deadlock detection, Ctrl-C,
SystemExit in goroutines, main-goroutine exceptions, goexit in main, shutdown."""
import os
import signal
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _helpers import run_script, spawn_script  # noqa: E402

DEADLOCK = "fatal error: all goroutines are asleep - deadlock!"
NO_GOROUTINES = "fatal error: no goroutines (main called runtime.Goexit) - deadlock!"


# ---------------------------------------------------------------- normal exit

@pytest.mark.timeout(30)
def test_main_returns_exit_0_without_waiting_for_goroutines():
    r = run_script("""
        from pygmp import go, chan
        from pygmp.time import sleep
        def forever():
            while True:
                sleep(10)
        def spin():
            x = 0
            while True:
                x += 1
        for _ in range(10):
            go(forever)
        go(spin)
        c = chan()
        go(c.send, "hi")
        print(c.recv())
    """, timeout=20)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hi\n"
    assert r.stderr == ""


@pytest.mark.timeout(30)
def test_atexit_runs_and_nothing_thrown_into_parked_goroutines():
    r = run_script("""
        import atexit, sys
        from pygmp import go, chan, nilchan
        def parked(ch):
            try:
                ch.recv()
            except BaseException as e:
                print("THROWN", type(e).__name__, flush=True)
                raise
            finally:
                print("FINALLY", flush=True)
        for _ in range(5):
            go(parked, chan())
        go(parked, nilchan)
        c = chan()
        go(c.send, 1)
        c.recv()
        atexit.register(lambda: print("atexit ran", flush=True))
        print("main done", flush=True)
    """, timeout=20)
    assert r.returncode == 0, r.stderr
    assert "main done" in r.stdout
    assert "atexit ran" in r.stdout
    assert "THROWN" not in r.stdout
    assert "FINALLY" not in r.stdout
    assert "Traceback" not in r.stderr


@pytest.mark.timeout(30)
def test_non_daemon_plain_threads_joined():
    r = run_script("""
        import threading, time
        from pygmp import go, chan
        def t():
            time.sleep(0.3)
            c = chan()
            go(c.send, "from thread")
            print(c.recv(), flush=True)
        threading.Thread(target=t).start()
        print("main done", flush=True)
    """, timeout=20)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["main done", "from thread"]


# ---------------------------------------------------------------- panics

@pytest.mark.timeout(30)
def test_goroutine_exception_is_panic_exit_2():
    r = run_script("""
        import atexit
        from pygmp import go, chan
        atexit.register(lambda: print("ATEXIT"))
        def the_failing_func():
            raise ValueError("boom")
        def creator_func():
            go(the_failing_func)
        print("before", end="")  # not flushed: the runtime must flush it
        go(creator_func)
        chan().recv()
    """, timeout=20)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "before" in r.stdout
    assert "panic: ValueError: boom" in r.stderr
    assert "the_failing_func" in r.stderr  # traceback
    assert "goroutine " in r.stderr and "[running]:" in r.stderr
    assert "created by" in r.stderr
    assert "creator_func" in r.stderr
    assert DEADLOCK not in r.stderr


@pytest.mark.timeout(30)
def test_panicerror_in_goroutine_exit_2():
    r = run_script("""
        from pygmp import go, chan
        def f():
            c = chan()
            c.close()
            c.close()
        go(f)
        chan().recv()
    """, timeout=20)
    assert r.returncode == 2, r.stderr
    assert "panic: PanicError: close of closed channel" in r.stderr


@pytest.mark.timeout(30)
def test_panic_does_not_wait_for_main():
    # main is busy in a plain blocking call; the panic still ends the process
    r = run_script("""
        import time
        from pygmp import go
        def f():
            raise RuntimeError("early")
        go(f)
        time.sleep(30)
        print("main finished")
    """, timeout=20)
    assert r.returncode == 2
    assert "panic: RuntimeError: early" in r.stderr
    assert "main finished" not in r.stdout


@pytest.mark.timeout(30)
@pytest.mark.parametrize("code,status,err", [
    ("3", 3, None),
    ("0", 0, None),
    ("None", 0, None),
    ("'bye bye'", 1, "bye bye"),
])
def test_systemexit_in_goroutine(code, status, err):
    r = run_script("""
        import atexit, sys
        from pygmp import go, chan
        atexit.register(lambda: print("ATEXIT", flush=True))
        def f():
            print("goroutine out", end="")  # must be flushed
            raise SystemExit(%s)
        go(f)
        chan().recv()
        print("main continued")
    """ % code, timeout=20)
    assert r.returncode == status, (r.returncode, r.stderr)
    assert "goroutine out" in r.stdout
    assert "ATEXIT" not in r.stdout
    assert "main continued" not in r.stdout
    assert "panic:" not in r.stderr
    if err:
        assert err in r.stderr


@pytest.mark.timeout(30)
def test_sys_exit_in_goroutine_while_main_blocked_in_plain_call():
    r = run_script("""
        import sys, time
        from pygmp import go
        go(sys.exit, 5)
        time.sleep(30)
    """, timeout=20)
    assert r.returncode == 5


@pytest.mark.timeout(30)
def test_main_exception_python_semantics():
    r = run_script("""
        from pygmp import go, chan
        c = chan()
        go(c.send, 1)
        c.recv()
        def main_level_func():
            raise KeyError("mainboom")
        main_level_func()
    """, timeout=20)
    assert r.returncode == 1
    assert "Traceback (most recent call last)" in r.stderr
    assert "KeyError: 'mainboom'" in r.stderr
    assert "main_level_func" in r.stderr
    assert "panic:" not in r.stderr


@pytest.mark.timeout(30)
def test_main_exception_from_panicerror_is_status_1():
    r = run_script("""
        from pygmp import chan
        c = chan()
        c.close()
        c.send(1)
    """, timeout=20)
    assert r.returncode == 1
    assert "send on closed channel" in r.stderr
    assert "Traceback" in r.stderr


# ---------------------------------------------------------------- deadlock

@pytest.mark.timeout(30)
def test_deadlock_main_only():
    r = run_script("""
        from pygmp import chan
        print("start", end="")
        chan().recv()
    """, timeout=20)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert DEADLOCK in r.stderr
    assert "goroutine 1 [chan receive" in r.stderr
    assert "start" in r.stdout


@pytest.mark.timeout(30)
def test_deadlock_with_parked_goroutines_lists_them():
    r = run_script("""
        from pygmp import go, chan, nilchan, select
        from pygmp.sync import WaitGroup
        def stuck_sender_func(c):
            c.send(1)
        def stuck_nil():
            nilchan.recv()
        def stuck_select():
            select()
        wg = WaitGroup()
        wg.add(1)
        go(stuck_sender_func, chan())
        go(stuck_nil)
        go(stuck_select)
        wg.wait()
    """, timeout=20)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert DEADLOCK in r.stderr
    assert "stuck_sender_func" in r.stderr
    assert "[chan send" in r.stderr
    assert "goroutine 1 [" in r.stderr


@pytest.mark.timeout(30)
def test_deadlock_on_sync_primitives():
    r = run_script("""
        from pygmp.sync import Mutex
        m = Mutex()
        m.lock()
        m.lock()
    """, timeout=20)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert DEADLOCK in r.stderr


@pytest.mark.timeout(30)
def test_deadlock_after_work_done():
    r = run_script("""
        from pygmp import go, chan
        c = chan()
        def worker():
            for i in range(100):
                c.send(i)
        go(worker)
        for i in range(100):
            assert c.recv() == i
        print("received", flush=True)
        c.recv()
    """, timeout=20)
    assert r.returncode == 2
    assert "received" in r.stdout
    assert DEADLOCK in r.stderr


@pytest.mark.timeout(30)
def test_deadlock_in_select_in_main():
    r = run_script("""
        from pygmp import chan, select
        a, b = chan(), chan()
        select(a.recv, (b.send, 1))
    """, timeout=20)
    assert r.returncode == 2
    assert DEADLOCK in r.stderr


@pytest.mark.timeout(30)
def test_no_deadlock_while_timer_pending():
    r = run_script("""
        from pygmp import go, chan
        from pygmp.time import after, sleep
        c = chan()
        def late():
            sleep(0.3)
            c.send("late")
        go(late)
        print(c.recv())
        print(after(0.2).recv() > 0)
    """, timeout=20)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["late", "True"]


@pytest.mark.timeout(30)
def test_no_deadlock_while_plain_thread_running():
    r = run_script("""
        import threading, time
        from pygmp import chan
        c = chan()
        def t():
            time.sleep(0.3)
            c.send("from thread")
        threading.Thread(target=t, daemon=True).start()
        print(c.recv())
    """, timeout=20)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "from thread"


@pytest.mark.timeout(30)
def test_no_deadlock_while_goroutine_blocks_outside_runtime():
    # a goroutine stuck in a plain (not handed-off) blocking call is running,
    # not asleep: main waiting for it is no deadlock
    r = run_script("""
        import time
        from pygmp import go, chan
        c = chan()
        def g():
            time.sleep(0.5)
            c.send("slept")
        go(g)
        print(c.recv())
    """, timeout=20)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "slept"


@pytest.mark.timeout(30)
def test_no_deadlock_while_goroutine_computes():
    r = run_script("""
        from pygmp import go, chan
        c = chan()
        def g():
            x = 0
            for i in range(3_000_000):
                x += i
            c.send(x)
        go(g)
        print(c.recv())
    """, timeout=25)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(sum(range(3_000_000)))


@pytest.mark.timeout(30)
def test_main_exception_with_busy_goroutines_exits_1():
    r = run_script("""
        from pygmp import go, chan
        from pygmp.time import sleep
        def busy():
            while True:
                sleep(0.001)
        for _ in range(20):
            go(busy)
        sleep(0.05)
        raise RuntimeError("main fails")
    """, timeout=20)
    assert r.returncode == 1, r.stderr
    assert "RuntimeError: main fails" in r.stderr


@pytest.mark.timeout(30)
def test_panic_in_goroutine_started_from_plain_thread():
    r = run_script("""
        import threading
        from pygmp import go, chan
        def bad():
            raise ZeroDivisionError("from thread-spawned goroutine")
        t = threading.Thread(target=lambda: go(bad))
        t.start()
        t.join()
        chan().recv()
    """, timeout=20)
    assert r.returncode == 2, r.stderr
    assert "panic: ZeroDivisionError: from thread-spawned goroutine" in r.stderr


# ---------------------------------------------------------------- goexit in main

@pytest.mark.timeout(30)
def test_goexit_in_main_no_goroutines():
    r = run_script("""
        from pygmp.runtime import goexit
        print("before", flush=True)
        goexit()
        print("after")
    """, timeout=20)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert NO_GOROUTINES in r.stderr
    assert "before" in r.stdout and "after" not in r.stdout


@pytest.mark.timeout(30)
def test_goexit_in_main_others_keep_running():
    r = run_script("""
        from pygmp import go, chan
        from pygmp.time import sleep
        from pygmp.runtime import goexit
        def worker():
            for i in range(3):
                sleep(0.05)
                print("tick", i, flush=True)
        go(worker)
        goexit()
        print("after goexit")
    """, timeout=20)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stdout.splitlines() == ["tick 0", "tick 1", "tick 2"]
    assert NO_GOROUTINES in r.stderr


@pytest.mark.timeout(30)
def test_goexit_in_main_then_goroutine_os_exit():
    r = run_script("""
        import sys
        from pygmp import go
        from pygmp.time import sleep
        from pygmp.runtime import goexit
        def worker():
            sleep(0.1)
            print("worker done", flush=True)
            sys.exit(0)
        go(worker)
        goexit()
    """, timeout=20)
    assert r.returncode == 0, r.stderr
    assert "worker done" in r.stdout


@pytest.mark.timeout(30)
def test_goexit_in_main_runs_finally():
    r = run_script("""
        from pygmp.runtime import goexit
        try:
            goexit()
        finally:
            print("main finally", flush=True)
    """, timeout=20)
    assert r.returncode == 2
    assert "main finally" in r.stdout
    assert NO_GOROUTINES in r.stderr


@pytest.mark.timeout(30)
def test_goexit_in_main_other_goroutines_deadlock():
    r = run_script("""
        from pygmp import go, chan
        from pygmp.runtime import goexit
        go(chan().recv)
        goexit()
    """, timeout=20)
    assert r.returncode == 2
    assert DEADLOCK in r.stderr


# ---------------------------------------------------------------- Ctrl-C

_SIGINT_CHILD = """
import sys, threading
from pygmp import go, chan, select, nilchan
from pygmp.time import sleep
from pygmp.sync import WaitGroup, Mutex

def busy_goroutine():
    try:
        while True:
            sleep(0.01)
    except BaseException as e:
        print("GOROUTINE GOT", type(e).__name__, flush=True)
        raise

go(busy_goroutine)
where = sys.argv[1] if len(sys.argv) > 1 else %r
try:
    print("ready", flush=True)
    if where == "recv":
        chan().recv()
    elif where == "select":
        select(chan().recv, nilchan.recv)
    elif where == "sleep":
        sleep(60)
    elif where == "waitgroup":
        wg = WaitGroup(); wg.add(1); wg.wait()
    elif where == "mutex":
        m = Mutex(); m.lock(); m.lock()
    elif where == "plain":
        import time; time.sleep(60)
except KeyboardInterrupt:
    print("MAIN GOT KeyboardInterrupt", flush=True)
    c = chan()
    go(c.send, "still works")
    print(c.recv(), flush=True)
    sys.exit(7)
print("fell through", flush=True)
"""


@pytest.mark.timeout(40)
@pytest.mark.parametrize("where", ["recv", "select", "sleep", "waitgroup", "mutex", "plain"])
def test_ctrl_c_raises_keyboardinterrupt_in_main(where):
    p, path = spawn_script(_SIGINT_CHILD % where)
    try:
        line = p.stdout.readline()
        assert line.strip() == "ready", (line, p.stderr.read() if p.poll() is not None else "")
        import time
        time.sleep(0.3)  # let main park (if not parked yet, it still gets the KI)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
        os.unlink(path)
    assert p.returncode == 7, (p.returncode, out, err)
    assert "MAIN GOT KeyboardInterrupt" in out
    assert "still works" in out
    assert "GOROUTINE GOT" not in out


@pytest.mark.timeout(40)
def test_ctrl_c_uncaught_ends_program():
    p, path = spawn_script("""
        from pygmp import go, chan
        from pygmp.time import sleep
        def g():
            while True:
                sleep(0.01)
        go(g)
        print("ready", flush=True)
        chan().recv()
    """)
    try:
        assert p.stdout.readline().strip() == "ready"
        import time
        time.sleep(0.3)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
        os.unlink(path)
    # Python's behaviour for an uncaught KeyboardInterrupt: traceback, and
    # death by SIGINT (or status 130/1 depending on how it exits)
    assert p.returncode in (-signal.SIGINT, 130, 1), (p.returncode, err)
    assert "KeyboardInterrupt" in err


@pytest.mark.timeout(30)
def test_keyboardinterrupt_never_in_goroutine_when_main_plain_blocked():
    # main blocked in the OS; SIGINT lands in main, not the goroutines
    p, path = spawn_script("""
        import time, sys
        from pygmp import go
        from pygmp.time import sleep
        def g():
            try:
                while True:
                    x = 0
                    for i in range(10000):
                        x += i
                    sleep(0)
            except BaseException as e:
                print("GOROUTINE GOT", type(e).__name__, flush=True)
        for _ in range(4):
            go(g)
        print("ready", flush=True)
        try:
            time.sleep(60)
        except KeyboardInterrupt:
            print("main KI", flush=True)
            sys.exit(0)
    """)
    try:
        assert p.stdout.readline().strip() == "ready"
        import time
        time.sleep(0.3)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
        os.unlink(path)
    assert p.returncode == 0, err
    assert "main KI" in out
    assert "GOROUTINE GOT" not in out

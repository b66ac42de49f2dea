"""contextvars: each goroutine runs in a copy of the context of the code that
called go() (as an asyncio task does); and os.fork(): the child's runtime
starts afresh, the parent's is unaffected."""
import contextvars
import os
import sys
import threading

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _helpers import gomaxprocs_set, in_goroutine, recv_timeout, run_script  # noqa: E402

from pygmp import chan, go  # noqa: E402

var = contextvars.ContextVar("var", default="unset")
other = contextvars.ContextVar("other", default=0)


# ---------------------------------------------------------------- contextvars

@pytest.mark.timeout(10)
def test_goroutine_sees_callers_context():
    tok = var.set("main-value")
    try:
        assert in_goroutine(var.get) == "main-value"
    finally:
        var.reset(tok)
    assert in_goroutine(var.get) == "unset"


@pytest.mark.timeout(10)
def test_goroutine_changes_do_not_leak_back():
    tok = var.set("outer")
    try:
        def f():
            var.set("inner")
            other.set(99)
            return var.get(), other.get()

        assert in_goroutine(f) == ("inner", 99)
        assert var.get() == "outer"
        assert other.get() == 0
    finally:
        var.reset(tok)


@pytest.mark.timeout(10)
def test_context_captured_at_go_time():
    gate = chan()
    out = chan(1)
    tok = var.set("at-go")
    try:
        go(lambda: (gate.recv(), out.send(var.get())))
        var.set("changed-later")
        gate.send(None)
        assert recv_timeout(out) == "at-go"
    finally:
        var.reset(tok)


@pytest.mark.timeout(10)
def test_nested_goroutines_inherit_from_creator():
    out = chan(2)

    def child():
        out.send(("child", var.get()))

    def parent():
        var.set("parent-set")
        go(child)
        out.send(("parent", var.get()))

    tok = var.set("main")
    try:
        go(parent)
        got = dict([recv_timeout(out), recv_timeout(out)])
    finally:
        var.reset(tok)
    assert got == {"parent": "parent-set", "child": "parent-set"}


@pytest.mark.timeout(10)
def test_sibling_goroutines_isolated():
    n = 20
    start = chan()
    out = chan(n)

    def f(k):
        var.set(k)
        start.recv()  # all have set their value before any reads it back
        out.send((k, var.get()))

    for k in range(n):
        go(f, k)
    start.close()
    for _ in range(n):
        k, v = recv_timeout(out)
        assert k == v


@pytest.mark.timeout(60)
@pytest.mark.parametrize("procs", [1, 2])
def test_reused_goroutines_do_not_carry_context(procs):
    # spawn many goroutines one after another so finished greenlets get reused
    with gomaxprocs_set(procs):
        for i in range(300):
            def f(i=i):
                before = (var.get(), other.get())
                var.set("dirty-%d" % i)
                other.set(i + 1)
                return before

            assert in_goroutine(f) == ("unset", 0), i


@pytest.mark.timeout(30)
def test_reused_goroutines_get_their_creators_context():
    for i in range(200):
        tok = var.set("v%d" % i)
        try:
            def f():
                got = var.get()
                var.set("garbage")
                return got

            assert in_goroutine(f) == "v%d" % i
        finally:
            var.reset(tok)


@pytest.mark.timeout(10)
def test_go_from_plain_thread_uses_threads_context():
    out = chan(1)

    def t():
        var.set("thread-value")
        go(lambda: out.send(var.get()))

    th = threading.Thread(target=t)
    th.start()
    th.join(5)
    assert recv_timeout(out) == "thread-value"
    assert var.get() == "unset"


@pytest.mark.timeout(10)
def test_context_run_then_go():
    out = chan(1)
    ctx = contextvars.copy_context()
    ctx.run(var.set, "in-ctx")
    ctx.run(go, lambda: out.send(var.get()))
    assert recv_timeout(out) == "in-ctx"
    assert var.get() == "unset"


# ---------------------------------------------------------------- fork

@pytest.mark.timeout(60)
def test_os_fork_child_fresh_runtime_parent_unaffected():
    r = run_script("""
        import os, sys
        from pygmp import go, chan
        from pygmp.runtime import num_goroutine
        from pygmp.time import sleep

        # parent runtime busy: parked goroutines and a sleeping one
        gate = chan()
        for _ in range(10):
            go(gate.recv)
        def ticker():
            while True:
                sleep(0.01)
        go(ticker)
        c = chan()
        go(c.send, "warm")
        assert c.recv() == "warm"

        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(r)
                n0 = num_goroutine()
                out = chan()
                for i in range(100):
                    go(lambda i=i: out.send(i))
                s = sum(out.recv() for _ in range(100))
                os.write(w, ("%d %d\\n" % (n0, s)).encode())
                os._exit(0)
            except BaseException as e:
                os.write(w, ("ERR %r\\n" % (e,)).encode())
                os._exit(3)
        os.close(w)
        data = b""
        while True:
            chunk = os.read(r, 100)
            if not chunk:
                break
            data += chunk
        _, status = os.waitpid(pid, 0)
        print("child", data.decode().strip(), os.waitstatus_to_exitcode(status))
        # the parent still works
        out = chan()
        for i in range(10):
            go(out.send, i)
        print("parent", sum(out.recv() for _ in range(10)), num_goroutine() >= 12)
        gate.close()
    """, timeout=50)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "child 1 4950 0", r.stdout + r.stderr
    assert lines[1] == "parent 45 True"


@pytest.mark.timeout(60)
def test_fork_child_deadlock_detection_and_exit_path():
    # the child is a full pygmp program: main returning exits normally, and
    # a panic in a child goroutine exits the child with status 2
    r = run_script("""
        import os
        from pygmp import go, chan
        c = chan()
        go(c.send, 1)
        c.recv()
        pid = os.fork()
        if pid == 0:
            def boom():
                raise ValueError("child boom")
            go(boom)
            chan().recv()
            os._exit(0)
        _, st = os.waitpid(pid, 0)
        print("child status", os.waitstatus_to_exitcode(st))
    """, timeout=50)
    assert r.returncode == 0, r.stderr
    assert "child status 2" in r.stdout
    assert "panic: ValueError: child boom" in r.stderr


@pytest.mark.timeout(60)
def test_multiprocessing_fork_from_fresh_process():
    r = run_script("""
        import multiprocessing as mp
        from pygmp import go, chan

        def child(q):
            out = chan()
            for i in range(20):
                go(lambda i=i: out.send(i * 2))
            q.put(sum(out.recv() for _ in range(20)))

        if __name__ == "__main__":
            c = chan()
            go(c.send, "parent")
            assert c.recv() == "parent"
            ctx = mp.get_context("fork")
            q = ctx.Queue()
            p = ctx.Process(target=child, args=(q,))
            p.start()
            print(q.get(timeout=30))
            p.join(30)
            print(p.exitcode)
    """, timeout=50)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["380", "0"]

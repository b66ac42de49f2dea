"""pygmp.monkey: patch_threading() and patch_queue().

Patching is process-global, so every patched scenario runs in a child
interpreter (``run_patched``); this process never patches anything.  Each
child prints ``OK`` last and is bounded by a timeout.
"""
import _thread
import threading
import textwrap

from _helpers import run_script

PRELUDE = """\
import os, sys, time, gc, threading as _t0
from pygmp.monkey._threading import patch_threading
from pygmp.monkey._queue import patch_queue
from pygmp.monkey import _core
patch_threading()
patch_queue()
import threading, queue
from pygmp import go, chan
from pygmp.runtime import gomaxprocs
_real_sleep = time.sleep
OThread = _core.get_original("threading", "Thread")

def wait_all(ch, n, timeout=30):
    # receive n values from ch in the main thread, bounded
    out = []
    deadline = time.monotonic() + timeout
    for _ in range(n):
        from pygmp import select, default
        while True:
            i, v = select(ch.recv, default)
            if i == 0:
                out.append(v)
                break
            if time.monotonic() > deadline:
                raise SystemExit("timed out waiting for goroutines")
            _real_sleep(0.001)
    return out

def yield_():
    from pygmp.runtime import gosched
    gosched()
"""


def run_patched(src, gomaxprocs=2, timeout=60):
    r = run_script(PRELUDE + textwrap.dedent(src) + "\nprint('OK')\n", timeout=timeout,
                   env={"GOMAXPROCS": str(gomaxprocs)})
    assert r.returncode == 0 and r.stdout.rstrip().endswith("OK"), (
        "rc=%s\nstdout:\n%s\nstderr:\n%s" % (r.returncode, r.stdout[-3000:], r.stderr[-3000:]))
    return r


def test_this_process_is_not_patched():
    import queue
    import subprocess
    import pygmp.monkey._threading as _t      # importing patches nothing
    import pygmp.monkey._subprocess as _s
    assert _t.Lock is not threading.Lock and _s.Popen is not subprocess.Popen
    assert threading.Lock is _thread.allocate_lock or threading.Lock is getattr(_thread, "lock", None)
    assert threading.Thread.__module__ == "threading"
    assert queue.SimpleQueue.__module__ in ("_queue", "queue")
    assert subprocess.Popen.__module__ == "subprocess"


def test_lock_many_goroutines_exact_count():
    run_patched("""
        assert gomaxprocs() == 2
        lock = threading.Lock()
        n = [0]
        done = chan(200)
        def w():
            for _ in range(50):
                with lock:
                    v = n[0]
                    yield_()          # park/yield while holding it: others must wait
                    n[0] = v + 1
            done.send(1)
        for _ in range(200):
            go(w)
        wait_all(done, 200)
        assert n[0] == 200 * 50, n[0]
        assert not lock.locked()
        assert type(lock).__module__ == "pygmp.monkey._threading"
    """)


def test_rlock_condition_semaphore_barrier_event_counts():
    run_patched("""
        done = chan(1000)
        # RLock: reentrant per goroutine, exclusive across goroutines
        rl = threading.RLock()
        n = [0]
        def rw():
            for _ in range(20):
                with rl:
                    with rl:
                        v = n[0]; yield_(); n[0] = v + 1
            done.send(1)
        for _ in range(100):
            go(rw)
        wait_all(done, 100)
        assert n[0] == 2000, n[0]

        # Semaphore(3): never more than 3 inside
        sem = threading.Semaphore(3)
        inside = [0, 0]
        mu = threading.Lock()
        def sw():
            with sem:
                with mu:
                    inside[0] += 1; inside[1] = max(inside[1], inside[0])
                yield_(); yield_()
                with mu:
                    inside[0] -= 1
            done.send(1)
        for _ in range(100):
            go(sw)
        wait_all(done, 100)
        assert inside == [0, 3], inside

        bs = threading.BoundedSemaphore(1)
        bs.acquire(); bs.release()
        try:
            bs.release()
        except ValueError:
            pass
        else:
            raise AssertionError("BoundedSemaphore over-release")

        # Condition: 50 consumers, 50 producers, exact hand-over
        cv = threading.Condition()
        items = []
        got = []
        def cons():
            with cv:
                cv.wait_for(lambda: items)
                got.append(items.pop())
            done.send(1)
        def prod(i):
            with cv:
                items.append(i)
                cv.notify()
        for _ in range(50):
            go(cons)
        for i in range(50):
            go(prod, i)
        wait_all(done, 50)
        assert sorted(got) == list(range(50)), got

        # Barrier of 20 goroutines, 3 rounds
        b = threading.Barrier(20)
        idx = []
        def bw():
            for _ in range(3):
                idx.append(b.wait())
            done.send(1)
        for _ in range(20):
            go(bw)
        wait_all(done, 20)
        assert sorted(idx) == sorted(list(range(20)) * 3)

        # Event: 200 waiters, one set
        ev = threading.Event()
        def ew():
            assert ev.wait(10)
            done.send(1)
        for _ in range(200):
            go(ew)
        time.sleep(0.05)
        ev.set()
        wait_all(done, 200)
    """)


def test_queues_exact_counts():
    run_patched("""
        done = chan(100)
        for cls in (queue.Queue, queue.LifoQueue, queue.PriorityQueue, queue.SimpleQueue):
            q = cls() if cls is queue.SimpleQueue else cls(maxsize=5)
            total = []
            def prod(k):
                for i in range(100):
                    q.put(k * 1000 + i)
                done.send(1)
            def cons():
                s = 0
                for _ in range(100):
                    s += q.get(timeout=10)
                total.append(s)
                done.send(1)
            for k in range(10):
                go(cons)
                go(prod, k)
            wait_all(done, 20)
            want = sum(k * 1000 + i for k in range(10) for i in range(100))
            assert sum(total) == want, (cls, sum(total), want)
            assert q.empty()
        # join/task_done
        q = queue.Queue()
        def worker():
            while True:
                item = q.get()
                if item is None:
                    q.task_done()
                    return
                q.task_done()
        for _ in range(4):
            go(worker)
        for i in range(100):
            q.put(i)
        for _ in range(4):
            q.put(None)
        q.join()
        assert queue.SimpleQueue.__module__ == "pygmp.monkey._queue"
    """)


def test_parked_goroutines_hold_no_os_threads():
    run_patched("""
        import psutil
        proc = psutil.Process()
        ev = threading.Event()
        lock = threading.Lock(); lock.acquire()
        cv = threading.Condition()
        q = queue.Queue()
        sq = queue.SimpleQueue()
        started = chan(2000)
        done = chan(2000)
        def on_event():
            started.send(1); ev.wait(); done.send(1)
        def on_lock():
            started.send(1); lock.acquire(); lock.release(); done.send(1)
        def on_cond():
            with cv:
                started.send(1); cv.wait(); done.send(1)
        def on_queue():
            started.send(1); q.get(); done.send(1)
        def on_sq():
            started.send(1); sq.get(); done.send(1)
        for _ in range(1000):
            go(on_event)
        for f in (on_lock, on_cond, on_queue, on_sq):
            for _ in range(100):
                go(f)
        wait_all(started, 1400)
        time.sleep(0.3)
        nthreads = proc.num_threads()
        print("threads", nthreads)
        # main + 2 workers + sysmon + a spare: not one per waiter
        assert nthreads <= gomaxprocs() + 4, nthreads
        ev.set()
        lock.release()
        with cv:
            cv.notify_all()
        for _ in range(100):
            q.put(1); sq.put(1)
        wait_all(done, 1400)
    """)


def test_timeouts_and_argument_errors():
    run_patched("""
        res = chan(10)
        def body():
            out = {}
            l = threading.Lock(); l.acquire()
            t0 = time.monotonic(); out["lock"] = (l.acquire(timeout=0.2), time.monotonic() - t0)
            out["nb"] = l.acquire(False)
            out["zero"] = l.acquire(True, 0)
            for args, exc in (((False, 1), ValueError), ((True, -2), ValueError),
                              ((True, "x"), TypeError)):
                try:
                    l.acquire(*args)
                except exc as e:
                    out[str(args)] = str(e)
                else:
                    raise AssertionError(args)
            l.release()
            try:
                l.release()
            except RuntimeError as e:
                out["rel"] = str(e)
            cv = threading.Condition()
            with cv:
                t0 = time.monotonic(); out["cv"] = (cv.wait(0.1), time.monotonic() - t0)
            ev = threading.Event()
            t0 = time.monotonic(); out["ev"] = (ev.wait(0.1), time.monotonic() - t0)
            s = threading.Semaphore(0)
            t0 = time.monotonic(); out["sem"] = (s.acquire(timeout=0.1), time.monotonic() - t0)
            q = queue.Queue()
            t0 = time.monotonic()
            try:
                q.get(timeout=0.1)
            except queue.Empty:
                out["q"] = time.monotonic() - t0
            sq = queue.SimpleQueue()
            t0 = time.monotonic()
            try:
                sq.get(timeout=0.1)
            except queue.Empty:
                out["sq"] = time.monotonic() - t0
            try:
                sq.get(timeout=-1)
            except ValueError:
                out["sqneg"] = True
            try:
                sq.get_nowait()
            except queue.Empty:
                out["sqnw"] = True
            b = threading.Barrier(2, timeout=0.1)
            try:
                b.wait()
            except threading.BrokenBarrierError:
                out["barrier"] = True
            res.send(out)
        go(body)
        out = wait_all(res, 1)[0]
        ok, dt = out["lock"]
        assert ok is False and 0.18 <= dt < 1.0, out["lock"]
        assert out["nb"] is False and out["zero"] is False
        ol = _core.get_original("threading", "Lock")()
        for args in ((False, 1), (True, -2), (True, "x")):
            try:
                ol.acquire(*args)
            except Exception as e:
                assert out[str(args)] == str(e), (out[str(args)], str(e))
        assert out["rel"] == "release unlocked lock"
        for k in ("cv", "ev", "sem"):
            assert out[k][0] is False and 0.09 <= out[k][1] < 1.0, (k, out[k])
        assert 0.09 <= out["q"] < 1.0 and 0.09 <= out["sq"] < 1.0
        assert out["sqneg"] and out["sqnw"] and out["barrier"]

        # the same from the main thread (not a goroutine): unpatched behaviour
        l = threading.Lock(); l.acquire()
        t0 = time.monotonic()
        assert l.acquire(timeout=0.2) is False
        assert 0.18 <= time.monotonic() - t0 < 1.0
        assert l.acquire(blocking=False) is False
    """)


def test_mixed_plain_threads_and_goroutines():
    run_patched("""
        # One Lock contended by 4 plain threads (the ORIGINAL Thread class) and
        # 50 goroutines; each kind wakes the other.
        lock = threading.Lock()
        n = [0]
        done = chan(100)
        def gw():
            for _ in range(40):
                with lock:
                    v = n[0]; yield_(); n[0] = v + 1
            done.send(1)
        def tw():
            for _ in range(200):
                with lock:
                    v = n[0]; _real_sleep(0.0001); n[0] = v + 1
        ts = [OThread(target=tw) for _ in range(4)]
        for t in ts:
            t.start()
        for _ in range(50):
            go(gw)
        for t in ts:
            t.join(30)
            assert not t.is_alive()
        wait_all(done, 50)
        assert n[0] == 4 * 200 + 50 * 40, n[0]

        # A lock created in a goroutine, held there, acquired by the main thread
        # (blocks) and released by the goroutine: the main thread wakes.
        box = chan(1)
        rel = chan()
        def holder():
            l = threading.Lock(); l.acquire(); box.send(l); rel.recv(); l.release()
        go(holder)
        l = wait_all(box, 1)[0]
        go(lambda: (time.sleep(0) , rel.send(1)))
        t0 = time.monotonic()
        assert l.acquire(timeout=10)
        l.release()

        # A goroutine waits on a Lock held by the main thread.
        l2 = threading.Lock(); l2.acquire()
        got = chan(1)
        go(lambda: got.send(l2.acquire(timeout=10)))
        _real_sleep(0.1)
        l2.release()
        assert wait_all(got, 1) == [True]

        # Condition: goroutine producers, plain-thread consumers, and back.
        cv = threading.Condition()
        items = []
        seen = []
        def consume(k):
            for _ in range(k):
                with cv:
                    assert cv.wait_for(lambda: items, timeout=10)
                    seen.append(items.pop(0))
        cts = [OThread(target=consume, args=(25,)) for _ in range(2)]
        for t in cts:
            t.start()
        def produce(base):
            for i in range(10):
                with cv:
                    items.append(base + i)
                    cv.notify()
                yield_()
            done.send(1)
        for b in range(5):
            go(produce, b * 100)
        wait_all(done, 5)
        for t in cts:
            t.join(30)
            assert not t.is_alive()
        assert sorted(seen) == sorted(b * 100 + i for b in range(5) for i in range(10))

        # Queue: plain threads produce, goroutines consume, and the reverse.
        q = queue.Queue(maxsize=3)
        back = queue.Queue()
        def gcons():
            for _ in range(50):
                back.put(q.get(timeout=10) * 2)
            done.send(1)
        for _ in range(2):
            go(gcons)
        pts = [OThread(target=lambda: [q.put(i, timeout=10) for i in range(50)]) for _ in range(2)]
        for t in pts:
            t.start()
        wait_all(done, 2)
        res = sorted(back.get(timeout=10) for _ in range(100))
        assert res == sorted([i * 2 for i in range(50)] * 2)
        for t in pts:
            t.join(10)
    """)


def test_threading_local_isolation_and_cleanup():
    run_patched("""
        import weakref
        loc = threading.local()
        loc.x = "main"
        done = chan(200)
        errors = []
        def w(i):
            if hasattr(loc, "x"):
                errors.append(("leak", i))
            loc.x = i
            for _ in range(5):
                yield_()
                if loc.x != i:
                    errors.append((i, loc.x))
            done.send(1)
        for i in range(100):
            go(w, i)
        wait_all(done, 100)
        assert not errors, errors[:5]
        assert loc.x == "main"

        class L(threading.local):
            def __init__(self, v):
                self.v = v
                self.inits = getattr(self, "inits", 0) + 1
        l2 = L(7)
        def w2():
            assert l2.v == 7 and l2.inits == 1
            l2.v = 8
            done.send(l2.v)
        for _ in range(10):
            go(w2)
        assert wait_all(done, 10) == [8] * 10
        assert l2.v == 7
        try:
            threading.local(1)
        except TypeError:
            pass
        else:
            raise AssertionError("local(1) must raise TypeError")

        # a plain thread has its own values, too
        def pt():
            assert not hasattr(loc, "x")
            loc.x = "plain"
        t = OThread(target=pt); t.start(); t.join(10)
        assert loc.x == "main"

        # values of a patched Thread go when it ends
        class Big:
            pass
        refs = []
        def tw():
            loc.big = Big()
            refs.append(weakref.ref(loc.big))
        th = threading.Thread(target=tw); th.start(); th.join(10)
        gc.collect()
        assert refs[0]() is None, "thread-local value outlived its thread"
    """)


def test_current_thread_identity():
    run_patched("""
        import weakref
        done = chan(200)
        info = []
        def w():
            a = threading.current_thread()
            yield_()
            b = threading.current_thread()
            time.sleep(0)
            info.append((id(a), a is b, a.ident == threading.get_ident(), a.is_alive(),
                         not a.daemon, isinstance(a, threading.Thread), a.name))
            done.send(weakref.ref(a))
        for _ in range(100):
            go(w)
        refs = wait_all(done, 100)
        assert all(x[1] and x[2] and x[3] and x[4] and x[5] for x in info), info[:3]
        assert len({x[6] for x in info}) == 100
        assert threading.current_thread() is threading.main_thread()
        assert isinstance(threading.main_thread(), threading.Thread)
        # dummies are not listed, and do not leak after their goroutine ends
        names = {t.name for t in threading.enumerate()}
        assert not any(n.startswith("goroutine-") for n in names), names
        def spin():
            threading.current_thread()
            done.send(1)
        for _ in range(2000):
            go(spin)
        wait_all(done, 2000)
        gc.collect()
        from pygmp.monkey import _threading as M
        assert len(M._gthreads) == 0, len(M._gthreads)   # dummies live in the goroutines' contexts
        alive = sum(1 for r in refs if r() is not None)
        assert alive < 100, alive
        # joining a dummy is an error, as for threading's _DummyThread
        box = chan(1)
        def j():
            try:
                threading.current_thread().join()
            except RuntimeError as e:
                box.send(str(e))
        go(j)
        assert "dummy" in wait_all(box, 1)[0]
    """)


def test_thread_subclass_join_timeout_excepthook_enumerate():
    r = run_patched("""
        class T(threading.Thread):
            def __init__(self, d):
                super().__init__(name="worker-%s" % d)
                self.d = d
                self.out = None
            def run(self):
                time.sleep(0)            # unpatched sleep(0): returns at once
                ev.wait(10)
                self.out = (threading.current_thread() is self, threading.get_ident() == self.ident)
        ev = threading.Event()
        t = T(1)
        assert t.ident is None and not t.is_alive()
        go(lambda: None)                 # the runtime (its own threads) is up before counting
        _real_sleep(0.05)
        n0 = threading.active_count()
        t.start()
        assert t.is_alive() and t.ident is not None and t.native_id is not None
        assert t in threading.enumerate() and threading.active_count() == n0 + 1
        assert "started" in repr(t)
        t0 = time.monotonic()
        t.join(0.2)
        assert t.is_alive() and 0.18 <= time.monotonic() - t0 < 2
        ev.set()
        t.join(10)
        assert not t.is_alive() and t.out == (True, True), t.out
        assert "stopped" in repr(t) and t not in threading.enumerate()
        try:
            t.start()
        except RuntimeError:
            pass
        else:
            raise AssertionError("second start")
        try:
            threading.Thread().join()
        except RuntimeError:
            pass
        else:
            raise AssertionError("join before start")
        assert isinstance(t, threading.Thread) and isinstance(t, OThread)
        # it is a goroutine: the OS does not see a new thread per Thread
        import psutil
        evs = threading.Event()
        ths = [threading.Thread(target=evs.wait, args=(10,)) for _ in range(200)]
        for x in ths:
            x.start()
        assert psutil.Process().num_threads() <= gomaxprocs() + 4
        evs.set()
        for x in ths:
            x.join(10)
        # an exception in run() goes to threading.excepthook, not a panic
        def boom():
            raise ValueError("boom in thread")
        b = threading.Thread(target=boom, name="boomer"); b.start(); b.join(10)
        # threading.Timer
        fired = []
        tm = threading.Timer(0.05, fired.append, args=(1,)); tm.start(); tm.join(5)
        tm2 = threading.Timer(5, fired.append, args=(2,)); tm2.start(); tm2.cancel(); tm2.join(5)
        assert fired == [1], fired
        # a Thread started from a goroutine is not daemonic (the dummy is not)
        box = chan(1)
        def starter():
            th = threading.Thread(target=lambda: None); th.start(); th.join(); box.send(th.daemon)
        go(starter)
        assert wait_all(box, 1) == [False]
    """)
    assert "Exception in thread boomer" in r.stderr and "ValueError: boom in thread" in r.stderr
    assert "panic" not in r.stderr


def test_nondaemon_threads_joined_at_exit():
    r = run_script(PRELUDE + textwrap.dedent("""
        def late():
            time.sleep(0)
            ev = threading.Event()
            ev.wait(0.3)
            print("late thread done", flush=True)
        def forever():
            threading.Event().wait(60)
            print("daemon must not finish", flush=True)
        threading.Thread(target=late).start()
        threading.Thread(target=forever, daemon=True).start()
        print("main done", flush=True)
    """), timeout=30, env={"GOMAXPROCS": "2"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["main done", "late thread done"], r.stdout


def test_thread_pool_executor_map():
    run_patched("""
        from concurrent.futures import ThreadPoolExecutor
        import psutil
        seen = set()
        def f(x):
            seen.add((type(threading.current_thread()).__module__, threading.get_ident()))
            ev = threading.Event(); ev.wait(0.01)
            return x * x
        with ThreadPoolExecutor(max_workers=50) as ex:
            out = list(ex.map(f, range(100), timeout=30))
            nthreads = psutil.Process().num_threads()
        assert out == [x * x for x in range(100)]
        assert all(m == "pygmp.monkey._threading" for m, _ in seen), seen
        assert len({i for _, i in seen}) > 1
        assert nthreads <= gomaxprocs() + 4, nthreads
        # submit from goroutines, result() parks
        ex = ThreadPoolExecutor(max_workers=4)
        done = chan(20)
        def sub(i):
            done.send(ex.submit(f, i).result(timeout=10))
        for i in range(20):
            go(sub, i)
        assert sorted(wait_all(done, 20)) == [i * i for i in range(20)]
        ex.shutdown(wait=True)
    """)


def test_logging_from_goroutines():
    run_patched("""
        import io, logging
        buf = io.StringIO()
        h = logging.StreamHandler(buf)
        h.setFormatter(logging.Formatter("%(threadName)s|%(thread)d|%(message)s"))
        log = logging.getLogger("gm")
        log.addHandler(h)
        log.setLevel(logging.INFO)
        log.propagate = False
        assert type(h.lock._block).__module__ == "pygmp.monkey._threading"
        done = chan(100)
        def w(i):
            for j in range(10):
                log.info("msg %d %d", i, j)
                yield_()
            done.send(1)
        for i in range(100):
            go(w, i)
        wait_all(done, 100)
        lines = buf.getvalue().splitlines()
        assert len(lines) == 1000, len(lines)
        assert all(l.startswith("goroutine-") and "|msg " in l for l in lines), lines[:3]
        assert len({l.split("|")[0] for l in lines}) == 100
    """)


def test_patch_twice_and_get_original():
    run_patched("""
        L, T, Q = threading.Lock, threading.Thread, queue.SimpleQueue
        patch_threading(); patch_queue()
        assert threading.Lock is L and threading.Thread is T and queue.SimpleQueue is Q
        assert _core.is_module_patched("threading") and _core.is_module_patched("queue")
        OL = _core.get_original("threading", "Lock")
        import _thread
        assert OL in (_thread.allocate_lock, getattr(_thread, "lock", None)), OL
        assert _core.get_original("threading", "local") is _thread._local
        assert _core.get_original("queue", "SimpleQueue").__module__ == "_queue"
        OT = _core.get_original("threading", "Thread")
        assert OT.__module__ == "threading" and OT is not threading.Thread
        assert issubclass(threading.Thread, OT)
        # the original class gives a real OS thread whose current_thread is its own
        import psutil
        n0 = psutil.Process().num_threads()
        box = []
        ev = threading.Event()
        def body():
            box.append((threading.current_thread(), threading.get_ident() == _thread.get_ident()))
            ev.wait(5)
        t = OT(target=body); t.start()
        time.sleep(0.1)
        assert psutil.Process().num_threads() == n0 + 1
        ev.set(); t.join(5)
        assert box[0][0] is t and box[0][1]
    """)


def test_mixed_timeouts_keep_mutual_exclusion():
    # Goroutines and plain threads acquire one Lock with short random timeouts:
    # a timed-out waiter withdraws, a handed-over one owns the lock; never two
    # owners, no lost hand-over (every goroutine and thread finishes).
    run_patched("""
        import random
        lock = threading.Lock()
        owner = [None]
        stats = {"bad": 0, "ok": 0, "to": 0}
        mu = _core.get_original("threading", "Lock")()
        def attempt(me, rnd):
            if lock.acquire(timeout=rnd.choice((0.0005, 0.001, 0.005, -1))):
                if owner[0] is not None:
                    with mu:
                        stats["bad"] += 1
                owner[0] = me
                if rnd.random() < 0.5:
                    yield_()
                owner[0] = None
                lock.release()
                with mu:
                    stats["ok"] += 1
            else:
                with mu:
                    stats["to"] += 1
        done = chan(100)
        def gw(i):
            rnd = random.Random(i)
            for _ in range(200):
                attempt(("g", i), rnd)
            done.send(1)
        def tw(i):
            rnd = random.Random(1000 + i)
            for _ in range(200):
                attempt(("t", i), rnd)
                if rnd.random() < 0.3:
                    _real_sleep(0.0002)
        ts = [OThread(target=tw, args=(i,)) for i in range(4)]
        for t in ts:
            t.start()
        for i in range(40):
            go(gw, i)
        wait_all(done, 40, timeout=60)
        for t in ts:
            t.join(60)
            assert not t.is_alive()
        assert stats["bad"] == 0, stats
        assert stats["ok"] + stats["to"] == 44 * 200, stats
        assert not lock.locked()
        print(stats)
    """, timeout=120)


def test_interrupted_thread_waiter_withdraws():
    # The main thread waiting on a patched Lock is interrupted by a signal
    # handler's exception: its waiter goes, and the next release goes to the
    # goroutine queued behind it (no hand-over to the dead waiter).
    run_patched("""
        import signal
        class Alarm(Exception):
            pass
        def handler(*a):
            raise Alarm
        signal.signal(signal.SIGALRM, handler)
        lock = threading.Lock(); lock.acquire()
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        try:
            lock.acquire()
        except Alarm:
            pass
        else:
            raise AssertionError("not interrupted")
        got = chan(1)
        go(lambda: got.send(lock.acquire(timeout=10)))
        _real_sleep(0.1)
        lock.release()
        assert wait_all(got, 1) == [True]
        assert lock.locked()
        lock.release()
        assert lock.acquire(False)
    """)


def test_fork_from_a_goroutine():
    # threading's own fork handler must find the forking thread (it looks up
    # get_ident() in threading._active): no "Exception ignored", and the child
    # can use the patched primitives.
    r = run_patched("""
        import warnings
        warnings.simplefilter("ignore", DeprecationWarning)   # 3.12+: fork with threads
        res = chan(1)
        def body():
            l = threading.Lock()
            pid = os.fork()
            if pid == 0:
                try:
                    assert l.acquire(timeout=1)
                    l.release()
                    t = threading.current_thread()
                    ok = t is not None and threading.main_thread() is not None
                    os._exit(0 if ok else 3)
                except BaseException:
                    os._exit(4)
            _, st = os.waitpid(pid, 0)
            res.send(os.waitstatus_to_exitcode(st))
        go(body)
        assert wait_all(res, 1) == [0]
    """)
    assert "Exception ignored" not in r.stderr, r.stderr


def test_deadlock_still_detected_with_goroutine_threads():
    # Threads that are goroutines are not plain threads: when they and the main
    # goroutine are all parked for good, checkdead reports it (Go's behaviour)
    # instead of the process hanging.
    r = run_script(PRELUDE + textwrap.dedent("""
        ev = threading.Event()
        ts = [threading.Thread(target=ev.wait, daemon=True) for _ in range(3)]
        for t in ts:
            t.start()
        chan().recv()
    """), timeout=30, env={"GOMAXPROCS": "2"})
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "all goroutines are asleep - deadlock!" in r.stderr

"""CPython tests skipped by tests/test_monkey_cpython_threading.py, each with
its reason: ``"module.Class.test_name": "why"``.  A name a Python version does
not have is simply unused there."""

SKIPS = {
    "test_threading.ThreadTests.test_foreign_thread":
        "a thread started with _thread.start_new_thread is invisible to pygmp's "
        "deadlock detector until it first holds the GIL: the goroutine that parks "
        "at once on the lock that thread will release is reported as a deadlock",
    "test_threading.ThreadTests.test_ident_of_no_threading_threads":
        "as test_foreign_thread: a goroutine parks on a lock that a just-started "
        "_thread thread releases (reported as a deadlock)",
    "test_threading.ThreadTests.test_repr_stopped":
        "waits on _thread.allocate_lock() locks (not patched) in goroutines: a "
        "goroutine blocked on a real lock holds its worker thread",
    "test_threading.ThreadTests.test_limbo_cleanup":
        "mocks threading._start_new_thread; the patched Thread.start starts a "
        "goroutine without it",
    "test_threading.ThreadTests.test_main_thread":
        "asserts that the test body runs in the main thread; here it runs in a "
        "goroutine on purpose",
    "test_threading.ThreadTests.test_shutdown_locks":
        "inspects Thread._tstate_lock and threading._shutdown_locks: a goroutine "
        "Thread has no OS-thread state lock (non-daemon ones are joined at exit "
        "through threading._register_atexit instead)",
    "test_threading.ThreadTests.test_tstate_lock":
        "inspects and waits on Thread._tstate_lock, which a goroutine Thread "
        "does not have",
    "test_threading.ThreadTests.test_various_ops":
        "expects a distinct native_id (OS thread id) per Thread; goroutines that "
        "share a worker share its OS thread id",
    "test_threading.ThreadTests.test_various_ops_large_stack":
        "expects a distinct native_id (OS thread id) per Thread; goroutines that "
        "share a worker share its OS thread id",
    "test_threading.ThreadTests.test_various_ops_small_stack":
        "expects a distinct native_id (OS thread id) per Thread; goroutines that "
        "share a worker share its OS thread id",
    "test_threading.ExceptHookTests.test_excepthook_thread_None":
        "_thread._excepthook prints the OS thread's ident; the test compares it "
        "with threading.get_ident(), which in a goroutine is the goroutine's",
    "test_threading.ThreadTests.test_join_with_timeout":
        "(3.13) waits on a _thread.allocate_lock() lock (not patched) in a "
        "goroutine Thread: it holds its worker thread",
    "test_threading.ThreadTests.test_disallow_instantiation":
        "the patched Lock is a Python class: threading.Lock() instantiates it",
    "test_threading.ThreadTests.test_PyThreadState_SetAsyncExc":
        "raises an exception in the OS thread named by get_ident(); a goroutine's "
        "ident names no OS thread (the worker would spin forever)",
}

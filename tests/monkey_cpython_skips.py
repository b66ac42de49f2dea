"""CPython's own tests that tests/monkey_cpython_run.py skips under
pygmp.monkey.patch_all(), each with the reason.  Keys are test ids
(``module.Class.method``; the method is skipped in that class and in every
class that inherits it from there)."""

_SIGNAL = ("installs a signal handler (signal.signal), which only the main "
           "thread may do; the runner runs the tests inside a goroutine")
_NONBLOCK = ("checks the fd's O_NONBLOCK flag: a patched socket's fd is always "
             "non-blocking underneath, its timeout (gettimeout/getblocking, which "
             "do follow setblocking/settimeout) is kept in Python")

SKIPS = {
    # test_socket
    "test.test_socket.GeneralModuleTests.test_sendall_interrupted": _SIGNAL,
    "test.test_socket.GeneralModuleTests.test_sendall_interrupted_with_timeout": _SIGNAL,
    "test.test_socket.TCPTimeoutTest.testInterruptedTimeout": _SIGNAL,
    "test.test_socket.GeneralModuleTests.testRefCountGetNameInfo": (
        "a reference-count check on getnameinfo's argument: in a goroutine the "
        "lookup goes through the handoff, whose re-raised exception keeps the "
        "argument alive in its traceback a little longer"),
    "test.test_socket.NonBlockingTCPTests.testSetBlocking": _NONBLOCK,
    "test.test_socket.NonBlockingTCPTests.testSetBlocking_overflow": _NONBLOCK,
    "test.test_socket.NonblockConstantTest.test_SOCK_NONBLOCK": _NONBLOCK,
    "test.test_socket.ThreadedVSOCKSocketStreamTest.testStream": (
        "hangs unpatched too where the kernel has AF_VSOCK but no peer (a VM): "
        "not one of the classes tests/test_monkey_cpython.py runs"),
    "test.test_socket.InterruptedRecvTimeoutTest.setUp": _SIGNAL,
    "test.test_socket.InterruptedSendTimeoutTest.setUp": _SIGNAL,
    # test_selectors
    "test.test_selectors.BaseSelectorTestCase.test_select_interrupt_exc": _SIGNAL,
    "test.test_selectors.BaseSelectorTestCase.test_select_interrupt_noraise": _SIGNAL,
}

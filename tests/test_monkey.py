"""pygmp.monkey's API surface: patch_all's flags, is_module_patched,
get_original, idempotence, the late-patch warning, ``python -m pygmp.monkey``.
Everything that patches runs in a fresh interpreter; this process only
imports pygmp.monkey (which patches nothing by itself)."""
import os
import subprocess
import sys
import tempfile
import textwrap

import pytest

from _helpers import _env
from _monkey_helpers import run_patched

pytestmark = pytest.mark.timeout(120)


def _need_thread_half():
    # patch_all() with no flags also patches threading/queue/subprocess, which
    # live in the other half of the package (pygmp.monkey._threading,
    # pygmp.monkey._subprocess).
    pytest.importorskip("pygmp.monkey._threading")
    pytest.importorskip("pygmp.monkey._subprocess")


def test_import_patches_nothing_and_api_names():
    import socket
    import time
    import pygmp.monkey as M
    assert set(M.__all__) >= {"patch_all", "patch_socket", "patch_dns", "patch_ssl",
                              "patch_select", "patch_selectors", "patch_time",
                              "patch_threading", "patch_queue", "patch_subprocess",
                              "patch_os", "is_module_patched", "get_original"}
    for name in M.__all__:
        assert callable(getattr(M, name))
    assert not M.is_module_patched("socket")
    assert socket.socket.__module__ == "socket"
    assert time.sleep is M.get_original("time", "sleep")


def test_get_original_and_is_module_patched_bad_types():
    import socket
    import pygmp.monkey as M
    assert M.get_original("socket", "socket") is socket.socket     # never patched: current
    assert M.get_original("socket", ["socket", "getaddrinfo"]) == [socket.socket,
                                                                  socket.getaddrinfo]
    with pytest.raises(TypeError):
        M.get_original(socket, "socket")
    with pytest.raises(TypeError):
        M.get_original("socket", 3)
    with pytest.raises(TypeError):
        M.is_module_patched(socket)
    with pytest.raises(TypeError):
        M.patch_all(socket="yes")
    with pytest.raises(TypeError):
        M.patch_all(nosuchflag=True)
    with pytest.raises(AttributeError):
        M.get_original("socket", "no_such_attribute")


def test_patch_flags_originals_idempotence():
    r, out = run_patched('''
        import ssl
        M = pygmp.monkey
        from pygmp.monkey import _wait
        names = ["socket", "dns", "ssl", "select", "selectors", "time", "os"]
        first = {n: M.is_module_patched(n) for n in names}
        cur = socket.socket
        M.patch_all(threading=False, queue=False, subprocess=False)   # again: nothing changes
        M.patch_socket(); M.patch_select(); M.patch_time()
        emit(first=first,
             same=socket.socket is cur,
             orig_socket=M.get_original("socket", "socket").__module__,
             orig_is_base=M.get_original("socket", "socket") in socket.socket.__mro__,
             cur_socket=socket.socket.__module__,
             orig_sleep=M.get_original("time", "sleep").__module__,
             orig_select_is_builtin=type(M.get_original("select", "select")).__name__,
             sslclass=ssl.SSLContext.sslsocket_class.__module__,
             ssl_orig=M.get_original("ssl.SSLContext", "sslsocket_class") is ssl.SSLSocket,
             never=M.get_original("os", "getpid") is os.getpid,
             isinst=isinstance(socket.socket(), M.get_original("socket", "socket")))
    ''', patch="pygmp.monkey.patch_all(time=False, os=False, threading=False, queue=False, "
               "subprocess=False)\npygmp.monkey.patch_time()\npygmp.monkey.patch_os()")
    assert out["first"] == dict.fromkeys(["socket", "dns", "ssl", "select", "selectors",
                                          "time", "os"], True)
    assert out["same"] and out["orig_socket"] == "socket" and out["orig_is_base"]
    assert out["cur_socket"] == "pygmp.monkey._socket"
    assert out["orig_sleep"] == "time"
    assert out["orig_select_is_builtin"] == "builtin_function_or_method"
    assert out["sslclass"] == "pygmp.monkey._ssl" and out["ssl_orig"]
    assert out["never"] and out["isinst"]


def test_flags_leave_parts_out():
    r, out = run_patched('''
        M = pygmp.monkey
        emit(patched={n: M.is_module_patched(n) for n in
                      ["socket", "dns", "ssl", "select", "selectors", "time", "os"]},
             socket_mod=socket.socket.__module__, sleep_mod=getattr(time.sleep, "__module__", None),
             select_is_orig=select.select is M.get_original("select", "select"))
    ''', patch="pygmp.monkey.patch_all(socket=False, time=False, select=False, ssl=False, "
               "threading=False, queue=False, subprocess=False)")
    assert out["patched"] == {"socket": False, "dns": True, "ssl": False, "select": False,
                              "selectors": True, "time": False, "os": True}
    assert out["socket_mod"] == "socket" and out["sleep_mod"] == "time"
    assert out["select_is_orig"]


def test_patch_all_full():
    _need_thread_half()
    r, out = run_patched('''
        emit(p={n: pygmp.monkey.is_module_patched(n) for n in ("socket", "time", "os")})
    ''', patch="pygmp.monkey.patch_all()")
    assert all(out["p"].values())


def test_no_warning_when_patched_first():
    r, out = run_patched('''
        emit(ok=True)
    ''', patch="import warnings\nwarnings.simplefilter('error')\n"
               "pygmp.monkey.patch_all(threading=False, queue=False, subprocess=False)")
    assert out["ok"]
    assert "RuntimeWarning" not in r.stderr


def test_late_patch_warns_once_naming_the_module():
    r, out = run_patched('''
        emit(n=len(caught), msgs=[str(w.message) for w in caught],
             cats=[w.category.__name__ for w in caught])
    ''', patch='''
import sys, types, warnings
late = types.ModuleType("late_socket_user")
from socket import socket as _early_socket
late.socket = _early_socket                  # as "from socket import socket" would
late2 = types.ModuleType("late_sleep_user")
from time import sleep as _early_sleep
late2.sleep = _early_sleep
sys.modules["late_socket_user"] = late
sys.modules["late_sleep_user"] = late2
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    pygmp.monkey.patch_all(threading=False, queue=False, subprocess=False)
    pygmp.monkey.patch_all(threading=False, queue=False, subprocess=False)
    pygmp.monkey.patch_socket()
''')
    assert out["n"] == 2, out
    assert set(out["cats"]) == {"RuntimeWarning"}
    sock_msg = [m for m in out["msgs"] if "'socket'" in m]
    time_msg = [m for m in out["msgs"] if "'time'" in m]
    assert len(sock_msg) == 1 and "late_socket_user" in sock_msg[0], out
    assert len(time_msg) == 1 and "late_sleep_user" in time_msg[0], out


def _run_main(src, *args, timeout=60):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "script.py")
        with open(path, "w") as f:
            f.write(textwrap.dedent(src))
        r = subprocess.run([sys.executable, "-m", "pygmp.monkey", path] + list(args),
                           capture_output=True, text=True, timeout=timeout,
                           env=_env(), cwd=d)    # not the source tree: -m puts cwd first
        return r, d


def test_main_runs_script_patched():
    _need_thread_half()
    r, d = _run_main('''
        import json, os, socket, sys, time
        import pygmp.monkey
        from pygmp import go, chan
        ch = chan()
        def g():
            a, b = socket.socketpair()
            b.send(b"ok")
            ch.send(a.recv(2).decode())
        go(g)
        print(json.dumps({"argv": sys.argv, "path0": sys.path[0], "name": __name__,
                          "patched": pygmp.monkey.is_module_patched("socket"),
                          "sock": socket.socket.__module__, "recv": ch.recv()}))
    ''', "a", "b c")
    assert r.returncode == 0, r.stderr
    import json
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["argv"][1:] == ["a", "b c"] and out["argv"][0].endswith("script.py")
    assert os.path.realpath(out["path0"]) == os.path.realpath(d)
    assert out["name"] == "__main__" and out["patched"]
    assert out["sock"] == "pygmp.monkey._socket" and out["recv"] == "ok"


def test_main_exit_status_and_traceback():
    _need_thread_half()
    r, _ = _run_main("import sys\nsys.exit(3)\n")
    assert r.returncode == 3, r.stderr
    r, _ = _run_main("def f():\n    raise ValueError('boom')\nf()\n")
    assert r.returncode == 1
    assert "Traceback" in r.stderr and "ValueError: boom" in r.stderr
    r, _ = _run_main("print('fine')\n")
    assert r.returncode == 0 and r.stdout.strip() == "fine"


def test_main_usage():
    r = subprocess.run([sys.executable, "-m", "pygmp.monkey"], capture_output=True,
                       text=True, timeout=60, env=_env(), cwd=tempfile.gettempdir())
    assert r.returncode == 2 and "usage" in r.stderr


def test_plain_thread_and_main_thread_calls_are_unpatched():
    r, out = run_patched('''
        from pygmp.monkey import _wait
        res = {}
        def plain():
            res["in_goroutine"] = _wait.in_goroutine()
            a, b = socket.socketpair()
            a.settimeout(0.1)
            t = time.monotonic()
            try:
                a.recv(1)
            except socket.timeout:
                res["timeout"] = time.monotonic() - t
            a.settimeout(None)
            threading.Timer(0.1, lambda: b.send(b"z")).start()
            res["blocking_recv"] = a.recv(1).decode()
            a.close(); b.close()
            t = time.monotonic()
            time.sleep(0.05)
            res["sleep"] = time.monotonic() - t
            r, w = os.pipe()
            threading.Timer(0.05, lambda: os.write(w, b"p")).start()
            res["select"] = select.select([r], [], [], 5)[0] == [r]
            res["read"] = os.read(r, 1).decode()
            os.close(r); os.close(w)
        t = threading.Thread(target=plain)
        t.start(); t.join(20)
        res["main_in_goroutine"] = _wait.in_goroutine()
        res["g_in_goroutine"] = in_g(_wait.in_goroutine)
        emit(**res)
    ''')
    assert out["in_goroutine"] is False and out["main_in_goroutine"] is False
    assert out["g_in_goroutine"] is True
    assert 0.09 <= out["timeout"] < 1.0
    assert out["blocking_recv"] == "z" and out["select"] and out["read"] == "p"
    assert out["sleep"] >= 0.05


def test_thread_made_before_patching_gets_the_originals():
    r, out = run_patched('''
        go_on.set()
        early.join(20)
        emit(**res)
    ''', patch='''
import threading, socket as _sock, time as _time
res = {}
go_on = threading.Event()
def early_body():
    go_on.wait(20)
    from pygmp.monkey import _wait
    res["in_goroutine"] = _wait.in_goroutine()
    a, b = _sock.socketpair()
    res["patched_class"] = type(a).__module__
    a.settimeout(0.1)
    t = _time.monotonic()
    try:
        a.recv(1)
    except _sock.timeout:
        res["timeout"] = _time.monotonic() - t
    b.send(b"q")
    a.settimeout(None)
    res["recv"] = a.recv(1).decode()
    a.close(); b.close()
early = threading.Thread(target=early_body)
early.start()
pygmp.monkey.patch_all(threading=False, queue=False, subprocess=False)
''')
    assert out["in_goroutine"] is False
    assert out["patched_class"] == "pygmp.monkey._socket"
    assert 0.09 <= out["timeout"] < 1.0 and out["recv"] == "q"

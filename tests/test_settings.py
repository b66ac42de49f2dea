"""The settings table (pygmp/runtime/settings.py): every variable declared once,
parsed once; unknown GODEBUG keys ignored; a bad value warns and keeps the
default."""
import pytest

from pygmp.runtime import settings
from pygmp.runtime.cpu import num_cpu

from _helpers import run_script


def load(capsys, **env):
    s = settings.load(env)
    return s, capsys.readouterr().err


def test_defaults(capsys):
    s, err = load(capsys)
    assert s.GOMAXPROCS is None
    assert (s.schedtrace, s.scheddetail, s.asyncpreemptoff, s.schedstall) == (0, False, False, False)
    assert err == ""


def test_gomaxprocs(capsys):
    s, err = load(capsys, GOMAXPROCS=" 3 ")
    assert s.GOMAXPROCS == 3 and err == ""


@pytest.mark.parametrize("bad", ["0", "-2", "two", "1.5"])
def test_bad_gomaxprocs_warns_and_keeps_default(capsys, bad):
    s, err = load(capsys, GOMAXPROCS=bad)
    assert s.GOMAXPROCS is None
    assert "GOMAXPROCS" in err and repr(bad) in err and "integer >= 1" in err


def test_godebug_keys_unknown_ignored_last_wins(capsys):
    s, err = load(capsys, GODEBUG="schedtrace=10,http2debug=1,scheddetail=1,bogus,schedtrace=20")
    assert s.schedtrace == 20 and s.scheddetail is True
    assert err == ""


def test_godebug_bad_value_warns(capsys):
    s, err = load(capsys, GODEBUG="asyncpreemptoff=yes,schedtrace=-5")
    assert s.asyncpreemptoff is False and s.schedtrace == 0
    assert "GODEBUG asyncpreemptoff" in err and "0 or 1" in err
    assert "GODEBUG schedtrace" in err


def test_table_names_every_setting_once():
    names = [row[0] for row in settings.table()]
    assert len(names) == len(set(names))
    assert "GOMAXPROCS" in names and "GODEBUG=schedtrace" in names
    for name, kind, default, meaning in settings.table():
        assert kind in ("int", "bool", "choice") and meaning


def test_bad_gomaxprocs_in_a_program():
    r = run_script("""
        from pygmp.runtime import gomaxprocs, num_cpu
        print(gomaxprocs(), num_cpu())
    """, env={"GOMAXPROCS": "lots"})
    assert r.returncode == 0, r.stderr
    a, b = r.stdout.split()
    assert a == b == str(num_cpu())
    assert r.stderr.count("GOMAXPROCS") == 1

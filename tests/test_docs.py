"""docs/api.md documents every public name: each public module has a section
(a ``## `pygmp.x` `` heading) that names every entry of the module's
``__all__`` in backquotes, and every public method of a public class
(``Class.method`` or ``.method``).  A new public module of the package needs a
section too.  And the repository's documents link to files that exist."""
import importlib
import inspect
import os
import pkgutil
import re

import pytest

from _helpers import REPO

API = os.path.join(REPO, "docs", "api.md")
MODULES = ["pygmp", "pygmp.runtime", "pygmp.time", "pygmp.sync", "pygmp.context",
           "pygmp.net", "pygmp.syscall", "pygmp.signal", "pygmp.metrics"]


def _sections():
    with open(API, encoding="utf-8") as f:
        text = f.read()
    out = {}
    for part in re.split(r"^## ", text, flags=re.M)[1:]:
        m = re.match(r"`([\w.]+)`", part)
        if m:
            out[m.group(1)] = part
    return out


def _public_modules():
    """The fixed list, plus every public top-level module of the installed
    package (so a module added later is checked too)."""
    import pygmp
    found = {"pygmp." + m.name for m in pkgutil.iter_modules(pygmp.__path__)
             if not m.name.startswith("_")}
    return sorted(set(MODULES) | found)


def _methods(cls):
    """Public callables that ``cls`` defines itself or inherits from a pygmp
    class (not from builtins such as ``str`` or ``Exception``)."""
    names = []
    for name in dir(cls):
        if name.startswith("_"):
            continue
        owner = next((k for k in cls.__mro__ if name in k.__dict__), None)
        if owner is None or owner.__module__ == "builtins":
            continue
        if callable(getattr(cls, name)) and not inspect.isclass(getattr(cls, name)):
            names.append(name)
    return names


def _mentions(text, name):
    """``name`` in backquotes at the start of a code span, or as a
    qualified name (``pygmp.net.dial``)."""
    return re.search(r"`(?:[\w.]*\.)?%s(?![\w])" % re.escape(name), text) is not None


@pytest.mark.parametrize("modname", _public_modules())
def test_every_public_name_is_documented(modname):
    sections = _sections()
    assert modname in sections, "docs/api.md has no '## `%s`' section" % modname
    text = sections[modname]
    mod = importlib.import_module(modname)
    names = getattr(mod, "__all__", None)
    assert names is not None, "%s has no __all__" % modname
    missing = [n for n in names if not _mentions(text, n)]
    for n in names:
        obj = getattr(mod, n)
        if inspect.isclass(obj):
            for meth in _methods(obj):
                if not re.search(r"\.%s(?![\w])" % re.escape(meth), text):
                    missing.append("%s.%s" % (n, meth))
    assert not missing, "docs/api.md, section `%s`, does not document: %s" % (
        modname, ", ".join(missing))


def test_no_section_for_a_module_that_does_not_exist():
    for name in _sections():
        importlib.import_module(name)


DOCS = ["README.md", "docs/design.md", "docs/api.md", "bench/README.md", "pygmp/HACKING.md"]


@pytest.mark.parametrize("doc", DOCS)
def test_relative_links_resolve(doc):
    path = os.path.join(REPO, doc)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    bad = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue                # http:, https:, mailto:
        file = target.split("#", 1)[0]
        if file and not os.path.exists(os.path.join(os.path.dirname(path), file)):
            bad.append(target)
    assert not bad, "%s links to missing files: %s" % (doc, bad)


def test_design_doc_is_where_the_code_says():
    """Code comments cite "DESIGN.md" / "DESIGN §N": the file is docs/design.md
    and keeps the section numbers they cite."""
    with open(os.path.join(REPO, "docs", "design.md"), encoding="utf-8") as f:
        heads = re.findall(r"^## (\d+)\. ", f.read(), flags=re.M)
    assert heads[:10] == [str(i) for i in range(1, 11)], heads


def _readme_snippets():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        return re.findall(r"^```python\n(.*?)^```", f.read(), flags=re.M | re.S)


def _claimed_output(src):
    """What a snippet says it prints: the comment after a ``print(...)`` on
    its line, and comment lines right below a print."""
    claims, after_print = [], False
    for line in src.splitlines():
        m = re.match(r"\s*print\(.*\)\s+# (.+)$", line)
        c = re.match(r"# (.+)$", line)
        if m:
            claims.append(m.group(1))
        elif c and after_print:
            claims.append(c.group(1))
            continue
        after_print = bool(re.match(r"\s*print\(", line))
    return claims


@pytest.mark.timeout(120)
@pytest.mark.parametrize("n", range(len(_readme_snippets())))
def test_readme_snippet_runs(n):
    """Every Python snippet of the README runs as it is and prints what its
    comments say it prints."""
    from _helpers import run_script
    src = _readme_snippets()[n]
    r = run_script(src, timeout=100)
    assert r.returncode == 0, "snippet %d failed:\n%s\n%s" % (n, src, r.stderr[-3000:])
    for want in _claimed_output(src):
        assert want.strip() in r.stdout, "snippet %d: %r not in its output %r" % (
            n, want, r.stdout)

"""The patch registry shared by every ``patch_<name>()``.

Invariants (HACKING.md "Monkey patching"):
* ``_originals[module][attr]`` is the attribute as it was before pygmp first
  replaced it; a second patch of the same attribute keeps the first original,
  so ``get_original`` never returns a pygmp object.
* ``_patched`` holds a module name once every attribute its ``patch_<name>()``
  replaces has been replaced; patching is idempotent.
* Both are written under ``_lock`` (patching may race with a goroutine that
  imports lazily); readers take no lock (a dict read of a published value).
"""

import importlib
import threading

_lock = threading.Lock()
_originals = {}          # module name -> {attr: original value or _MISSING}
_patched = set()         # module names whose patch_<name>() has run
_MISSING = object()


def patch_item(module, attr, new, name=None):
    """Replace ``module.attr`` with ``new``, remembering the first original.
    ``module`` may also be a class (``ssl.SSLContext``); ``name`` is then the
    registry key (default ``module.__name__``)."""
    if name is None:
        name = module.__name__
    with _lock:
        saved = _originals.setdefault(name, {})
        if attr not in saved:
            saved[attr] = module.__dict__.get(attr, _MISSING)
        setattr(module, attr, new)


def mark_patched(module_name):
    with _lock:
        _patched.add(module_name)


def is_module_patched(name):
    """True once ``patch_<name>()`` (or ``patch_all``) has patched module ``name``."""
    if not isinstance(name, str):
        raise TypeError("is_module_patched: name must be a str, not %s"
                        % type(name).__name__)
    return name in _patched


def get_original(module_name, attr):
    """The attribute ``module_name.attr`` as it was before patching, or the
    current one if pygmp never patched it.  ``attr`` may be a list/tuple of
    names (gevent's form), giving a list."""
    if not isinstance(module_name, str):
        raise TypeError("get_original: module_name must be a str, not %s"
                        % type(module_name).__name__)
    if isinstance(attr, (list, tuple)):
        return [get_original(module_name, a) for a in attr]
    if not isinstance(attr, str):
        raise TypeError("get_original: attr must be a str, not %s"
                        % type(attr).__name__)
    saved = _originals.get(module_name, {}).get(attr, _MISSING)
    if saved is not _MISSING:
        return saved
    return getattr(importlib.import_module(module_name), attr)

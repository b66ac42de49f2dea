"""Selects the scheduler hot path: the C extension ``pygmp._hot`` (built at
install from csrc/hot.c), or the pure-Python reference implementation when it is
missing or ``PYGMP_PUREPY=1`` is set.  Both pass the same tests."""

import os

_hot = None
if not os.environ.get("PYGMP_PUREPY"):
    try:
        from .. import _hot
    except ImportError:
        _hot = None

ENABLED = _hot is not None

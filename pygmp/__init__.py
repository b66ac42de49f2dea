"""pygmp: Go's G/M/P runtime for CPython.

    from pygmp import go, chan
    out = chan()
    for i in range(10_000):
        go(lambda i: out.send(i * i), i)
    print(sum(out.recv() for _ in range(10_000)))

Goroutines are greenlets run by per-P worker OS threads; see docs/design.md and
pygmp/HACKING.md.  The runtime starts itself on first use.
"""

from .runtime.proc import go
from .runtime.chan import Chan as chan, nilchan, select, default
from .runtime.panic import PanicError

__all__ = ["go", "chan", "select", "default", "nilchan", "PanicError"]
__version__ = "0.1.0"

import sys as _sys
if _sys.version_info[:2] == (3, 12):
    # CPython 3.12 refuses to start threads once the main thread has begun
    # shutting down (3.11 and 3.13 allow it while non-daemon threads are joined).
    # A plain thread that first uses pygmp after the main script returned could
    # then get no worker threads at all, so on 3.12 the runtime starts here.
    from .runtime.proc import start as _start
    _start()

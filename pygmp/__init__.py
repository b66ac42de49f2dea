"""pygmp: Go's G/M/P runtime for CPython.

    from pygmp import go, chan
    out = chan()
    for i in range(10_000):
        go(lambda i: out.send(i * i), i)
    print(sum(out.recv() for _ in range(10_000)))

Goroutines are greenlets run by per-P worker OS threads; see DESIGN.md and
pygmp/HACKING.md.  The runtime starts itself on first use.
"""

from .runtime.proc import go
from .runtime.chan import Chan as chan, nilchan, select, default
from .runtime.panic import PanicError

__all__ = ["go", "chan", "select", "default", "nilchan", "PanicError"]
__version__ = "0.1.0"

"""Pausing the cyclic garbage collector around bulk work, from any thread.

An import chunk allocates a few objects per row (its changes, their rows
and leaves), none in a cycle, while the register holds millions of live
objects; every full collection those allocations trigger walks them all,
which cost an import two thirds of its time. Reference counting still frees
everything meanwhile; only cycles wait for the collector to resume, when the
last pause that overlaps ends.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["collection_paused"]

_lock = threading.Lock()
_pauses = 0
_resume = False  # whether the collector was on when the first pause began


@contextmanager
def collection_paused() -> Iterator[None]:
    """No cyclic collection inside; pauses in several threads may overlap."""
    global _pauses, _resume
    with _lock:
        if _pauses == 0:
            _resume = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _lock:
            _pauses -= 1
            if _pauses == 0 and _resume:
                gc.enable()

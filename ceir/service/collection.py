"""Pausing the cyclic garbage collector around bulk work, from any thread.

An import chunk allocates a few objects per row (its changes, their rows
and leaves), none in a cycle, while the register holds millions of live
objects; every full collection those allocations trigger walks them all,
which cost an import two thirds of its time. Reference counting still frees
everything meanwhile; only cycles wait for the collector.

The pause that found the collector on turns it back on when it ends, even
if a pause begun meanwhile in another thread is still running (that one
then finishes with the collector on): the collector is never off for longer
than one chunk, however many imports overlap, and whatever cycles piled up
are collected at the next allocation after it resumes.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["collection_paused"]

_lock = threading.Lock()


@contextmanager
def collection_paused() -> Iterator[None]:
    """No cyclic collection inside, at most until the pause that began first ends."""
    with _lock:
        owner = gc.isenabled()
        if owner:
            gc.disable()
    try:
        yield
    finally:
        if owner:
            gc.enable()

"""Giving freed memory back to the operating system.

Building country-sized lists (or replaying a log into them) allocates far
more short-lived Python objects than the lists keep; CPython frees them, but
the C allocator keeps most of the pages. ``release_freed_memory`` asks it to
return them (glibc's ``malloc_trim``; elsewhere it only collects garbage).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys


def release_freed_memory() -> None:
    gc.collect()
    if not sys.platform.startswith("linux"):
        return
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # a C library without it (musl)
        return
    trim(0)

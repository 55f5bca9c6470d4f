"""Compact tables for country-sized lists: sorted numpy arrays plus a small
overlay of recent changes, merged into new arrays off the hot path.

Shared by the register (``ceir.domain.lists``) and the operator node's
replica (``operators_sim.replica``); it imports nothing of either, nor of
``ceir.service``, ``ceir.storage``, ``ceir.api`` or ``ceir.v1``.
"""

from .keys import Keyed, KeyTable
from .memory import release_freed_memory
from .merger import BackgroundMerger
from .pairs import PairTable
from .search import BucketIndex, find

__all__ = [
    "BackgroundMerger",
    "BucketIndex",
    "KeyTable",
    "Keyed",
    "PairTable",
    "find",
    "release_freed_memory",
]

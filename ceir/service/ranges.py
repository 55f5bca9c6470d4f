"""Dense ranges of IMEIs, and the record of which whitelisted IMEIs were seen.

An IMEI key is TAC (8 digits) and serial (6): a TAC allocation holds
1,000,000 serials. A *run* is a set of keys with consecutive serials in
one TAC. Produced phones of one model are rarely registered as long runs
unit by unit; an upload of a whole allocated range is one run.

``SeenRecord`` is how the register knows that an IMEI was "never seen on any
network": every check this server answers WHITELISTED because the IMEI is
registered (``Reason.REGISTERED``) notes its key. It is kept compactly (8
bytes per distinct key seen: a sorted numpy array, merged from an append
buffer), in memory: it starts empty when the server starts
(``since_us``), and it sees only checks this server answers (operators in
authorize mode, or CheckEquipment from anyone); nodes deciding locally from
synchronised lists check nothing here.
"""

from __future__ import annotations

import threading
from array import array
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from ceir.domain.model import Decision, Reason

__all__ = ["SERIALS", "SeenRecord", "dense_runs", "run_bounds"]

SERIALS = 1_000_000  # serial numbers per TAC
U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
# Keys buffered before they are merged into the sorted array: at least this
# many, and at least half the array, so that merging costs O(log n) a check
# however many keys were seen (the buffer holds at most half as many again).
FLUSH = 1 << 16


def run_bounds(keys: U64, breaks: npt.NDArray[np.bool_] | None = None) -> tuple[I64, I64]:
    """Index of the first and of the last key of every run of sorted unique ``keys``.

    ``breaks[i]`` True also starts a new run at ``i`` (another uploader).
    """
    if keys.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    step = np.diff(keys) != 1
    tac = keys // np.uint64(SERIALS)
    new = np.concatenate(([True], step | (np.diff(tac) != 0)))
    if breaks is not None:
        new |= breaks
    starts = np.flatnonzero(new).astype(np.int64)
    ends = np.concatenate((starts[1:] - 1, [keys.size - 1])).astype(np.int64)
    return starts, ends


def dense_runs(keys: Iterable[int]) -> list[tuple[int, int]]:
    """The runs of ``keys`` (sorted, unique) as (first key, last key)."""
    array_ = np.fromiter(keys, dtype=np.uint64)
    starts, ends = run_bounds(array_)
    return [(int(array_[s]), int(array_[e])) for s, e in zip(starts, ends, strict=True)]


class SeenRecord:
    """The keys of whitelisted IMEIs checked since ``since_us``."""

    def __init__(self, since_us: int) -> None:
        self.since_us = since_us
        self.checks = 0  # checks of registered IMEIs noted (merged so far)
        self._buffer: array[int] = array("Q")
        self._keys: U64 = np.zeros(0, dtype=np.uint64)
        self._flush_at = FLUSH
        self._lock = threading.Lock()

    def note(self, decision: Decision) -> None:
        """Note a check's decision (called on every check; cheap)."""
        reasons = decision.reasons
        if reasons and reasons[0] is Reason.REGISTERED and decision.imei_key is not None:
            with self._lock:
                self._buffer.append(decision.imei_key)
                full = len(self._buffer) >= self._flush_at
            if full:
                self._merge()

    def note_many(self, decisions: Iterable[Decision]) -> None:
        """``note`` for a batch's decisions, under one lock."""
        registered = Reason.REGISTERED
        keys = [
            d.imei_key
            for d in decisions
            if d.reasons and d.reasons[0] is registered and d.imei_key is not None
        ]
        if keys:
            with self._lock:
                self._buffer.extend(keys)
                full = len(self._buffer) >= self._flush_at
            if full:
                self._merge()

    def _merge(self) -> None:
        with self._lock:
            buffer, self._buffer = self._buffer, array("Q")
            self.checks += len(buffer)
            if buffer:
                # Sorting beats numpy's hash-based unique on uint64 keys.
                merged = np.concatenate((self._keys, np.frombuffer(buffer, dtype=np.uint64)))
                merged.sort()
                first = np.ones(merged.size, dtype=np.bool_)
                np.not_equal(merged[1:], merged[:-1], out=first[1:])
                self._keys = merged[first]
                self._flush_at = max(FLUSH, self._keys.size >> 1)

    def keys(self) -> U64:
        """Every key seen, sorted and unique."""
        self._merge()
        return self._keys

    def seen(self, keys: U64) -> npt.NDArray[np.bool_]:
        """Which of ``keys`` were seen."""
        known = self.keys()
        if known.size == 0:
            return np.zeros(keys.shape, dtype=np.bool_)
        at = np.minimum(np.searchsorted(known, keys), known.size - 1)
        found: npt.NDArray[np.bool_] = known[at] == keys
        return found

    @property
    def nbytes(self) -> int:
        return int(self._keys.nbytes) + self._buffer.itemsize * len(self._buffer)

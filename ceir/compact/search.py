"""Finding keys in a sorted uint64 array: a batch at a time (numpy), or one
at a time within a ``BucketIndex`` bucket (``KeyTable.get`` bisects a
memoryview: a fraction of a numpy call for a single key)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]
Positions = npt.NDArray[np.intp]
EMPTY_U64: U64 = np.empty(0, dtype=np.uint64)


def find(sorted_keys: U64, queries: U64) -> tuple[Positions, Bools]:
    """Positions of ``queries`` in ``sorted_keys`` and whether each is there."""
    count = sorted_keys.shape[0]
    if count == 0:
        return np.zeros(queries.shape[0], dtype=np.intp), np.zeros(queries.shape[0], bool)
    positions = np.searchsorted(sorted_keys, queries)
    np.minimum(positions, count - 1, out=positions)
    return positions, sorted_keys[positions] == queries


class BucketIndex:
    """Where each range of keys starts in a sorted array, by their top bits:
    a batch search then narrows every query to its bucket at once and
    finishes with a few vectorised halving steps, instead of ``log2(n)``
    cache misses per query; a single search bisects one bucket only. About
    16 keys per bucket on average: the index costs a quarter of a byte per
    key."""

    def __init__(self, keys: U64) -> None:
        self.keys = keys
        count = keys.shape[0]
        self.bits = min(max(count.bit_length() - 4, 8), 24)
        # Buckets over the keys' own range: IMEIs share their first digits.
        self.low = int(keys[0]) if count else 0
        span = int(keys[-1]) - self.low if count else 0
        self.shift = max(span.bit_length() - self.bits, 0)
        self.buckets = 1 << self.bits
        bounds = np.arange(self.buckets, dtype=np.uint64) << np.uint64(self.shift)
        bounds = np.minimum(bounds, np.uint64(2**64 - 1 - self.low)) + np.uint64(self.low)
        starts = np.append(np.searchsorted(keys, bounds), count)  # the last bucket ends there
        self.starts = starts.astype(np.int32 if count < 2**31 else np.int64)
        widest = int(np.max(np.diff(self.starts))) if count else 0
        self.steps = max(widest, 1).bit_length()  # halvings that close the widest bucket
        self._starts = self.starts.data

    def find(self, queries: U64) -> tuple[Positions, Bools]:
        keys = self.keys
        count = keys.shape[0]
        buckets = self.buckets
        # A query below the lowest key wraps around: past the last bucket.
        offset = queries - np.uint64(self.low)
        bucket = np.minimum(offset >> np.uint64(self.shift), np.uint64(buckets)).astype(np.int64)
        low = self.starts[bucket].astype(np.int64)
        high = self.starts[np.minimum(bucket + 1, buckets)].astype(np.int64)
        last = count - 1
        for _ in range(self.steps):
            middle = (low + high) >> 1
            right = (keys[np.minimum(middle, last)] < queries) & (low < high)
            low = np.where(right, middle + 1, low)
            high = np.where(right, high, middle)
        positions = np.minimum(low, last).astype(np.intp)
        return positions, keys[positions] == queries

    def bounds(self, key: int) -> tuple[int, int]:
        """The slice of the keys where ``key`` would be."""
        if key < self.low:
            return 0, 0
        bucket = min((key - self.low) >> self.shift, self.buckets)
        return self._starts[bucket], self._starts[min(bucket + 1, self.buckets)]

    def nbytes(self) -> int:
        return int(self.starts.nbytes)

"""Compact tables for a country-sized replica: sorted numpy arrays plus a
small overlay of recent changes, merged into new arrays off the hot path.

A ``KeyTable`` maps a uint64 key to one value (the whitelist: valid-until;
the blacklist: cause and block date). A ``PairTable`` holds (key, IMSI code)
pairs with an int64 value (the notification list: block date; the exception
list: unused). Neither keeps one Python object per entry: the base arrays
hold everything but the overlay, and the overlay is merged away once it
grows past a threshold.

Reads see three layers, newest first: the *active* overlay (where changes
go), the *frozen* overlay (being merged by a background thread, read-only)
and the *base* arrays. ``freeze`` / ``build_merged`` / ``install`` are the
merge protocol: the owner freezes under its lock, builds outside it, and
installs under it again. The tables themselves do no locking.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]
_EMPTY_U64: U64 = np.empty(0, dtype=np.uint64)


def _find(sorted_keys: U64, queries: U64) -> tuple[npt.NDArray[np.intp], Bools]:
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
    cache misses per query. About 16 keys per bucket on average: the index
    costs a quarter of a byte per key."""

    def __init__(self, keys: U64) -> None:
        self.keys = keys
        count = keys.shape[0]
        self.bits = min(max(count.bit_length() - 4, 8), 24)
        top = int(keys[-1]) if count else 0
        self.shift = max(top.bit_length() - self.bits, 0)
        buckets = 1 << self.bits
        bounds = np.arange(buckets + 1, dtype=np.uint64) << np.uint64(self.shift)
        self.starts = np.searchsorted(keys, bounds).astype(np.int32 if count < 2**31 else np.int64)
        widest = int(np.max(np.diff(self.starts))) if count else 0
        self.steps = max(widest, 1).bit_length()  # halvings that close the widest bucket

    def find(self, queries: U64) -> tuple[npt.NDArray[np.intp], Bools]:
        keys = self.keys
        count = keys.shape[0]
        buckets = 1 << self.bits
        bucket = np.minimum(queries >> np.uint64(self.shift), np.uint64(buckets)).astype(np.int64)
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

    def nbytes(self) -> int:
        return int(self.starts.nbytes)


class _Keyed(NamedTuple):
    keys: U64
    values: npt.NDArray[Any]


class KeyTable:
    """Sorted unique uint64 keys with one value column of ``dtype``."""

    def __init__(self, dtype: type[np.generic]) -> None:
        self.dtype = np.dtype(dtype)
        self._base = _Keyed(_EMPTY_U64, np.empty(0, dtype=self.dtype))
        self._index: BucketIndex | None = None
        self._frozen: dict[int, int | None] | None = None
        self._active: dict[int, int | None] = {}
        self._size = 0
        self.generation = 0

    # --- whole-table operations --------------------------------------------------

    def load(self, keys: U64, values: npt.NDArray[Any]) -> None:
        """Replace everything with these entries (keys need not be sorted)."""
        keys = np.asarray(keys, dtype=np.uint64)
        values = np.asarray(values, dtype=self.dtype)
        if keys.shape[0] > 1 and not bool(np.all(keys[1:] > keys[:-1])):
            order = np.argsort(keys, kind="stable")
            keys, values = keys[order], values[order]
            if bool(np.any(keys[1:] == keys[:-1])):
                raise ValueError("a key table cannot hold a key twice")
        self._base = _Keyed(keys, values)
        self._index = _index_for(keys)
        self._frozen = None
        self._active = {}
        self._size = int(keys.shape[0])
        self.generation += 1

    def __len__(self) -> int:
        return self._size

    @property
    def overlay_size(self) -> int:
        return len(self._active) + len(self._frozen or ())

    def nbytes(self) -> int:
        """Bytes of the base arrays and their index (the overlay is small by
        construction)."""
        index = self._index.nbytes() if self._index is not None else 0
        return int(self._base.keys.nbytes + self._base.values.nbytes) + index

    # --- one key -------------------------------------------------------------------

    def get(self, key: int) -> int | None:
        """The value of ``key``, or None if absent."""
        for layer in (self._active, self._frozen):
            if layer is not None and key in layer:
                return layer[key]
        keys = self._base.keys
        position = int(np.searchsorted(keys, np.uint64(key)))
        if position < keys.shape[0] and int(keys[position]) == key:
            return int(self._base.values[position])
        return None

    def put(self, key: int, value: int) -> None:
        if self.get(key) is None:
            self._size += 1
        self._active[key] = value

    def delete(self, key: int) -> None:
        if self.get(key) is not None:
            self._size -= 1
            self._active[key] = None

    # --- batches -------------------------------------------------------------------

    def lookup(self, queries: U64) -> tuple[Bools, npt.NDArray[Any]]:
        """For each query key: present?, and its value (0 where absent)."""
        index = self._index
        if index is not None and queries.shape[0] >= INDEXED_QUERIES:
            positions, found = index.find(queries)
        else:
            positions, found = _find(self._base.keys, queries)
        if self._base.keys.shape[0]:
            values = self._base.values[positions]  # a copy: fancy indexing
            values[~found] = 0
        else:
            values = np.zeros(queries.shape[0], dtype=self.dtype)
        for layer in (self._frozen, self._active):  # newest last, so it wins
            if layer:
                _apply_layer(layer, queries, found, values)
        return found, values

    # --- merging -------------------------------------------------------------------

    def freeze(self) -> bool:
        """Start a merge: the active overlay becomes read-only. False if there
        is nothing to merge or a merge is already under way."""
        if self._frozen is not None or not self._active:
            return False
        self._frozen, self._active = self._active, {}
        return True

    def build_merged(self) -> _Keyed:
        """New base arrays = base + frozen overlay (safe without the lock)."""
        base, frozen = self._base, self._frozen
        if not frozen:
            return base
        overlay_keys = np.fromiter(frozen.keys(), dtype=np.uint64, count=len(frozen))
        order = np.argsort(overlay_keys)
        overlay_keys = overlay_keys[order]
        raw = list(frozen.values())
        present = np.array([v is not None for v in raw], dtype=bool)[order]
        overlay_values = np.array([0 if v is None else v for v in raw], dtype=self.dtype)[order]
        positions, found = _find(base.keys, overlay_keys)
        keep = np.ones(base.keys.shape[0], dtype=bool)
        keep[positions[found]] = False
        kept_keys, kept_values = base.keys[keep], base.values[keep]
        add_keys, add_values = overlay_keys[present], overlay_values[present]
        at = np.searchsorted(kept_keys, add_keys)
        return _Keyed(np.insert(kept_keys, at, add_keys), np.insert(kept_values, at, add_values))

    def build_index(self, merged: _Keyed) -> BucketIndex | None:
        """The index of merged arrays (safe without the lock)."""
        return _index_for(merged.keys)

    def install(self, merged: _Keyed, generation: int, index: BucketIndex | None = None) -> None:
        """Finish a merge begun at ``generation`` (dropped if the table was
        reloaded meanwhile)."""
        if generation == self.generation and self._frozen is not None:
            self._base = merged
            self._index = index
            self._frozen = None


INDEXED_TABLE = 1 << 16  # smaller tables fit in cache: plain binary search
INDEXED_QUERIES = 256


def _index_for(keys: U64) -> BucketIndex | None:
    return BucketIndex(keys) if keys.shape[0] >= INDEXED_TABLE else None


def _apply_layer(
    layer: dict[int, int | None], queries: U64, found: Bools, values: npt.NDArray[Any]
) -> None:
    """Override lookups with an overlay layer's entries."""
    if queries.shape[0] <= 4 * len(layer):
        hits = ((i, layer[k]) for i, k in enumerate(queries.tolist()) if k in layer)
    else:
        layer_keys = np.fromiter(layer.keys(), dtype=np.uint64, count=len(layer))
        layer_keys.sort()
        _, hit = _find(layer_keys, queries)
        indices = np.flatnonzero(hit)
        hits = ((int(i), layer[int(queries[i])]) for i in indices)
    for index, value in hits:
        found[index] = value is not None
        values[index] = 0 if value is None else value


class _Paired(NamedTuple):
    keys: U64
    imsis: U64
    values: I64


class PairTable:
    """(key, IMSI code) pairs with an int64 value, sorted by key then code.

    The overlay is indexed by key (key -> {IMSI code: value or None}), so
    reading one key's pairs costs its pairs, not the overlay's size.
    """

    def __init__(self) -> None:
        self._base = _Paired(_EMPTY_U64, _EMPTY_U64, np.empty(0, dtype=np.int64))
        self._frozen: dict[int, dict[int, int | None]] | None = None
        self._active: dict[int, dict[int, int | None]] = {}
        self._active_pairs = 0
        self._frozen_pairs = 0
        self._touched_array: U64 | None = None  # sorted keys of both layers, cached
        self._size = 0
        self.generation = 0

    def load(self, keys: U64, imsis: U64, values: I64 | None = None) -> None:
        keys = np.asarray(keys, dtype=np.uint64)
        imsis = np.asarray(imsis, dtype=np.uint64)
        if values is None:
            values = np.zeros(keys.shape[0], dtype=np.int64)
        order = np.lexsort((imsis, keys))
        self._base = _Paired(keys[order], imsis[order], np.asarray(values, np.int64)[order])
        self._frozen = None
        self._active = {}
        self._active_pairs = self._frozen_pairs = 0
        self._touched_array = None
        self._size = int(keys.shape[0])
        self.generation += 1

    def __len__(self) -> int:
        return self._size

    @property
    def overlay_size(self) -> int:
        return self._active_pairs + self._frozen_pairs

    def nbytes(self) -> int:
        base = self._base
        return int(base.keys.nbytes + base.imsis.nbytes + base.values.nbytes)

    def entries(self, key: int) -> dict[int, int]:
        """Every (IMSI code -> value) of one key."""
        base = self._base
        low = int(np.searchsorted(base.keys, np.uint64(key), side="left"))
        high = int(np.searchsorted(base.keys, np.uint64(key), side="right"))
        result = dict(
            zip(base.imsis[low:high].tolist(), base.values[low:high].tolist(), strict=True)
        )
        for layer in (self._frozen, self._active):
            pairs = layer.get(key) if layer else None
            if pairs:
                for imsi, value in pairs.items():
                    if value is None:
                        result.pop(imsi, None)
                    else:
                        result[imsi] = value
        return result

    def get(self, key: int, imsi: int) -> int | None:
        return self.entries(key).get(imsi)

    def put(self, key: int, imsi: int, value: int = 0) -> None:
        if self.get(key, imsi) is None:
            self._size += 1
        self._set(key, imsi, value)

    def delete(self, key: int, imsi: int) -> None:
        if self.get(key, imsi) is not None:
            self._size -= 1
            self._set(key, imsi, None)

    def _set(self, key: int, imsi: int, value: int | None) -> None:
        pairs = self._active.get(key)
        if pairs is None:
            pairs = self._active[key] = {}
            self._touched_array = None
        if imsi not in pairs:
            self._active_pairs += 1
        pairs[imsi] = value

    def key_candidates(self, queries: U64) -> Bools:
        """True where a query key may have pairs (exact for the base arrays;
        keys named by the overlay are always candidates)."""
        _, found = _find(self._base.keys, queries)
        layers = [layer for layer in (self._active, self._frozen) if layer]
        if not layers:
            return found
        if queries.shape[0] <= 64:  # a few attaches: ask the dicts
            for index, key in enumerate(queries.tolist()):
                if any(key in layer for layer in layers):
                    found[index] = True
            return found
        if self._touched_array is None:
            touched = set().union(*layers)
            array = np.fromiter(touched, dtype=np.uint64, count=len(touched))
            array.sort()
            self._touched_array = array
        _, in_overlay = _find(self._touched_array, queries)
        return found | in_overlay

    def freeze(self) -> bool:
        if self._frozen is not None or not self._active:
            return False
        self._frozen, self._active = self._active, {}
        self._frozen_pairs, self._active_pairs = self._active_pairs, 0
        return True

    def build_merged(self) -> _Paired:
        base, frozen = self._base, self._frozen
        if not frozen:
            return base
        drop: list[int] = []
        add: list[tuple[int, int, int]] = []
        for key, pairs in frozen.items():
            low = int(np.searchsorted(base.keys, np.uint64(key), side="left"))
            high = int(np.searchsorted(base.keys, np.uint64(key), side="right"))
            for index in range(low, high):
                if int(base.imsis[index]) in pairs:
                    drop.append(index)
            add.extend((key, imsi, value) for imsi, value in pairs.items() if value is not None)
        keep = np.ones(base.keys.shape[0], dtype=bool)
        keep[drop] = False
        added = np.array(add, dtype=np.uint64).reshape(-1, 3)
        keys = np.concatenate([base.keys[keep], added[:, 0]])
        imsis = np.concatenate([base.imsis[keep], added[:, 1]])
        values = np.concatenate([base.values[keep], added[:, 2].astype(np.int64)])
        order = np.lexsort((imsis, keys))
        return _Paired(keys[order], imsis[order], values[order])

    def install(self, merged: _Paired, generation: int) -> None:
        if generation != self.generation or self._frozen is None:
            return
        self._base = merged
        self._frozen = None
        self._frozen_pairs = 0
        self._touched_array = None

"""``KeyTable``: sorted unique uint64 keys with one value column.

Reads see three layers, newest first: the *active* overlay (a dict where
changes go), the *frozen* overlay (being merged by another thread,
read-only) and the *base* arrays. ``freeze`` / ``build_merged`` /
``install`` are the merge protocol: the owner freezes under its lock,
builds outside it, and installs under it again. The table does no locking:
its owner serialises writes, freezes and installs.

Readers need no lock: the base, its index and the frozen overlay are one
immutable ``_Stable`` value replaced in a single assignment, and a reader
looks at the active overlay *before* the stable layers. A merge only moves
entries from the active overlay into the stable layers, so whatever the
reader missed in the overlay it read is in the stable layers it reads next.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from .search import EMPTY_U64, U64, Bools, BucketIndex, find

Values = npt.NDArray[Any]
Overlay = dict[int, int | None]  # key -> value, None: deleted
INDEXED_TABLE = 1 << 16  # smaller tables fit in cache: plain binary search
INDEXED_QUERIES = 256
OVERLAY_ENTRY_BYTES = 100  # about what a dict entry with two ints costs


class Keyed(NamedTuple):
    """Sorted unique keys and their values."""

    keys: U64
    values: Values


class _Stable(NamedTuple):
    base: Keyed
    bucket_index: BucketIndex | None
    frozen: Overlay | None
    key_view: memoryview  # of base.keys, for single-key bisects
    value_view: memoryview  # of base.values


def _stable(base: Keyed, index: BucketIndex | None, frozen: Overlay | None) -> _Stable:
    return _Stable(base, index, frozen, base.keys.data, base.values.data)


class KeyTable:
    """Sorted unique uint64 keys with one value column of ``dtype``."""

    def __init__(self, dtype: type[np.generic]) -> None:
        self.dtype = np.dtype(dtype)
        self._stable = _stable(Keyed(EMPTY_U64, np.empty(0, dtype=self.dtype)), None, None)
        self._active: Overlay = {}
        self._size = 0
        self.generation = 0

    # --- whole-table operations --------------------------------------------------

    def load(self, keys: U64, values: Values) -> None:
        """Replace everything with these entries (keys need not be sorted)."""
        keys = np.asarray(keys, dtype=np.uint64)
        values = np.asarray(values, dtype=self.dtype)
        if keys.shape[0] > 1 and not bool(np.all(keys[1:] > keys[:-1])):
            order = np.argsort(keys, kind="stable")
            keys, values = keys[order], values[order]
            if bool(np.any(keys[1:] == keys[:-1])):
                raise ValueError("a key table cannot hold a key twice")
        self._active = {}
        self._stable = _stable(Keyed(keys, values), _index_for(keys), None)
        self._size = int(keys.shape[0])
        self.generation += 1

    def __len__(self) -> int:
        return self._size

    @property
    def overlay_size(self) -> int:
        return len(self._active) + len(self._stable.frozen or ())

    @property
    def base_size(self) -> int:
        return int(self._stable.base.keys.shape[0])

    def nbytes(self) -> int:
        """Bytes of the base arrays, their index and (estimated) the overlay."""
        stable = self._stable
        index = stable.bucket_index.nbytes() if stable.bucket_index is not None else 0
        base = int(stable.base.keys.nbytes + stable.base.values.nbytes)
        return base + index + OVERLAY_ENTRY_BYTES * self.overlay_size

    def snapshot(self) -> Keyed:
        """Every entry as new sorted arrays (the owner keeps writes and
        installs away meanwhile)."""
        active = self._active
        stable = self._stable
        merged = _merge(_merge(stable.base, stable.frozen, self.dtype), active, self.dtype)
        if merged.keys is stable.base.keys:  # nothing to merge: copy all the same
            return Keyed(merged.keys.copy(), merged.values.copy())
        return merged

    # --- one key -------------------------------------------------------------------

    def get(self, key: int) -> int | None:
        """The value of ``key``, or None if absent."""
        active = self._active  # before the stable layers: see the module's docstring
        if key in active:
            return active[key]
        stable = self._stable
        frozen = stable.frozen
        if frozen is not None and key in frozen:
            return frozen[key]
        keys = stable.key_view
        index = stable.bucket_index
        low, high = (0, len(keys)) if index is None else index.bounds(key)
        position = bisect_left(keys, key, low, high)
        if position < high and keys[position] == key:
            return int(stable.value_view[position])
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

    def lookup(self, queries: U64) -> tuple[Bools, Values]:
        """For each query key: present?, and its value (0 where absent)."""
        active = self._active
        stable = self._stable
        base = stable.base
        if stable.bucket_index is not None and queries.shape[0] >= INDEXED_QUERIES:
            positions, found = stable.bucket_index.find(queries)
        else:
            positions, found = find(base.keys, queries)
        if base.keys.shape[0]:
            values = base.values[positions]  # a copy: fancy indexing
            values[~found] = 0
        else:
            values = np.zeros(queries.shape[0], dtype=self.dtype)
        for layer in (stable.frozen, active):  # newest last, so it wins
            if layer:
                _apply_layer(layer, queries, found, values)
        return found, values

    # --- merging -------------------------------------------------------------------

    def freeze(self) -> bool:
        """Start a merge: the active overlay becomes read-only. False if there
        is nothing to merge or a merge is already under way."""
        stable = self._stable
        if stable.frozen is not None or not self._active:
            return False
        # The frozen layer first: a reader between the two assignments sees
        # the overlay twice, never not at all.
        self._stable = stable._replace(frozen=self._active)
        self._active = {}
        return True

    def build_merged(self) -> Keyed:
        """New base arrays = base + frozen overlay (safe without the lock)."""
        stable = self._stable
        return _merge(stable.base, stable.frozen, self.dtype)

    def build_index(self, merged: Keyed) -> BucketIndex | None:
        """The index of merged arrays (safe without the lock)."""
        return _index_for(merged.keys)

    def install(self, merged: Keyed, generation: int, index: BucketIndex | None = None) -> None:
        """Finish a merge begun at ``generation`` (dropped if the table was
        reloaded meanwhile)."""
        if generation == self.generation and self._stable.frozen is not None:
            self._stable = _stable(merged, index, None)


def _index_for(keys: U64) -> BucketIndex | None:
    return BucketIndex(keys) if keys.shape[0] >= INDEXED_TABLE else None


def _merge(base: Keyed, overlay: Overlay | None, dtype: np.dtype[Any]) -> Keyed:
    """Base arrays with an overlay's puts and deletes."""
    if not overlay:
        return base
    items = list(overlay.items())  # one pass: the overlay may be the live one
    overlay_keys = np.fromiter((k for k, _ in items), dtype=np.uint64, count=len(items))
    order = np.argsort(overlay_keys)
    overlay_keys = overlay_keys[order]
    present = np.fromiter((v is not None for _, v in items), dtype=bool, count=len(items))[order]
    overlay_values = np.array([0 if v is None else v for _, v in items], dtype=dtype)[order]
    positions, found = find(base.keys, overlay_keys)
    keep = np.ones(base.keys.shape[0], dtype=bool)
    keep[positions[found]] = False
    kept_keys, kept_values = base.keys[keep], base.values[keep]
    add_keys, add_values = overlay_keys[present], overlay_values[present]
    at = np.searchsorted(kept_keys, add_keys)
    return Keyed(np.insert(kept_keys, at, add_keys), np.insert(kept_values, at, add_values))


def _apply_layer(layer: Overlay, queries: U64, found: Bools, values: Values) -> None:
    """Override lookups with an overlay layer's entries."""
    if queries.shape[0] <= 4 * len(layer):
        hits = ((i, layer[k]) for i, k in enumerate(queries.tolist()) if k in layer)
    else:
        layer_keys = np.fromiter(layer.keys(), dtype=np.uint64, count=len(layer))
        layer_keys.sort()
        _, hit = find(layer_keys, queries)
        indices = np.flatnonzero(hit)
        hits = ((int(i), layer[int(queries[i])]) for i in indices)
    for index, value in hits:
        found[index] = value is not None
        values[index] = 0 if value is None else value

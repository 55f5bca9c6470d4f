"""``PairTable``: (key, IMSI code) pairs with an int64 value (the node's
notification list: block date; its exception list: unused), as sorted
arrays plus an overlay, with the merge protocol of ``KeyTable``. Unlike
``KeyTable`` its readers hold the owner's lock (the replica's batches do)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .search import EMPTY_U64, I64, U64, Bools, find


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
        self._base = _Paired(EMPTY_U64, EMPTY_U64, np.empty(0, dtype=np.int64))
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
        _, found = find(self._base.keys, queries)
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
        _, in_overlay = find(self._touched_array, queries)
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

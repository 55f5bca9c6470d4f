"""Clone detection from the checks a node sees, by the register's rule: a
registered IMEI seen with more than ``clone_threshold`` distinct IMSIs whose
last sighting is inside ``clone_window_seconds`` is a suspected clone.

The register keeps, per IMEI, the last time each IMSI was seen and counts the
IMSIs inside the window when their number passes the threshold. That count
can only pass the threshold (at least 1) for an IMEI seen with two IMSIs or
more, so almost every sighting takes a vectorised path: IMEIs seen with one
IMSI live in sorted numpy arrays (a small recent level merged into a large
one), and only IMEIs with several IMSIs go through the exact per-sighting
rule in Python, in the order the checks came.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]
SEVERAL = np.uint64(0)  # IMSI column marker: this IMEI lives in ``several``
MAX_WINDOW_SECONDS = 2_592_000  # the longest clone window the policy allows


class _Level:
    """IMEIs seen with a single IMSI: sorted keys, that IMSI, last sighting."""

    def __init__(self) -> None:
        self.keys: U64 = np.empty(0, np.uint64)
        self.imsis: U64 = np.empty(0, np.uint64)
        self.last: I64 = np.empty(0, np.int64)

    def find(self, queries: U64) -> tuple[npt.NDArray[np.intp], Bools]:
        count = self.keys.shape[0]
        if count == 0:
            return np.zeros(queries.shape[0], np.intp), np.zeros(queries.shape[0], bool)
        positions = np.minimum(np.searchsorted(self.keys, queries), count - 1)
        return positions, self.keys[positions] == queries

    def add(self, keys: U64, imsis: U64, last: I64) -> None:
        """Insert new (absent) keys, given sorted."""
        at = np.searchsorted(self.keys, keys)
        self.keys = np.insert(self.keys, at, keys)
        self.imsis = np.insert(self.imsis, at, imsis)
        self.last = np.insert(self.last, at, last)

    def nbytes(self) -> int:
        return int(self.keys.nbytes + self.imsis.nbytes + self.last.nbytes)


class CloneTracker:
    """Sightings of registered IMEIs with their IMSIs, as one node sees them."""

    def __init__(self, recent_limit: int = 4_096) -> None:
        self._recent = _Level()
        self._main = _Level()
        self.recent_limit = recent_limit
        self.several: dict[int, dict[int, int]] = {}  # key -> {imsi code: last seen us}
        self._several_keys: U64 | None = None  # sorted keys of ``several``, cached

    def __len__(self) -> int:
        return int(self._recent.keys.shape[0] + self._main.keys.shape[0])

    def nbytes(self) -> int:
        return self._recent.nbytes() + self._main.nbytes()

    def observe(
        self, keys: U64, imsis: U64, now_us: int, threshold: int, window_seconds: int
    ) -> Bools:
        """Record one sighting per (key, IMSI) at ``now_us``, in order; True
        where the IMEI now looks cloned."""
        count = keys.shape[0]
        suspected = np.zeros(count, dtype=bool)
        if count == 0:
            return suspected
        if count <= 16:  # a handful: one by one is cheaper than numpy's set-up
            for index, (key, imsi) in enumerate(zip(keys.tolist(), imsis.tolist(), strict=True)):
                suspected[index] = self._observe_single(
                    key, imsi, now_us, threshold, window_seconds
                )
            self._maybe_compact(now_us)
            return suspected
        order = np.argsort(keys, kind="stable")
        sorted_keys, sorted_imsis = keys[order], imsis[order]
        first_of_run = np.ones(count, dtype=bool)
        first_of_run[1:] = sorted_keys[1:] != sorted_keys[:-1]
        run_id = np.cumsum(first_of_run) - 1
        run_start = np.flatnonzero(first_of_run)
        # a key with two IMSIs inside this batch needs the exact rule
        differs = np.zeros(count, dtype=bool)
        differs[1:] = (sorted_imsis[1:] != sorted_imsis[:-1]) & ~first_of_run[1:]
        mixed_runs = np.zeros(run_start.shape[0], dtype=bool)
        np.logical_or.at(mixed_runs, run_id[differs], True)

        run_keys = sorted_keys[run_start]
        run_imsis = sorted_imsis[run_start]
        recent_pos, in_recent = self._recent.find(run_keys)
        main_pos, in_main = self._main.find(run_keys)
        stored = np.where(
            in_recent,
            self._recent.imsis[recent_pos] if self._recent.keys.size else SEVERAL,
            np.where(in_main, self._main.imsis[main_pos] if self._main.keys.size else SEVERAL, 0),
        ).astype(np.uint64)
        known = in_recent | in_main
        slow_runs = mixed_runs | (known & (stored != run_imsis))  # includes stored == SEVERAL
        if self.several:  # keys first seen with several IMSIs are in no level
            if self._several_keys is None:
                several = np.fromiter(self.several, dtype=np.uint64, count=len(self.several))
                several.sort()
                self._several_keys = several
            position = np.minimum(
                np.searchsorted(self._several_keys, run_keys), self._several_keys.shape[0] - 1
            )
            slow_runs |= self._several_keys[position] == run_keys
        fast_known = known & ~slow_runs
        # one IMSI, the same as before: refresh its last sighting
        refresh = fast_known & in_recent
        self._recent.last[recent_pos[refresh]] = now_us
        refresh = fast_known & ~in_recent
        self._main.last[main_pos[refresh]] = now_us
        # first sighting with a single IMSI
        new = ~known & ~slow_runs
        if new.any():
            self._recent.add(
                run_keys[new], run_imsis[new], np.full(int(new.sum()), now_us, np.int64)
            )
        if slow_runs.any():
            slow_items = np.flatnonzero(slow_runs[run_id])
            slow_batch = np.sort(order[slow_items])  # back in arrival order
            for index in slow_batch.tolist():
                suspected[index] = self._observe_one(
                    int(keys[index]), int(imsis[index]), now_us, threshold, window_seconds
                )
        self._maybe_compact(now_us)
        return suspected

    def _maybe_compact(self, now_us: int) -> None:
        # Inserting into the recent level copies it: keep it small next to
        # the main one, which is rebuilt only once it has grown by an eighth.
        if self._recent.keys.shape[0] > max(self.recent_limit, self._main.keys.shape[0] // 8):
            self._compact(now_us)

    def _observe_single(
        self, key: int, imsi: int, now_us: int, threshold: int, window_seconds: int
    ) -> bool:
        if key not in self.several:
            for level in (self._recent, self._main):
                keys = level.keys
                position = int(np.searchsorted(keys, key))
                if position < keys.shape[0] and int(keys[position]) == key:
                    if int(level.imsis[position]) == imsi:
                        level.last[position] = now_us
                        return False
                    break  # a second IMSI: the exact rule, below
            else:
                one = np.array([key], dtype=np.uint64)
                self._recent.add(one, np.array([imsi], np.uint64), np.array([now_us], np.int64))
                return False
        return self._observe_one(key, imsi, now_us, threshold, window_seconds)

    def _observe_one(
        self, key: int, imsi: int, now_us: int, threshold: int, window_seconds: int
    ) -> bool:
        """The register's rule for one sighting (``ListState._looks_cloned``)."""
        seen = self.several.get(key)
        if seen is None:
            seen = self._promote(key)
        seen[imsi] = now_us
        if len(seen) <= threshold:
            return False
        horizon = now_us - window_seconds * 1_000_000
        for other, last in list(seen.items()):
            if last < horizon:
                del seen[other]
        return len(seen) > threshold

    def _promote(self, key: int) -> dict[int, int]:
        """Move a key from the single-IMSI arrays to ``several``."""
        seen: dict[int, int] = {}
        for level in (self._recent, self._main):
            position, found = level.find(np.array([key], dtype=np.uint64))
            if found[0]:
                index = int(position[0])
                if level.imsis[index] != SEVERAL:
                    seen[int(level.imsis[index])] = int(level.last[index])
                    level.imsis[index] = SEVERAL
        self.several[key] = seen
        self._several_keys = None
        return seen

    def _compact(self, now_us: int) -> None:
        """Merge the recent level into the main one (both sorted: linear)."""
        main, recent = self._main, self._recent
        at = np.searchsorted(main.keys, recent.keys)
        merged = _Level()
        merged.keys = np.insert(main.keys, at, recent.keys)
        merged.imsis = np.insert(main.imsis, at, recent.imsis)
        merged.last = np.insert(main.last, at, recent.last)
        # A single stale IMSI never counts, whatever the window: drop those
        # older than the longest window the policy allows.
        stale = (merged.imsis != SEVERAL) & (merged.last < now_us - MAX_WINDOW_SECONDS * 1_000_000)
        if stale.any():
            keep = ~stale
            merged.keys, merged.imsis, merged.last = (
                merged.keys[keep],
                merged.imsis[keep],
                merged.last[keep],
            )
        self._main = merged
        self._recent = _Level()

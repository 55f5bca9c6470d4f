"""The clone tracker: which IMSIs each registered IMEI was seen with lately.

The rule (the brief's "suspected clone"): an IMEI seen with more than
``threshold`` distinct IMSIs whose last sighting is inside the window. That
needs, per IMEI, only its ``threshold + 1`` most recently seen distinct
IMSIs: the rule holds exactly when all of them are inside the window. So a
sighting costs O(threshold) whatever the IMEI was seen with before, and an
IMEI holds at most ``threshold + 1`` entries however many IMSIs a hostile
caller sends with it.

Across IMEIs the tracker is an LRU of at most ``max_imeis`` (an IMEI not
seen for a while goes first, and one whose newest sighting left the window
is dropped as it reaches the front). A raised threshold counts the IMSIs
kept under the old one until new sightings fill the longer list; an
evicted IMEI starts again from nothing, which can only delay a suspicion.
"""

from __future__ import annotations

import itertools
import sys
import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

# About 150 bytes an IMEI seen with one IMSI (the bench prints the figure):
# the cap bounds the tracker to a few hundred MB against any traffic.
DEFAULT_MAX_IMEIS = 1_000_000
_EXPIRE_EVERY = 64  # sightings between two looks for stale IMEIs
_EXPIRE_AT_ONCE = 256  # at most this many stale IMEIs dropped at one look
_TIME_BITS = 64
_TIME_MASK = (1 << _TIME_BITS) - 1
_TIME_OFFSET = 1 << 63  # times are stored unsigned
_NUMPY_DIGITS = 15  # the longest IMSI; 10**15 << 5 fits an int64
_POWERS = 10 ** np.arange(_NUMPY_DIGITS - 1, -1, -1, dtype=np.int64)


class CloneTracker:
    """Recent (IMSI, last sighting) of registered IMEIs, most recent first.

    A sighting is one int, ``code << 64 | time + 2**63``; an IMEI's entry is
    its sighting, or a tuple of them once it has several IMSIs (most IMEIs
    have one: no tuple for them). Thread-safe: checks run on many threads;
    one short hold of the lock per call, for a sighting or a batch's (a
    batch of 1,000 holds it for about a millisecond).
    """

    def __init__(self, max_imeis: int = DEFAULT_MAX_IMEIS) -> None:
        if max_imeis < 1:
            raise ValueError("the clone tracker must be able to hold an IMEI")
        self.max_imeis = max_imeis
        self._imeis: OrderedDict[int, int | tuple[int, ...]] = OrderedDict()
        self._lock = threading.Lock()
        self._countdown = _EXPIRE_EVERY
        self.evicted = 0  # IMEIs dropped because the tracker was full
        self.expired = 0  # IMEIs dropped because their sightings left the window

    def __len__(self) -> int:
        return len(self._imeis)

    def sightings(self) -> int:
        """Entries held, over every IMEI."""
        with self._lock:
            return sum(len(_entries(entry)) for entry in self._imeis.values())

    def imsis_of(self, key: int) -> int:
        """How many IMSIs are kept for the IMEI."""
        entry = self._imeis.get(key)
        return 0 if entry is None else len(_entries(entry))

    def observe(
        self, key: int, imsi: str, now_us: int, threshold: int, window_seconds: int
    ) -> bool:
        """Record the sighting; True if the IMEI is on too many IMSIs at once."""
        return self.observe_many((key,), (imsi,), now_us, threshold, window_seconds)[0]

    def would_suspect(
        self, key: int, imsi: str, now_us: int, threshold: int, window_seconds: int
    ) -> bool:
        """What ``observe`` would answer now, without recording the sighting
        (a diagnosis must not move the tracker)."""
        code = imsi_codes((imsi,))[0]
        stamp = (now_us + _TIME_OFFSET) & _TIME_MASK
        horizon = now_us - window_seconds * 1_000_000
        with self._lock:
            entry = self._imeis.get(key)
        if entry is None or (entry.__class__ is int and entry >> _TIME_BITS == code):
            return threshold < 0
        kept = (entry,) if isinstance(entry, int) else entry
        others = [e for e in kept if e >> _TIME_BITS != code]
        entries = (code << _TIME_BITS | stamp, *others[:threshold])
        return len(entries) > threshold and all(_time(e) >= horizon for e in entries)

    def observe_many(
        self,
        keys: Sequence[int],
        imsis: Sequence[str],
        now_us: int,
        threshold: int,
        window_seconds: int,
    ) -> list[bool]:
        """``observe`` of each sighting in order, all at ``now_us``: the same
        answers and the same tracker afterwards, under one hold of the lock."""
        # Before the lock, and before any sighting is recorded: a bad IMSI
        # records nothing.
        codes = imsi_codes(imsis)
        stamp = (now_us + _TIME_OFFSET) & _TIME_MASK
        horizon = now_us - window_seconds * 1_000_000
        imeis = self._imeis
        get, move_to_end = imeis.get, imeis.move_to_end
        suspected: list[bool] = []
        note = suspected.append
        lone = threshold < 0  # what one IMSI alone says (nothing, for any real threshold)
        with self._lock:
            done = 0
            while done < len(keys):
                # Up to the next look for stale IMEIs (every _EXPIRE_EVERY
                # sightings, counted across calls), as ``observe`` one at a time.
                upto = min(len(keys), done + self._countdown)
                for key, code in zip(keys[done:upto], codes[done:upto], strict=True):
                    entry = get(key)
                    if entry.__class__ is int and entry >> _TIME_BITS == code:
                        # The one IMSI again: the common case.
                        imeis[key] = code << _TIME_BITS | stamp
                        move_to_end(key)
                        note(lone)
                        continue
                    sighting = code << _TIME_BITS | stamp
                    if entry is None:
                        imeis[key] = sighting
                        if len(imeis) > self.max_imeis:
                            imeis.popitem(last=False)
                            self.evicted += 1
                        note(lone)
                        continue
                    kept = (entry,) if isinstance(entry, int) else entry
                    others = [e for e in kept if e >> _TIME_BITS != code]
                    entries = (sighting, *others[:threshold])
                    imeis[key] = entries
                    move_to_end(key)
                    note(len(entries) > threshold and all(_time(e) >= horizon for e in entries))
                self._countdown -= upto - done
                done = upto
                if self._countdown <= 0:
                    self._countdown = _EXPIRE_EVERY
                    self._expire(horizon)
        return suspected

    def _expire(self, horizon: int) -> None:
        """Drop a few IMEIs whose newest sighting is older than the window
        (the LRU's front is the IMEI seen least recently)."""
        imeis = self._imeis
        for _ in range(_EXPIRE_AT_ONCE):
            if not imeis:
                return
            oldest = next(iter(imeis))
            if _time(_entries(imeis[oldest])[0]) >= horizon:
                return
            del imeis[oldest]
            self.expired += 1

    def nbytes(self) -> int:
        """Bytes held: the ordered dict itself plus its keys and entries
        (measured on a sample of at most 1,000 IMEIs, scaled)."""
        with self._lock:
            count = len(self._imeis)
            sample = list(itertools.islice(self._imeis.items(), 1_000))
            table = sys.getsizeof(self._imeis)
        if not count:
            return table
        objects = sum(sys.getsizeof(k) + _entry_bytes(v) for k, v in sample)
        return int(table + objects * count / len(sample))


def imsi_codes(imsis: Sequence[str]) -> list[int]:
    """Each IMSI as one int, leading zeros counted: ``int(imsi) << 5 |
    len(imsi)``. A column of equal-length ASCII digits (a batch, nearly
    always) is read by numpy as one buffer."""
    widths = set(map(len, imsis))
    width = widths.pop() if len(widths) == 1 else 0
    if len(imsis) > 1 and 1 <= width <= _NUMPY_DIGITS:
        joined = "".join(imsis)
        if joined.isascii() and joined.isdigit():
            digits = np.frombuffer(joined.encode("ascii"), dtype=np.uint8).reshape(-1, width)
            values = (digits - 48).astype(np.int64) @ _POWERS[-width:]
            codes: list[int] = (values << 5 | width).tolist()
            return codes
    return [int(imsi) << 5 | len(imsi) for imsi in imsis]


def _entries(entry: int | tuple[int, ...]) -> tuple[int, ...]:
    return (entry,) if isinstance(entry, int) else entry


def _entry_bytes(entry: int | tuple[int, ...]) -> int:
    if isinstance(entry, int):
        return sys.getsizeof(entry)
    return sys.getsizeof(entry) + sum(sys.getsizeof(e) for e in entry)


def _time(entry: int) -> int:
    return (entry & _TIME_MASK) - _TIME_OFFSET

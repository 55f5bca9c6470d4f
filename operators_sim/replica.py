"""An operator EIR's copy of the register's lists, following the change feed.

The replica starts from a snapshot (``load``) and then takes ``ListChange``
entries strictly in sequence order (``apply``): a change whose sequence is
not exactly the next one, a gap, a duplicate or an out-of-order entry, is
refused with ``SequenceError`` and nothing of it is applied; the node then
resumes or resynchronizes. Policy changes arrive in the same feed, so the
replica switches phase at the same sequence as the register.

Lists live in ``ceir.compact`` tables (sorted numpy arrays plus an
overlay, the register's own); a background thread merges the overlay into
new arrays when it grows past ``merge_threshold`` entries. Callers hold
``lock`` around ``apply`` and around every read that must see one sequence (a batch of decisions).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ceir.compact import KeyTable, PairTable
from ceir.v1 import types_pb2 as pb

from .codec import subscriber_code

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
STOLEN = pb.BLACKLIST_CAUSE_STOLEN
GRACE_EXPIRED = pb.BLACKLIST_CAUSE_NOTIFICATION_EXPIRED
DEFAULT_MERGE_THRESHOLD = 65_536


class SequenceError(Exception):
    """A change that does not follow the replica's sequence (gap, duplicate
    or out-of-order): the feed cannot be trusted from here on."""

    def __init__(self, expected: int, got: int) -> None:
        kind = "a gap" if got > expected else "a duplicate or out-of-order change"
        super().__init__(f"expected change {expected}, got {got}: {kind}")
        self.expected = expected
        self.got = got


@dataclass(frozen=True)
class Policy:
    """The register's policy as the rules need it."""

    phase: int = pb.PHASE_NOTIFY
    grace_days: int = 30
    clone_threshold: int = 3
    clone_window_seconds: int = 86_400

    @classmethod
    def from_message(cls, message: pb.Policy) -> Policy:
        return cls(
            phase=int(message.phase),
            grace_days=int(message.grace_days),
            clone_threshold=int(message.clone_threshold),
            clone_window_seconds=int(message.clone_window_seconds),
        )


@dataclass
class Snapshot:
    """A whole snapshot as columns, at one sequence."""

    sequence: int
    whitelist_keys: U64 = field(default_factory=lambda: np.empty(0, np.uint64))
    whitelist_valid_until: I64 = field(default_factory=lambda: np.empty(0, np.int64))
    blacklist_keys: U64 = field(default_factory=lambda: np.empty(0, np.uint64))
    blacklist_causes: I64 = field(default_factory=lambda: np.empty(0, np.int64))
    notification_keys: U64 = field(default_factory=lambda: np.empty(0, np.uint64))
    notification_imsis: U64 = field(default_factory=lambda: np.empty(0, np.uint64))
    notification_block_dates: I64 = field(default_factory=lambda: np.empty(0, np.int64))
    exception_keys: U64 = field(default_factory=lambda: np.empty(0, np.uint64))
    exception_imsis: U64 = field(default_factory=lambda: np.empty(0, np.uint64))
    policy: Policy | None = None  # in force at ``sequence``, when the server sends it
    # What binds it to the log (all empty from a server without a signing key):
    checkpoint: str = ""  # the signed checkpoint at ``sequence`` (first chunk)
    statement: str = ""  # the signed lists statement (last chunk)
    frontier: tuple[bytes, ...] = ()  # the Merkle frontier at ``sequence`` (last chunk)
    digest: bytes = b""  # the lists' digest as this node computed it

    @property
    def entries(self) -> int:
        return int(
            self.whitelist_keys.shape[0]
            + self.blacklist_keys.shape[0]
            + self.notification_keys.shape[0]
            + self.exception_keys.shape[0]
        )


def blacklist_value(cause: int, block_date: int) -> int:
    """The blacklist column packs the cause (2 bits) and the block date in
    Unix seconds (0 = unknown: snapshots do not carry it)."""
    return block_date * 4 + cause


def _subscriber(change: pb.ListChange) -> int:
    """The pair's subscriber code; another operator's subscriber comes as a
    commitment only and is kept as data (it still counts for the IMEI's
    block date and its number of pairs)."""
    return subscriber_code(change.imsi, change.subscriber_commitment)


def _seconds(stamp: object, present: bool) -> int:
    return int(stamp.seconds) if present else 0  # type: ignore[attr-defined]


class Replica:
    """The four lists and the policy at ``sequence``."""

    def __init__(self, merge_threshold: int = DEFAULT_MERGE_THRESHOLD) -> None:
        self.lock = threading.RLock()
        self.sequence = 0
        self.policy = Policy()
        self.loaded = False
        # valid-until in Unix seconds, 0 = no expiry; uint32 holds dates to 2106
        self.whitelist = KeyTable(np.uint32)
        self.blacklist = KeyTable(np.int64)
        self.notifications = PairTable()
        self.exceptions = PairTable()
        self.merge_threshold = merge_threshold
        self.merges = 0
        self._merge_wanted = threading.Event()
        self._closed = threading.Event()
        self._merger: threading.Thread | None = None

    # --- bootstrapping ---------------------------------------------------------------

    def load(self, snapshot: Snapshot, policy: Policy) -> None:
        """Replace everything with a snapshot and the policy in force at its
        sequence."""
        with self.lock:
            self.whitelist.load(snapshot.whitelist_keys, snapshot.whitelist_valid_until)
            self.blacklist.load(snapshot.blacklist_keys, snapshot.blacklist_causes.astype(np.int64))
            self.notifications.load(
                snapshot.notification_keys,
                snapshot.notification_imsis,
                snapshot.notification_block_dates,
            )
            self.exceptions.load(snapshot.exception_keys, snapshot.exception_imsis)
            self.sequence = snapshot.sequence
            self.policy = policy
            self.loaded = True

    # --- following the feed ----------------------------------------------------------

    def apply(self, changes: Iterable[pb.ListChange]) -> int:
        """Apply consecutive changes; returns how many. Stops at the first
        change that is not the next one and raises SequenceError: the changes
        before it stay applied, it and those after it are refused."""
        applied = 0
        with self.lock:
            for change in changes:
                if change.sequence != self.sequence + 1:
                    raise SequenceError(self.sequence + 1, change.sequence)
                self._apply_one(change)
                self.sequence = change.sequence
                applied += 1
            if self._overlay_size() > self.merge_threshold:
                self._merge_wanted.set()
        return applied

    def _apply_one(self, change: pb.ListChange) -> None:
        kind = change.kind
        if kind == pb.CHANGE_KIND_POLICY_CHANGED:
            self.policy = Policy.from_message(change.policy)
            return
        if kind == pb.CHANGE_KIND_CUSTODY_CHANGED:
            return  # a step of the custody ceremony: no list changes
        if not change.imei_key:
            raise ValueError(f"change {change.sequence} has no IMEI key")
        key = int(change.imei_key)
        if kind == pb.CHANGE_KIND_WHITELIST_ADDED:
            self.whitelist.put(key, _seconds(change.valid_until, change.HasField("valid_until")))
        elif kind == pb.CHANGE_KIND_WHITELIST_REMOVED:
            self.whitelist.delete(key)
        elif kind == pb.CHANGE_KIND_BLACKLIST_BLOCKED:
            block = _seconds(change.block_date, change.HasField("block_date"))
            self.blacklist.put(key, blacklist_value(int(change.blacklist_cause), block))
        elif kind == pb.CHANGE_KIND_BLACKLIST_UNBLOCKED:
            self.blacklist.delete(key)
        elif kind == pb.CHANGE_KIND_NOTIFICATION_NEW:
            self.notifications.put(key, _subscriber(change), int(change.block_date.seconds))
        elif kind in (
            pb.CHANGE_KIND_NOTIFICATION_RESOLVED,
            pb.CHANGE_KIND_NOTIFICATION_BLACKLISTED,
        ):
            self.notifications.delete(key, _subscriber(change))
        elif kind == pb.CHANGE_KIND_EXCEPTION_ADDED:
            self.exceptions.put(key, _subscriber(change))
        elif kind == pb.CHANGE_KIND_EXCEPTION_REMOVED:
            self.exceptions.delete(key, _subscriber(change))
        else:
            raise ValueError(f"change {change.sequence} has unknown kind {kind}")

    # --- merging the overlay in the background ---------------------------------------

    def _tables(self) -> tuple[KeyTable | PairTable, ...]:
        return (self.whitelist, self.blacklist, self.notifications, self.exceptions)

    def _overlay_size(self) -> int:
        return sum(table.overlay_size for table in self._tables())

    def start_merging(self) -> None:
        """Run the background merger (a daemon thread) until ``close``."""
        if self._merger is None:
            self._merger = threading.Thread(
                target=self._merge_loop, name="replica-merge", daemon=True
            )
            self._merger.start()

    def close(self) -> None:
        self._closed.set()
        self._merge_wanted.set()
        if self._merger is not None:
            self._merger.join(timeout=10)

    def _merge_loop(self) -> None:
        while True:
            self._merge_wanted.wait()
            if self._closed.is_set():
                return
            self._merge_wanted.clear()
            self.merge()

    def merge(self) -> None:
        """Merge every table's overlay into new base arrays. The arrays are
        built without the lock; readers keep deciding meanwhile."""
        for table in self._tables():
            with self.lock:
                if not table.freeze():
                    continue
                generation = table.generation
            if isinstance(table, KeyTable):
                keyed = table.build_merged()
                index = table.build_index(keyed)
                with self.lock:
                    table.install(keyed, generation, index)
            else:
                paired = table.build_merged()
                with self.lock:
                    table.install(paired, generation)
        self.merges += 1

    # --- sizes -----------------------------------------------------------------------

    def sizes(self) -> dict[str, int]:
        return {
            "whitelist": len(self.whitelist),
            "blacklist": len(self.blacklist),
            "notification": len(self.notifications),
            "exception": len(self.exceptions),
        }

    def nbytes(self) -> int:
        """Bytes held by the base arrays of every list."""
        return sum(table.nbytes() for table in self._tables())

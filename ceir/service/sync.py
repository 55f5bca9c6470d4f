"""The synchronize mode: consistent snapshots and the ordered change feed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ceir.domain.errors import InvalidArgument
from ceir.domain.lists import ListsCopy
from ceir.domain.model import Caller, Change, Policy
from ceir.domain.permissions import Action, require
from ceir.storage import repository as repo

from .register import Register

DEFAULT_CHUNK = 65_536
MAX_CHUNK = 262_144
FEED_BATCH = 1_000
MAX_SEQUENCE = 2**63 - 1  # sequences are 64-bit signed in both databases


@dataclass
class SnapshotChunk:
    """Columns of one list; only the columns of that list are filled."""

    sequence: int
    list_name: str  # whitelist, blacklist, notification, exception
    imei_keys: list[int] = field(default_factory=list)
    valid_until_s: list[int] = field(default_factory=list)
    causes: list[int] = field(default_factory=list)
    imsis: list[str] = field(default_factory=list)
    msisdns: list[str] = field(default_factory=list)
    block_dates_s: list[int] = field(default_factory=list)
    last: bool = False
    total_entries: int = 0
    policy: Policy | None = None  # on the first chunk: the policy at this sequence
    checkpoint: str = ""  # on the first chunk: the signed checkpoint at this sequence


class SyncService:
    def __init__(self, register: Register) -> None:
        self.register = register

    def snapshot(self, caller: Caller, chunk_size: int) -> Iterator[SnapshotChunk]:
        """Every list at one sequence, in chunks (the last one has last=True)."""
        require(caller, Action.SYNC_LISTS)
        if chunk_size < 0 or chunk_size > MAX_CHUNK:
            raise InvalidArgument.field("chunk_size", f"0 (default) to {MAX_CHUNK}")
        size = chunk_size or DEFAULT_CHUNK
        return self._snapshot(size)

    def _snapshot(self, size: int) -> Iterator[SnapshotChunk]:
        # From the in-memory lists, not the tables: copying them under the
        # write lock is consistent at one sequence and far faster than
        # reading rows back (the lists already follow the database exactly).
        lists = self.register.copy_lists()
        chunks = list(_chunks(lists, size))
        if not chunks:  # an empty register still answers with its sequence
            chunks = [SnapshotChunk(lists.sequence, "whitelist")]
        chunks[0].total_entries = lists.total_entries
        chunks[0].policy = lists.policy
        chunks[0].checkpoint = self.checkpoint_at(lists.sequence)
        chunks[-1].last = True
        yield from chunks

    def checkpoint_at(self, size: int) -> str:
        """The signed checkpoint of the log at ``size`` ("" without a signing key)."""
        return self.register.log.checkpoint_at(size, self.register.clock.now_us())

    def watch(
        self, caller: Caller, after_sequence: int, is_active: Callable[[], bool]
    ) -> Iterator[tuple[list[Change], int]]:
        """Changes after ``after_sequence`` in order, then live, until the
        caller goes away or the server stops."""
        require(caller, Action.SYNC_LISTS)
        if not 0 <= after_sequence <= MAX_SEQUENCE:
            raise InvalidArgument.field("after_sequence", f"0 to {MAX_SEQUENCE}")
        return self._watch(after_sequence, is_active)

    def _watch(
        self, cursor: int, is_active: Callable[[], bool]
    ) -> Iterator[tuple[list[Change], int]]:
        register = self.register
        while is_active() and not register.closed:
            # Only what this process has applied (and so added to its log):
            # a change read between its commit and that moment would come
            # with a checkpoint and proofs the log cannot give yet.
            head = register.state.sequence
            if head <= cursor:
                register.wait_for_change(cursor, timeout=1.0)
                continue
            with register.db.read() as connection:
                changes = repo.changes_after(connection, cursor, min(FEED_BATCH, head - cursor))
            if changes:
                cursor = changes[-1].sequence
                yield changes, max(cursor, register.state.sequence)
            else:
                register.wait_for_change(cursor, timeout=1.0)


def _chunks(lists: ListsCopy, size: int) -> Iterator[SnapshotChunk]:
    """Each list sorted by key (then IMSI), cut into chunks of ``size``."""
    sequence = lists.sequence
    order = np.argsort(lists.whitelist_keys, kind="stable")
    keys = lists.whitelist_keys[order]
    valid = np.fromiter(
        (0 if v is None else v // 1_000_000 for v in lists.whitelist_valid_until_us),
        dtype=np.int64,
        count=len(lists.whitelist_valid_until_us),
    )[order]
    for start in range(0, len(keys), size):
        yield SnapshotChunk(
            sequence,
            "whitelist",
            imei_keys=keys[start : start + size].tolist(),
            valid_until_s=valid[start : start + size].tolist(),
        )
    blacklist = sorted(lists.blacklist)
    for start in range(0, len(blacklist), size):
        blocked = blacklist[start : start + size]
        yield SnapshotChunk(
            sequence,
            "blacklist",
            imei_keys=[e[0] for e in blocked],
            causes=[int(e[1]) for e in blocked],
            block_dates_s=[0 if e[2] is None else e[2] // 1_000_000 for e in blocked],
        )
    notifications = sorted(lists.notifications)
    for start in range(0, len(notifications), size):
        notified = notifications[start : start + size]
        yield SnapshotChunk(
            sequence,
            "notification",
            imei_keys=[e[0] for e in notified],
            imsis=[e[1] for e in notified],
            msisdns=[e[2] for e in notified],
            block_dates_s=[e[3] // 1_000_000 for e in notified],
        )
    exceptions = sorted(lists.exceptions)
    for start in range(0, len(exceptions), size):
        part = exceptions[start : start + size]
        yield SnapshotChunk(
            sequence, "exception", imei_keys=[e[0] for e in part], imsis=[e[1] for e in part]
        )

"""The synchronize mode: consistent snapshots and the ordered change feed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from ceir.audit.snapshot import ListsDigest, ListsStatement, entry_identity, sign_statement
from ceir.domain.errors import FieldViolation, InvalidArgument, OutOfRange
from ceir.domain.lists import NO_DATE, ListColumns
from ceir.domain.model import Caller, Change, Policy
from ceir.domain.permissions import Action, require, visible_imsi_prefixes
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
    commitments: list[bytes] = field(default_factory=list)
    salts: list[bytes] = field(default_factory=list)
    last: bool = False
    total_entries: int = 0
    policy: Policy | None = None  # on the first chunk: the policy at this sequence
    checkpoint: str = ""  # on the first chunk: the signed checkpoint at this sequence
    statement: str = ""  # on the last chunk: the signed lists statement
    frontier: list[bytes] = field(default_factory=list)  # on the last chunk, with the statement


class SyncService:
    def __init__(self, register: Register) -> None:
        self.register = register

    def snapshot(self, caller: Caller, chunk_size: int) -> Iterator[SnapshotChunk]:
        """Every list at one sequence, in chunks (the last one has last=True),
        as the caller may see it: another operator's subscribers as their
        commitments only.

        The lists are copied at once (consistent at one sequence); the
        chunks are cut from the copy one at a time, as the reader takes them.
        """
        require(caller, Action.SYNC_LISTS)
        if chunk_size < 0 or chunk_size > MAX_CHUNK:
            raise InvalidArgument.field("chunk_size", f"0 (default) to {MAX_CHUNK}")
        size = chunk_size or DEFAULT_CHUNK
        return self._snapshot(size, visible_imsi_prefixes(caller))

    def _snapshot(self, size: int, prefixes: tuple[str, ...] | None) -> Iterator[SnapshotChunk]:
        # From the in-memory lists, not the tables: copying them under the
        # write lock is consistent at one sequence and far faster than
        # reading rows back (the lists already follow the database exactly).
        lists = self.register.copy_lists()
        policy = lists.policy
        digest = ListsDigest(
            lists.sequence,
            int(policy.phase),
            policy.grace_days,
            policy.clone_threshold,
            policy.clone_window_seconds,
        )
        chunks = _chunks(lists, size, prefixes, digest)
        first = next(chunks, None) or SnapshotChunk(lists.sequence, "whitelist")
        first.total_entries = lists.total_entries
        first.policy = lists.policy
        first.checkpoint = self.checkpoint_at(lists.sequence)
        current = first
        for following in chunks:  # one ahead, to know which chunk is the last
            yield current
            current = following
        current.last = True
        current.statement = self.statement_at(lists.sequence, digest.digest())
        if current.statement:
            current.frontier = self.register.log.frontier_hashes(lists.sequence)
        yield current

    def checkpoint_at(self, size: int) -> str:
        """The signed checkpoint of the log at ``size`` ("" without a signing key)."""
        return self.register.log.checkpoint_at(size, self.register.clock.now_us())

    def statement_at(self, size: int, lists_digest: bytes) -> str:
        """The signed statement that the lists at ``size`` have ``lists_digest``."""
        merkle_log = self.register.log
        if merkle_log.signer is None:
            return ""
        statement = ListsStatement(merkle_log.origin, size, merkle_log.root(size), lists_digest)
        return sign_statement(statement, [merkle_log.signer.signer])

    def open_feed(self, caller: Caller, after_sequence: int) -> int:
        """Check a feed request; the sequence it starts after.

        A client ahead of the register (restored from a newer backup, or
        pointed at the wrong register) is told so, with the head, instead
        of waiting for changes that may never be the ones it has.
        """
        require(caller, Action.SYNC_LISTS)
        if not 0 <= after_sequence <= MAX_SEQUENCE:
            raise InvalidArgument.field("after_sequence", f"0 to {MAX_SEQUENCE}")
        head = self.register.state.sequence
        if after_sequence > head:  # this process may lag the database: ask it
            with self.register.db.read() as connection:
                head = max(head, repo.last_sequence(connection))
        if after_sequence > head:
            raise OutOfRange(
                f"after_sequence: {after_sequence} is beyond the register's head {head}; "
                "resynchronise from a snapshot",
                reason="SEQUENCE_AHEAD",
                violations=[FieldViolation("after_sequence", f"beyond the register's head {head}")],
            )
        return after_sequence

    def changes_after(self, cursor: int) -> list[Change]:
        """The next changes after ``cursor`` (at most FEED_BATCH), oldest first.

        Only what this process has applied (and so added to its log): a
        change read between its commit and that moment would come with a
        checkpoint and proofs the log cannot give yet.
        """
        head = self.register.state.sequence
        if head <= cursor:
            return []
        with self.register.db.read() as connection:
            return repo.changes_after(connection, cursor, min(FEED_BATCH, head - cursor))


def _chunks(
    lists: ListColumns, size: int, prefixes: tuple[str, ...] | None, digest: ListsDigest
) -> Iterator[SnapshotChunk]:
    """Each list sorted by key (pairs then by subscriber identity), cut into
    chunks of ``size``, each fed to ``digest`` as it is cut."""
    sequence = lists.sequence
    keys = lists.whitelist_keys  # sorted by key
    until = lists.whitelist_valid_until_us
    valid = np.where(until == NO_DATE, 0, until // 1_000_000)
    for start in range(0, len(keys), size):
        chunk = SnapshotChunk(
            sequence,
            "whitelist",
            imei_keys=keys[start : start + size].tolist(),
            valid_until_s=valid[start : start + size].tolist(),
        )
        digest.whitelist(chunk.imei_keys, chunk.valid_until_s)
        yield chunk
    blocked = lists.blacklist_block_date_us
    block_dates = np.where(blocked == NO_DATE, 0, blocked // 1_000_000)
    for start in range(0, len(lists.blacklist_keys), size):
        chunk = SnapshotChunk(
            sequence,
            "blacklist",
            imei_keys=lists.blacklist_keys[start : start + size].tolist(),
            causes=lists.blacklist_causes[start : start + size].tolist(),
            block_dates_s=block_dates[start : start + size].tolist(),
        )
        digest.blacklist(chunk.imei_keys, chunk.causes, chunk.block_dates_s)
        yield chunk
    notifications = sorted(
        (key, entry_identity(salt, imsi, msisdn), imsi, msisdn, block // 1_000_000, salt)
        for key, imsi, msisdn, block, salt in lists.notifications
    )
    for start in range(0, len(notifications), size):
        part = notifications[start : start + size]
        chunk = SnapshotChunk(sequence, "notification", block_dates_s=[e[4] for e in part])
        _fill_pairs(chunk, [(e[0], e[1], e[2], e[3], e[5]) for e in part], prefixes)
        digest.notifications(chunk.imei_keys, chunk.commitments, chunk.block_dates_s)
        yield chunk
    exceptions = sorted(
        (key, entry_identity(salt, imsi, ""), imsi, "", salt)
        for key, imsi, salt in lists.exceptions
    )
    for start in range(0, len(exceptions), size):
        chunk = SnapshotChunk(sequence, "exception")
        _fill_pairs(chunk, exceptions[start : start + size], prefixes, msisdns=False)
        digest.exceptions(chunk.imei_keys, chunk.commitments)
        yield chunk


def _fill_pairs(
    chunk: SnapshotChunk,
    pairs: list[tuple[int, bytes, str, str, bytes]],
    prefixes: tuple[str, ...] | None,
    *,
    msisdns: bool = True,
) -> None:
    """Keys and commitments for every pair; the IMSI, MSISDN and salt only of
    the subscribers the receiver may see (every pair written before leaf
    version 2 was in clear in the log already, so it stays in clear)."""
    for key, identity, imsi, msisdn, salt in pairs:
        clear = not salt or prefixes is None or imsi.startswith(prefixes)
        chunk.imei_keys.append(key)
        chunk.commitments.append(identity)
        chunk.imsis.append(imsi if clear else "")
        if msisdns:
            chunk.msisdns.append(msisdn if clear else "")
        chunk.salts.append(salt if clear else b"")

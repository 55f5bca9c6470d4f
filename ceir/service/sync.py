"""The synchronize mode: consistent snapshots and the ordered change feed."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ceir.domain.errors import InvalidArgument
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


# list name -> (SQL over the list table, ordered by its key)
_QUERIES = {
    "whitelist": "SELECT imei_key, valid_until_us FROM whitelist ORDER BY imei_key",
    "blacklist": "SELECT imei_key, cause FROM blacklist ORDER BY imei_key",
    "notification": "SELECT imei_key, imsi, msisdn, block_date_us FROM notifications "
    "ORDER BY imei_key, imsi",
    "exception": "SELECT imei_key, imsi FROM exceptions ORDER BY imei_key, imsi",
}
_COUNT = (
    "SELECT (SELECT count(*) FROM whitelist) + (SELECT count(*) FROM blacklist)"
    " + (SELECT count(*) FROM notifications) + (SELECT count(*) FROM exceptions)"
)


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
        with self.register.db.read_snapshot() as connection:
            sequence = repo.last_sequence(connection)
            policy = repo.load_policy(connection)
            total = int(connection.exec_driver_sql(_COUNT).scalar_one())
            first = True
            pending: SnapshotChunk | None = None
            for name, query in _QUERIES.items():
                cursor = connection.exec_driver_sql(query)
                while rows := cursor.fetchmany(size):
                    if pending is not None:
                        yield pending
                    pending = _chunk(sequence, name, rows)
                    if first:
                        pending.total_entries, pending.policy = total, policy
                        pending.checkpoint = self.checkpoint_at(sequence)
                        first = False
            if pending is None:  # an empty register still answers with its sequence
                pending = SnapshotChunk(sequence, "whitelist", total_entries=0, policy=policy)
                pending.checkpoint = self.checkpoint_at(sequence)
            pending.last = True
            yield pending

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
            with register.db.read() as connection:
                changes = repo.changes_after(connection, cursor, FEED_BATCH)
            if changes:
                cursor = changes[-1].sequence
                yield changes, max(cursor, register.state.sequence)
            else:
                register.wait_for_change(cursor, timeout=1.0)


def _chunk(sequence: int, name: str, rows: Sequence[Any]) -> SnapshotChunk:
    """Rows of one list (driver tuples) as columns."""
    chunk = SnapshotChunk(sequence, name)
    columns: list[tuple[Any, ...]] = list(zip(*rows, strict=True))
    chunk.imei_keys = list(columns[0])
    if name == "whitelist":
        chunk.valid_until_s = [0 if v is None else v // 1_000_000 for v in columns[1]]
    elif name == "blacklist":
        chunk.causes = list(columns[1])
    else:
        chunk.imsis = list(columns[1])
        if name == "notification":
            chunk.msisdns = list(columns[2])
            chunk.block_dates_s = [v // 1_000_000 for v in columns[3]]
    return chunk

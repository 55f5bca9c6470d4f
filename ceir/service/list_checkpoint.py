"""List checkpoints: the lists at a signed tree size, so a start replays only the tail.

The full start-up proof (``startup_proof``) hashes every change again and
reads every list row: minutes at a hundred million changes. A list
checkpoint, written by the server itself, holds every list as columns at one
size S of its log, with the Merkle frontier at S and a statement signed with
the log's key binding S, the root at S, that frontier and the SHA-256 of the
columns (``ceir.storage.list_checkpoint_file`` gives the bytes). A start
with a usable checkpoint (``startup_proof.prove_at_start``):

1. opens the statement under the server's key (or a trusted earlier
   custodian's) and checks the columns' digest and that the frontier folds
   to the signed root;
2. checks the database's stored tree at S against that frontier, and that
   the log holds at least S changes and a stored checkpoint of at least S;
3. verifies every change after S as the full proof does (leaf hash
   recomputed, tree nodes, the latest stored checkpoint's root and
   signature), from the signed frontier on;
4. loads the lists from the columns and applies the changes after S;
5. compares with the tables every row the changes after S wrote or removed,
   the row count of each list, and the policy.

A checkpoint that fails 1 or 2 is refused with an error log line naming why
and the full proof runs instead (which then judges the database on its
own); a missing one is an info line. A failure in 3 or 5 refuses the start
as the full proof would. What a start from a checkpoint does not look at:
the change rows up to S (the lists come from the signed columns instead, and
``ceir audit verify --db``, operators' replicas and a start with
``--full-proof`` still hash them), and list rows of keys no change after S
touched, beyond their count (the server answers from the signed columns,
not from those rows; an altered value there is caught by the same three).

The server writes one every ``every_changes`` changes or ``every_seconds``
seconds (when the lists moved), at a clean shutdown, and on
``ceir audit list-checkpoint``; a write goes to a temporary file, is synced
and renamed over the old one, so a crash leaves the old file or the new.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from ceir.audit import AuditError, Frontier, Prover, Verifier
from ceir.audit.merkle import short
from ceir.audit.note import open_note, sign_note
from ceir.domain.lists import ListColumns, ListState
from ceir.storage import log_repository as log_repo
from ceir.storage import repository as repo
from ceir.storage import schema
from ceir.storage.database import Database
from ceir.storage.list_checkpoint_file import (
    CheckpointStatement,
    FileRefused,
    columns_digest,
    read_file,
    write_file,
)
from ceir.storage.projection import LIST_TABLES, Key, ListTable, Values

from .list_audit import ReplayedLists, RowDifference, _same, describe
from .merkle_log import CheckpointSigner

__all__ = [
    "CheckpointRefused",
    "ListCheckpointer",
    "LoadedCheckpoint",
    "default_path",
    "load_checkpoint",
    "stored_frontier_matches",
    "tail_differences",
    "write_checkpoint",
]

log = logging.getLogger("ceir.list_checkpoint")

EVERY_CHANGES = 1_000_000
EVERY_SECONDS = 3_600.0
# At least this long between two background writes: during a bulk import a
# million changes may take seconds, and each write copies every list.
MIN_SECONDS = 60.0
_KEYS_PER_QUERY = 500


class CheckpointRefused(Exception):
    """A list checkpoint this register must not start from; says why."""


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A checkpoint whose statement verified and whose columns match it."""

    path: Path
    statement: CheckpointStatement
    columns: ListColumns


def default_path(db_url: str) -> Path | None:
    """Beside a SQLite database file (``<file>.lists``); None for other databases."""
    prefix = "sqlite:///"
    if not db_url.startswith(prefix) or ":memory:" in db_url:
        return None
    return Path(db_url[len(prefix) :].split("?", 1)[0] + ".lists")


def write_checkpoint(
    path: Path, columns: ListColumns, frontier: Frontier, signer: CheckpointSigner
) -> CheckpointStatement:
    """Sign and write a checkpoint of ``columns`` (at ``frontier.size``)."""
    if columns.sequence != frontier.size:
        raise ValueError(f"lists at {columns.sequence} with a frontier of {frontier.size}")
    statement = CheckpointStatement(
        signer.origin,
        frontier.size,
        frontier.root(),
        columns_digest(columns),
        time.time_ns() // 1_000,
        frontier.hashes,
    )
    write_file(path, sign_note(statement.text(), [signer.signer]), columns)
    return statement


def load_checkpoint(path: Path, keys: Sequence[Verifier], origin: str) -> LoadedCheckpoint | None:
    """The checkpoint at ``path`` (None when there is none); raises
    ``CheckpointRefused`` when it is there and fails its own checks."""
    try:
        stored = read_file(path)
    except FileNotFoundError:
        return None
    except (OSError, FileRefused) as error:
        raise CheckpointRefused(f"{path} cannot be read as a list checkpoint: {error}") from error
    try:
        statement = CheckpointStatement.parse(open_note(stored.note, keys).text)
    except (AuditError, FileRefused) as error:
        raise CheckpointRefused(f"{path}: its statement is refused: {error}") from error
    if statement.origin != origin:
        raise CheckpointRefused(f"{path} is of log {statement.origin!r}, not {origin!r}")
    if stored.digest != statement.digest:
        raise CheckpointRefused(
            f"{path}: its columns hash to {short(stored.digest)}, but the statement signed "
            f"{short(statement.digest)}: the lists in the file were altered"
        )
    if stored.columns.sequence != statement.size:
        raise CheckpointRefused(f"{path}: columns of sequence {stored.columns.sequence}")
    if Frontier(statement.size, statement.frontier).root() != statement.root:
        raise CheckpointRefused(f"{path}: the frontier does not fold to the signed root")
    return LoadedCheckpoint(path, statement, stored.columns)


class _ConnectionHashStore:
    """``HashStore`` over one connection (the start-up proof's snapshot)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def node_hashes(self, level: int, start: int, end: int) -> Sequence[bytes]:
        if level == 0:
            return log_repo.leaf_hashes(self.connection, start, end)
        return log_repo.tree_node_hashes(self.connection, level, start, end)


def stored_frontier_matches(connection: Connection, loaded: LoadedCheckpoint) -> None:
    """Raise ``CheckpointRefused`` unless the database's log reaches the
    checkpoint's size and its stored tree at that size is the signed one."""
    statement = loaded.statement
    head = repo.last_sequence(connection)
    if head < statement.size:
        raise CheckpointRefused(
            f"{loaded.path} is of size {statement.size}, but the log ends at change {head}: "
            "the database is older than the checkpoint (restored from a copy?) or changes "
            "were deleted"
        )
    latest = log_repo.latest_checkpoint(connection)
    if latest is None or latest[0] < statement.size:
        raise CheckpointRefused(
            f"{loaded.path} is of size {statement.size}, but the latest stored checkpoint is "
            f"of size {latest[0] if latest else 0}: stored checkpoints were deleted"
        )
    try:
        stored = Prover(_ConnectionHashStore(connection)).frontier(statement.size).hashes
    except (AuditError, ValueError) as error:
        raise CheckpointRefused(f"the stored tree at size {statement.size}: {error}") from error
    if stored != statement.frontier:
        raise CheckpointRefused(
            f"the database's stored tree at size {statement.size} is not the one "
            f"{loaded.path} signed: stored leaf hashes or tree nodes up to change "
            f"{statement.size} differ (an edited log, or a checkpoint of another database)"
        )


def tail_differences(
    connection: Connection, replayed: ReplayedLists, state: ListState
) -> Iterator[str]:
    """The list rows the changes after the checkpoint wrote or removed, against
    the tables; each list's row count against the lists; the policy."""
    for table in LIST_TABLES:
        rows = replayed.rows[table.name]
        touched = set(rows) | set(getattr(rows, "removed", ()))
        differing = _touched_differences(connection, table, rows, touched)
        if differing:
            others = len(differing) - 1
            more = f" (and {others} more differing {table.name} rows)" if others else ""
            yield describe(connection, differing[0]) + more
    sizes = state.sizes()
    for name, size in (
        ("whitelist", sizes["whitelist"]),
        ("blacklist", sizes["blacklist"]),
        ("notifications", sizes["notification"]),
        ("exceptions", sizes["exception"]),
    ):
        counted = _count(connection, name)
        if counted != size:
            yield (
                f"{name} holds {counted} rows, but the signed lists and the log after them "
                f"give {size}: rows were inserted or deleted behind the log (`ceir audit "
                "verify --db` names them)"
            )
    if replayed.policy != repo.load_policy(connection):
        yield "register_state: the policy differs from the last POLICY_CHANGED change"


def _touched_differences(
    connection: Connection, table: ListTable, expected: dict[Key, Values], touched: set[Key]
) -> list[RowDifference]:
    actual = dict(_rows_of(connection, table, touched))
    return [
        RowDifference(table, key, expected.get(key), actual.get(key))
        for key in sorted(touched)
        if not (
            (key in expected) == (key in actual)
            and (key not in expected or _same(expected[key], actual[key]))
        )
    ]


def _rows_of(
    connection: Connection, table: ListTable, keys: Iterable[Key]
) -> Iterator[tuple[Key, Values]]:
    """The table's rows with these keys (the first key column selects)."""
    columns = schema.Base.metadata.tables[table.name].c
    width = len(table.key)
    wanted = set(keys)
    firsts = sorted({key[0] for key in wanted})
    selected = [columns[name] for name in (*table.key, *table.values)]
    for start in range(0, len(firsts), _KEYS_PER_QUERY):
        part = firsts[start : start + _KEYS_PER_QUERY]
        for row in connection.execute(select(*selected).where(columns[table.key[0]].in_(part))):
            key = tuple(row[:width])
            if key in wanted:
                yield key, tuple(_plain(value) for value in row[width:])


def _plain(value: Any) -> Any:
    return bytes(value) if isinstance(value, memoryview) else value


def _count(connection: Connection, table: str) -> int:
    return int(connection.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())


class ListCheckpointer:
    """Writes the register's list checkpoint in the background: every
    ``every_changes`` changes or ``every_seconds`` seconds once the lists
    moved (never twice within ``min_seconds``), and once more on ``stop``."""

    def __init__(
        self,
        register: Any,  # ceir.service.register.Register (not imported: it imports us)
        path: Path,
        *,
        written: int = 0,
        every_changes: int = EVERY_CHANGES,
        every_seconds: float = EVERY_SECONDS,
        min_seconds: float = MIN_SECONDS,
        poll: float = 1.0,
    ) -> None:
        self.register = register
        self.path = path
        self.written = written  # the size of the checkpoint on disk
        self.every_changes = every_changes
        self.every_seconds = every_seconds
        self.min_seconds = min_seconds
        self.poll = poll
        self._written_at = time.monotonic() - min_seconds  # the first may come at once
        self._lock = threading.Lock()  # one write at a time
        self._stop = threading.Event()
        self._moved = threading.Event()  # set by the register after each applied batch
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.register.add_listener(self._moved.set)
        self._thread = threading.Thread(target=self._run, name="ceir-list-checkpoint", daemon=True)
        self._thread.start()

    def stop(self, *, write: bool = True) -> None:
        """Stop the background writer; with ``write``, write the lists once
        more if they moved since the last checkpoint (a clean shutdown)."""
        self._stop.set()
        self._moved.set()
        if self._thread is not None:
            self._thread.join()
        if write:
            self.write_now()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._moved.wait(self.poll)
            self._moved.clear()
            if self._stop.is_set():
                return
            moved = self.register.state.sequence - self.written
            since = time.monotonic() - self._written_at
            due = since >= self.min_seconds and (
                moved >= self.every_changes or (moved > 0 and since >= self.every_seconds)
            )
            if due:
                try:
                    self.write_now()
                except Exception:  # a full disk must not stop the register
                    log.exception("writing the list checkpoint failed")

    def write_now(self) -> CheckpointStatement | None:
        """Write the lists now if they moved since the last checkpoint."""
        signer = self.register.log.signer
        with self._lock:
            if signer is None or self.register.state.sequence == self.written:
                return None
            started = time.monotonic()
            taken = self.register.lists_with_frontier()
            if taken is None:
                return None  # another server wrote: the frontier catches up at our next write
            columns, frontier = taken
            statement = write_checkpoint(self.path, columns, frontier, signer)
            self.written, self._written_at = statement.size, time.monotonic()
        log.info(
            "list checkpoint written",
            extra={
                "path": str(self.path),
                "size": statement.size,
                "entries": columns.total_entries,
                "bytes": self.path.stat().st_size,
                "seconds": round(time.monotonic() - started, 3),
            },
        )
        return statement


def write_from_database(
    db: Database, path: Path, signer: CheckpointSigner, trusted: Sequence[Verifier] = ()
) -> CheckpointStatement:
    """Prove the database at start (as ``ceir serve`` does, from the current
    checkpoint if any), then write a checkpoint of its lists: the offline
    ``ceir audit list-checkpoint``."""
    from .startup_proof import prove_at_start

    proof = prove_at_start(
        db, signer.signer.verifier, signer.origin, trusted=trusted, list_checkpoint=path
    )
    frontier = Frontier(proof.size, proof.frontier)
    return write_checkpoint(path, proof.state.columns(), frontier, signer)

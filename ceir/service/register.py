"""The register core: the database, the in-memory lists, and the write path.

Every change goes through ``Register.execute``: one command, run by its
handler in one transaction that takes the register's write lock (the state
row), numbers its changes gap-free, stores them with their Merkle leaves,
the list rows they project to and the AIP-155 answer, and commits; only
then are the changes applied to the in-memory ``ListState`` that answers
checks, and feed watchers woken.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from ceir.audit import Frontier
from ceir.compact import release_freed_memory
from ceir.domain.commands import Command
from ceir.domain.errors import InvalidArgument
from ceir.domain.lists import NO_DATE, ListColumns, ListState
from ceir.domain.model import BlacklistEntry, Caller, Change, Registration
from ceir.domain.permissions import require
from ceir.domain.validation import check_request_id
from ceir.storage import log_repository as log_repo
from ceir.storage import repository as repo
from ceir.storage.database import ChangeListener, Database
from ceir.storage.projection import write_projection

from .capacity import WriteLimits
from .clock import Clock, SystemClock
from .handlers import handler_for
from .merkle_log import Append, CheckpointSigner, MerkleLog
from .oversight_watch import RateWatch
from .ranges import SeenRecord
from .unit import WriteUnit

log = logging.getLogger("ceir.register")
T = TypeVar("T")


class WriteGate(Protocol):
    """Decides, inside the write transaction, whether this register takes a write now.

    Raises ``WritesRefused`` (frozen for a handover, moved, a standby). Set
    by the custody service (``Register.write_gate``); None takes every write.
    """

    def __call__(self, session: Session, command: Command[Any]) -> None: ...


# More writes in the transaction of a command, after its changes and the
# signed checkpoint of the new size (the note, "" without one) are stored.
Within = Callable[[Session, str], None]


@dataclass(frozen=True)
class Replayed:
    """The stored answer to a request id seen before (serialised response)."""

    response: bytes


@dataclass(frozen=True)
class Committed(Generic[T]):
    """The result of a committed mutation and the register version it made."""

    value: T
    sequence: int


def fingerprint(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


class Register:
    """The register of one server process."""

    def __init__(
        self,
        db: Database,
        clock: Clock | None = None,
        *,
        signer: CheckpointSigner | None = None,
        merkle_log: bool = True,
        lists: ListState | None = None,
    ) -> None:
        """``signer`` signs a checkpoint per write; ``merkle_log=False`` stores
        no leaf hashes (only to measure what the log costs: the next start
        with the log hashes what was written without it). ``lists``: the
        lists at some sequence, already replayed from the verified log (the
        start-up proof), instead of loading them from the tables; changes
        after that sequence are applied as they are found."""
        self.db = db
        self.clock: Clock = clock or SystemClock()
        self.state = ListState()
        self.log = MerkleLog(db, signer)
        self._logging = merkle_log
        if merkle_log:
            self.log.open()
        self._write_lock = threading.RLock()
        self._stop = threading.Event()
        self._follower: threading.Thread | None = None
        # Called after each applied batch of changes and on close, from the
        # thread that applied them (the server wakes its feed watchers so).
        self._listeners: list[Callable[[], None]] = []
        self.write_gate: WriteGate | None = None
        # The capacity and range guard a write is held to (off unless the
        # server sets them), and the whitelisted IMEIs checks have seen.
        self.limits = WriteLimits()
        # Per-organisation registration counts and the account alert
        # (ceir.service.oversight_watch), kept in every write's transaction.
        self.rates = RateWatch()
        self.seen = SeenRecord(self.clock.now_us())
        # The custodian's endpoint while this register follows its log as a
        # standby (``replicate``, ``ceir.service.standby``); "" otherwise.
        self.standby_of = ""
        if lists is None:
            self.reload()
        else:
            self.state = lists
            sizes = {"sequence": lists.sequence, **lists.sizes()}
            log.info("lists replayed from the verified log", extra=sizes)

    # --- loading and following ------------------------------------------------------

    def reload(self) -> None:
        """Rebuild the in-memory lists from the tables, in one consistent read."""
        with self._write_lock, self.db.read_snapshot() as connection:
            self.state = load_state(connection)
        log.info("lists loaded", extra={"sequence": self.state.sequence, **self.state.sizes()})

    def start_following(self, interval: float = 0.5) -> None:
        """Follow changes written by other processes sharing the database.

        On PostgreSQL a listener wakes on every other process's commit
        (``Database.listen``); every ``interval`` seconds the head is also
        polled, the fallback when a notification cannot come (SQLite, a
        broken listening connection).
        """
        if self._follower is None:
            self._follower = threading.Thread(
                target=self._follow, args=(interval,), name="ceir-follower", daemon=True
            )
            self._follower.start()

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` whenever the lists move on, and on close."""
        self._listeners.append(listener)

    def close(self) -> None:
        self._stop.set()
        self._notify()
        if self._follower is not None:
            self._follower.join(timeout=5)

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    def wait_closed(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the register to close; True once closed."""
        return self._stop.wait(timeout)

    def _follow(self, interval: float) -> None:
        listener: ChangeListener | None = None
        can_listen = True  # until the database says it cannot (SQLite)
        try:
            while not self._stop.is_set():
                try:
                    if listener is None and can_listen:
                        listener = self.db.listen()
                        can_listen = listener is not None
                    if listener is None:
                        self._stop.wait(interval)
                    else:
                        listener.wait(interval)
                    if not self._stop.is_set():
                        self._follow_head()
                except Exception:  # the database may be restarting; try again next tick
                    log.exception("following the change feed failed")
                    if listener is not None:
                        listener.close()
                        listener = None
                    self._stop.wait(interval)
        finally:
            if listener is not None:
                listener.close()

    def _follow_head(self) -> None:
        """Catch up with the database's head if another process moved it."""
        with self.db.read() as connection:
            head = repo.last_sequence(connection)
        if head > self.state.sequence:
            with self._write_lock, self.db.read() as connection:
                self._catch_up(connection)
                if self._logging:  # proofs and roots at the head from the frontier
                    self.log.resync(self.state.sequence)

    def _catch_up(self, connection: Connection | Session) -> None:
        """Apply changes the database has and the lists have not (write lock held)."""
        while True:
            batch = repo.changes_after(connection, self.state.sequence, 10_000)
            if not batch:
                return
            self._apply(batch)

    def _apply(self, changes: Sequence[Change]) -> None:
        for change in changes:
            self.state.apply(change)
        self.limits.applied(self.state)
        self._notify()

    def _notify(self) -> None:
        for listener in self._listeners:
            listener()

    def lists_with_frontier(self) -> tuple[ListColumns, Frontier] | None:
        """The lists as columns and the log's frontier at their sequence (both
        under the write lock, for a list checkpoint); None while the lists
        follow changes another server wrote and the frontier has not."""
        with self._write_lock:
            frontier = self.log.frontier()
            if frontier.size != self.state.sequence:
                return None
            return self.state.columns(), frontier

    def copy_lists(self) -> ListColumns:
        """The in-memory lists at one sequence (copied under the write lock,
        so no change lands half-way; the lock is held only for the copy)."""
        with self._write_lock:
            return self.state.columns()

    # --- writing ----------------------------------------------------------------------

    def execute(
        self,
        caller: Caller,
        command: Command[T],
        request_id: str = "",
        request_fingerprint: str = "",
        render: Callable[[Committed[T]], bytes] | None = None,
        within: Within | None = None,
    ) -> Committed[T] | Replayed:
        """Run one command: the register's one write path.

        In order: the caller's permission (the command's action, then its
        handler's ``authorize``); under the write lock, in one transaction,
        the AIP-155 answer stored for ``request_id`` if any (replayed when
        ``request_fingerprint`` matches, REQUEST_ID_REUSED when not, even
        when the register takes no writes now: a retry of a write that
        committed before a freeze gets its answer); the write gate (custody:
        frozen, moved, standby); the handler, which emits numbered changes;
        the changes with their leaves and the signed checkpoint; the list
        rows they project to; ``within(session, checkpoint note)`` (the
        custody ceremony's row, written with its leaf); the answer,
        serialised by ``render``. Once committed, the changes are applied to
        the in-memory lists. A domain error raised on the way rolls
        everything back.
        """
        handler = handler_for(command)
        require(caller, command.action)
        handler.authorize(caller, command)
        check_request_id(request_id)
        key = command.request_key(request_id)
        with self._write_lock:
            with self.db.write() as session:
                # Take the state-row lock before looking for a stored answer:
                # two processes racing on one request id then serialise, and
                # the second replays the first's answer.
                unit = self._begin(session, caller)
                if key:
                    stored = repo.stored_answer(session, caller.name, command.operation, key)
                    if stored is not None:
                        if stored[0] != request_fingerprint:
                            raise InvalidArgument.field(
                                "request_id",
                                f"{request_id!r} was already used for a different request",
                                reason="REQUEST_ID_REUSED",
                            )
                        return Replayed(stored[1])
                if self.write_gate is not None:
                    self.write_gate(session, command)
                result = Committed(handler.handle(command, unit), unit.sequence)
                self.limits.check(self.state, command, unit.changes)
                append = self._write_changes(session, unit)
                write_projection(session, unit.changes)
                watched = self.rates.record(session, unit.changes, one_write=True)
                if within is not None:
                    within(session, append.note if append is not None else "")
                if key and render is not None:
                    repo.store_answer(
                        session,
                        caller.name,
                        command.operation,
                        key,
                        request_fingerprint,
                        render(result),
                        unit.now_us,
                    )
            self._accept(append)
            self._apply(unit.changes)
            self.rates.committed(watched)
            return result

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A write transaction that appends nothing, serialised with every write
        (the write lock and the state row's lock), for the custody ceremony's
        own rows."""
        with self._write_lock, self.db.write() as session:
            repo.lock_state(session)
            yield session

    def replicate(
        self,
        changes: Sequence[Change],
        *,
        expect_root: bytes | None = None,
        checkpoint: str = "",
        checkpoint_time_us: int = 0,
    ) -> None:
        """Append another register's numbered changes, as they are, in one
        write transaction: the standby's write path (``ceir.service.standby``).

        The changes must continue this register's head without a gap. Their
        leaves are computed here (never taken from the sender), stored with
        the tree nodes and the list rows they project to; nothing is signed.
        ``expect_root``: the root the log must have after them (a verified
        checkpoint's), else ``ReplicaMismatch`` and nothing is written;
        ``checkpoint``: that checkpoint's signed note, stored with them.
        Once committed the changes reach the in-memory lists and the
        listeners, as a write's do.
        """
        if not changes:
            return
        with self._write_lock:
            with self.db.write() as session:
                head = repo.lock_state(session)
                if head != self.state.sequence:
                    self._catch_up(session)
                first = changes[0].sequence
                for offset, change in enumerate(changes):
                    if change.sequence != head + 1 + offset:
                        raise ReplicaGap(head + 1 + offset, change.sequence, first)
                self.log.resync(head)
                append = self.log.prepare(changes, changes[-1].committed_at_us, sign=False)
                size = append.frontier.size
                if expect_root is not None and append.frontier.root() != expect_root:
                    raise ReplicaMismatch(size)
                repo.write_changes(session, changes, append.leaf_hashes)
                self.log.store(session, append)
                write_projection(session, changes)
                watched = self.rates.record(session, changes)
                if checkpoint:
                    log_repo.insert_checkpoint(session, size, checkpoint, checkpoint_time_us)
            self.log.accept(append)
            self._apply(changes)
            self.rates.committed(watched)

    def _write_changes(self, session: Session, unit: WriteUnit) -> Append | None:
        """Store the unit's changes with their leaves of the Merkle log."""
        if not self._logging or not unit.changes:
            repo.write_changes(session, unit.changes)
            return None
        append = self.log.prepare(unit.changes, unit.now_us)
        repo.write_changes(session, unit.changes, append.leaf_hashes)
        self.log.store(session, append)
        return append

    def _accept(self, append: Append | None) -> None:
        if append is not None:
            self.log.accept(append)

    def _begin(self, session: Session, caller: Caller) -> WriteUnit:
        head = repo.lock_state(session)
        if head != self.state.sequence:
            self._catch_up(session)  # another process wrote; the lists must be exact
        if self._logging:
            self.log.resync(head)
        return WriteUnit(
            caller=caller,
            now_us=self.clock.now_us(),
            state=self.state,
            records=TableRecords(session),
            next_sequence=head + 1,
        )


class ReplicaGap(ValueError):
    """Replicated changes that do not continue the register's head."""

    def __init__(self, expected: int, got: int, first: int) -> None:
        self.expected = expected
        super().__init__(
            f"replicated changes must continue the head: expected change {expected}, "
            f"got {got} (the batch starts at {first})"
        )


class ReplicaMismatch(ValueError):
    """Replicated changes whose leaves do not give the root they were expected to."""

    def __init__(self, size: int) -> None:
        self.size = size
        super().__init__(
            f"the replicated changes to {size} do not hash to the verified checkpoint's root "
            f"of size {size}: a change was altered on its way or at its source"
        )


class TableRecords:
    """``Records`` read from the tables, inside the write transaction."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def registration_of(self, key: int) -> Registration | None:
        return repo.registration_of(self.session, key)

    def blacklist_entry(self, key: int) -> BlacklistEntry | None:
        return repo.blacklist_entry(self.session, key)


def load_state(connection: Connection) -> ListState:
    """The lists as the tables hold them (call inside one snapshot read).
    Whitelist and blacklist are read in chunks straight into columns (rows
    come ordered by key): no Python object per entry outlives its chunk."""
    white = _read_columns(connection, "whitelist", ("imei_key", "valid_until_us"))
    black = _read_columns(connection, "blacklist", ("imei_key", "cause", "block_date_us"))
    exceptions = [
        (row.imei_key, row.imsi, bytes(row.subscriber_salt) if row.subscriber_salt else b"")
        for rows in repo.iter_rows(
            connection, "exceptions", ("imei_key", "imsi", "subscriber_salt"), LOAD_CHUNK
        )
        for row in rows
    ]
    columns = ("imei_key", "imsi", "msisdn", "block_date_us", "subscriber_salt")
    notifications = [
        (
            row.imei_key,
            row.imsi,
            row.msisdn,
            row.block_date_us,
            bytes(row.subscriber_salt) if row.subscriber_salt else b"",
        )
        for rows in repo.iter_rows(connection, "notifications", columns, LOAD_CHUNK)
        for row in rows
    ]
    state = ListState.from_columns(
        ListColumns(
            sequence=repo.last_sequence(connection),
            policy=repo.load_policy(connection),
            whitelist_keys=white[0].astype(np.uint64),
            whitelist_valid_until_us=white[1],
            blacklist_keys=black[0].astype(np.uint64),
            blacklist_causes=black[1].astype(np.uint8),
            blacklist_block_date_us=black[2],
            notifications=notifications,
            exceptions=exceptions,
        )
    )
    release_freed_memory()  # the chunks' rows: give their pages back
    return state


LOAD_CHUNK = 50_000


def _read_columns(
    connection: Connection, table: str, names: tuple[str, ...]
) -> list[npt.NDArray[np.int64]]:
    """Integer columns of a list table (NULL as NO_DATE), a chunk at a time."""
    parts: list[list[npt.NDArray[np.int64]]] = [[] for _ in names]
    for rows in repo.iter_rows(connection, table, names, LOAD_CHUNK):
        for index, part in enumerate(parts):
            part.append(
                np.fromiter(
                    (NO_DATE if row[index] is None else row[index] for row in rows),
                    dtype=np.int64,
                    count=len(rows),
                )
            )
    return [np.concatenate(part) if part else np.empty(0, np.int64) for part in parts]

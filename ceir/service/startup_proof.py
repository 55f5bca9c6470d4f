"""The proof a register gives on every start, before it answers anything.

In one consistent read, and in one pass over the change table:

1. **The stored log verifies itself.** Every change row, in sequence order,
   is encoded and hashed again (``encode_change``, ``leaf_hash``) and must
   equal the leaf hash stored beside it when it was written: an insider who
   edits a change's values is caught at that change. Sequences have no gap,
   the state row's last sequence is the last change, every stored tree node
   (levels 8, 16, ...) equals the one the leaves give, and the root of the
   first N leaves equals the root of the latest stored checkpoint (size N),
   whose signature must verify under the server's own key when it has one,
   or under one of the earlier custodians' log keys it is given (after a
   handover the latest checkpoint may be the old custodian's, docs/custody.md).
2. **The lists are the replay of that log.** The same changes are replayed
   into the rows each list table must hold (``list_audit``); the tables are
   then read once, for the comparison only, and the in-memory ``ListState``
   the server answers from is built from the replayed rows.

With a list checkpoint (``list_checkpoint``) the same two steps run from
its signed size S on: the lists come from its signed columns, the changes
after S are verified and replayed onto them, and only the rows those changes
wrote are compared (that module says what this leaves out). A missing or
refused checkpoint, or ``repair``, runs the full proof.

From ``PARALLEL_FROM`` changes on a machine with more than one core, a
second process verifies and replays the later half (``startup_range``).

A log that fails (1) is refused, always: a tampered change cannot be
repaired from itself. Tables that fail (2) are refused unless the server
was asked to repair them (``list_repair``), which rewrites the differing
rows from the replay in one transaction and reports each row it changed
with the change that explains it.

Change rows are streamed through the driver's own cursor (a server-side
cursor on PostgreSQL) and turned into ``Change`` values by the repository's
``change_from_row``, the one mapping of a change row; ``ceir.audit.leaf``
is the one encoding of a leaf.
"""

from __future__ import annotations

import logging
import os
import time
from collections import namedtuple
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection

from ceir.audit import (
    TILE_HEIGHT,
    AuditError,
    Checkpoint,
    Frontier,
    Verifier,
    encode_change,
    leaf_hash,
    open_checkpoint,
)
from ceir.audit.merkle import short
from ceir.domain.lists import NO_DATE, ListColumns, ListState
from ceir.domain.model import Change
from ceir.storage import log_repository as log_repo
from ceir.storage import repository as repo
from ceir.storage import schema
from ceir.storage.database import Database
from ceir.storage.projection import UNKNOWN
from ceir.storage.streaming import driver_batches, select_sql

from .list_audit import (
    LIST_TABLES,
    ListsNotFromLog,
    ReplayedLists,
    list_differences,
    without_cycle_collection,
)
from .list_checkpoint import (
    CheckpointRefused,
    LoadedCheckpoint,
    load_checkpoint,
    stored_frontier_matches,
    tail_differences,
)
from .list_repair import repair_lists

__all__ = ["LogNotVerified", "StartupProof", "prove_at_start", "verify_and_replay"]

log = logging.getLogger("ceir.startup_proof")

BATCH = 20_000  # change rows per fetch
PARALLEL_FROM = 200_000  # changes from which a second process takes half of them
CHUNK_LEVEL = 16  # the second process hands back roots of 2^16 leaves


class LogNotVerified(Exception):
    """The stored change log fails its own verification; names the change."""

    def __init__(self, sequence: int | None, problem: str) -> None:
        self.sequence = sequence
        self.problem = problem
        super().__init__(
            f"the stored change log does not verify, so the register will not answer from "
            f"it: {problem}. Nothing was repaired (a tampered log cannot be rebuilt from "
            "itself): restore the database from a copy that `ceir audit verify --db` passes"
        )


@dataclass
class StartupProof:
    """What the start-up proof established."""

    state: ListState  # the lists, replayed from the verified log
    size: int  # changes verified
    root: bytes
    checkpoint_size: int | None  # the latest stored checkpoint's size, if any
    signature_checked: bool
    repaired: list[str] = field(default_factory=list)  # every row the repair changed
    frontier: tuple[bytes, ...] = ()  # the verified frontier at ``size``
    list_checkpoint_size: int | None = None  # the list checkpoint started from, if any
    replayed_changes: int = 0  # changes replayed (after the list checkpoint, if any)
    list_checkpoint_refused: str | None = None  # why a present checkpoint was not used


@dataclass
class _Verified:
    size: int
    root: bytes
    checkpoint_size: int | None
    signature_checked: bool
    replayed: ReplayedLists
    state: ListState
    frontier: tuple[bytes, ...] = ()
    replayed_changes: int = 0


def prove_at_start(
    db: Database,
    verifier: Verifier | None,
    origin: str,
    *,
    repair: bool = False,
    report: Callable[[str], None] | None = None,
    trusted: Sequence[Verifier] = (),
    list_checkpoint: Path | None = None,
) -> StartupProof:
    """Verify the stored log, then prove the list tables are its replay.

    ``verifier``: the server's own key, which must have signed the latest
    stored checkpoint (None and no ``trusted``: the checkpoint's root is
    still checked, not its signature). ``trusted``: the log keys of earlier
    custodians (the custody policy chain's), any of which may have signed
    it instead: a register that took the log over holds the old key's
    checkpoints until it signs its own. Raises ``LogNotVerified`` naming the first bad change, or
    ``ListsNotFromLog`` naming per table the first differing row; with
    ``repair``, differing rows are rewritten from the replay instead, each
    one passed to ``report`` and kept in ``StartupProof.repaired``.
    ``list_checkpoint``: a list checkpoint file to start from (signed by
    one of these keys), when it is there and passes its checks.
    """
    keys = [key for key in (verifier, *trusted) if key is not None]
    loaded, refused = None, None
    if list_checkpoint is not None and not repair:
        loaded, refused = _checkpoint(list_checkpoint, keys, origin)
    started = time.monotonic()
    with db.read_snapshot() as connection:
        if loaded is not None:
            try:
                stored_frontier_matches(connection, loaded)
            except CheckpointRefused as error:
                refused = _refuse(loaded.path, error)
                loaded = None
        if loaded is not None:
            verified = _verify_from_checkpoint(connection, loaded, keys, origin)
            differences = list(tail_differences(connection, verified.replayed, verified.state))
        else:
            verified = verify_and_replay(connection, verifier, origin, trusted=trusted)
            differences = list(list_differences(connection, verified.replayed))
    proof = StartupProof(
        verified.state,
        verified.size,
        verified.root,
        verified.checkpoint_size,
        verified.signature_checked,
        frontier=verified.frontier,
        list_checkpoint_size=None if loaded is None else loaded.statement.size,
        replayed_changes=verified.replayed_changes,
        list_checkpoint_refused=refused,
    )
    log.info(
        "start-up proof passed" if not differences else "start-up proof found differing rows",
        extra={
            "size": proof.size,
            "list_checkpoint_size": proof.list_checkpoint_size,
            "replayed_changes": proof.replayed_changes,
            "seconds": round(time.monotonic() - started, 3),
        },
    )
    if not differences:
        return proof
    if not repair:
        raise ListsNotFromLog(differences)
    proof.repaired = repair_lists(db, verified.replayed, verified.size, report)
    return proof


def _checkpoint(
    path: Path, keys: list[Verifier], origin: str
) -> tuple[LoadedCheckpoint | None, str | None]:
    """The list checkpoint to start from, or None and why it is not used."""
    if not keys:
        log.info(
            "list checkpoint not used: no key to verify it; the full start-up proof runs",
            extra={"path": str(path)},
        )
        return None, None
    try:
        loaded = load_checkpoint(path, keys, origin)
    except CheckpointRefused as error:
        return None, _refuse(path, error)
    if loaded is None:
        log.info("no list checkpoint: the full start-up proof runs", extra={"path": str(path)})
    return loaded, None


def _refuse(path: Path, error: CheckpointRefused) -> str:
    """Log a refused checkpoint as the alarm it is; the full proof runs instead."""
    log.error(
        "list checkpoint refused: the full start-up proof runs instead",
        extra={"path": str(path), "reason": str(error)},
    )
    return str(error)


def _verify_from_checkpoint(
    connection: Connection, loaded: LoadedCheckpoint, keys: list[Verifier], origin: str
) -> _Verified:
    """Step 1 from the checkpoint's signed frontier on, and the replay of the
    changes after it onto its columns (the caller checked the stored tree)."""
    statement = loaded.statement
    start = statement.size
    checkpoint = log_repo.latest_checkpoint(connection)
    assert checkpoint is not None  # stored_frontier_matches refused a database without
    head = repo.last_sequence(connection)
    # Nodes wholly within the first S leaves were folded into the signed frontier.
    check = _LogCheck(_stored_nodes(connection, start), checkpoint[0], first=start)
    check.frontier = Frontier(start, statement.frontier, check.node)
    if checkpoint[0] == start:
        check.checkpoint_root = statement.root
    with without_cycle_collection():
        state = ListState.from_columns(loaded.columns)
        replayed = _tracked(ReplayedLists())
        replayed.policy = loaded.columns.policy
        for batch in _change_batches(connection, start, None):
            for change, stored in batch:
                check.leaf(change, stored)
                replayed.apply(change)
                state.apply(change)
    if head != check.size:
        raise LogNotVerified(
            min(head, check.size) + 1,
            f"the register's state names change {head} as the last, but the change table "
            f"ends at change {check.size}",
        )
    check.finish()
    signature_checked = _check_checkpoint(check, *checkpoint, keys, origin)
    return _Verified(
        check.size,
        check.frontier.root(),
        checkpoint[0],
        signature_checked,
        replayed,
        state,
        check.frontier.hashes,
        check.size - start,
    )


def verify_and_replay(
    connection: Connection,
    verifier: Verifier | None,
    origin: str,
    *,
    parallel_from: int = PARALLEL_FROM,
    chunk_level: int = CHUNK_LEVEL,
    trusted: Sequence[Verifier] = (),
) -> _Verified:
    """Step 1 and the replay of step 2 (inside one snapshot read).

    The latest checkpoint's signature must verify under ``verifier`` or one
    of ``trusted`` (earlier custodians' keys).

    From ``parallel_from`` changes on a machine with more than one core, a
    second process verifies and replays the later changes (from a multiple
    of 2^chunk_level on) while this one does the earlier ones.
    """
    with without_cycle_collection():
        keys = [key for key in (verifier, *trusted) if key is not None]
        return _verify_and_replay(connection, keys, origin, parallel_from, chunk_level)


def _verify_and_replay(
    connection: Connection,
    keys: list[Verifier],
    origin: str,
    parallel_from: int,
    chunk_level: int,
) -> _Verified:
    checkpoint = log_repo.latest_checkpoint(connection)
    checkpoint_size = checkpoint[0] if checkpoint else None
    head = repo.last_sequence(connection)
    check = _LogCheck(_stored_nodes(connection), checkpoint_size)
    replayed = ReplayedLists()  # the second process's range tracks its removals
    split = (
        _split(head, chunk_level) if head >= parallel_from and (os.cpu_count() or 1) > 1 else None
    )
    if split is None:
        _replay_range(connection, check, replayed, None)
    else:
        from .startup_range import RangeVerifier

        with RangeVerifier(connection, check, split, head, chunk_level) as later:
            _replay_range(connection, check, replayed, split)
            later.merge_into(check, replayed)
    size = check.size
    if head != size:
        raise LogNotVerified(
            min(head, size) + 1,
            f"the register's state names change {head} as the last, but the change table "
            f"ends at change {size}: changes were "
            + ("deleted" if head > size else "added without moving the state"),
        )
    check.finish()
    signature_checked = False
    if checkpoint is not None:
        signature_checked = _check_checkpoint(check, *checkpoint, keys, origin)
    signed = 0 if checkpoint is None else checkpoint[0]
    if signed < size:
        log.warning(
            "changes not covered by a stored signed checkpoint",
            extra={"from_sequence": signed + 1, "to_sequence": size},
        )
    state = lists_of(replayed, size)
    return _Verified(
        size,
        check.frontier.root(),
        check.checkpoint_size,
        signature_checked,
        replayed,
        state,
        check.frontier.hashes,
        size,
    )


def _split(head: int, chunk_level: int) -> int | None:
    """Where the second process starts: about half way, on a multiple of 2^chunk_level."""
    split = (head // 2) >> chunk_level << chunk_level
    return split or None


def _replay_range(
    connection: Connection, check: _LogCheck, replayed: ReplayedLists, upto: int | None
) -> None:
    for batch in _change_batches(connection, 0, upto):
        for change, stored in batch:
            check.leaf(change, stored)
            replayed.apply(change)


class _Tracked(dict[Any, Any]):
    """A replayed table that remembers which keys it lost (and did not get back),
    so that the replay of a later range can be laid over an earlier one."""

    def __init__(self) -> None:
        super().__init__()
        self.removed: set[Any] = set()

    def __setitem__(self, key: Any, value: Any) -> None:
        self.removed.discard(key)
        super().__setitem__(key, value)

    def __delitem__(self, key: Any) -> None:
        self.removed.add(key)
        super().__delitem__(key)

    def pop(self, key: Any, *default: Any) -> Any:
        self.removed.add(key)
        return super().pop(key, *default)


def _tracked(replayed: ReplayedLists) -> ReplayedLists:
    replayed.rows = {name: _Tracked() for name in replayed.rows}
    return replayed


def lists_of(replayed: ReplayedLists, sequence: int) -> ListState:
    """The in-memory lists holding the replayed rows, as ``load_state`` would
    load them from tables equal to the replay (columns found by name; the
    devices table is not in memory)."""
    found: dict[str, Any] = {}
    for table in LIST_TABLES:
        rows = replayed.rows[table.name]
        column = {name: index for index, name in enumerate(table.values)}
        salt = column.get("subscriber_salt")
        if table.name == "whitelist":
            until = column["valid_until_us"]
            keys = np.fromiter((key[0] for key in rows), np.uint64, len(rows))
            values = np.fromiter(
                (NO_DATE if v[until] is None else v[until] for v in rows.values()),
                np.int64,
                len(rows),
            )
            order = np.argsort(keys)
            found["whitelist_keys"] = keys[order]
            found["whitelist_valid_until_us"] = values[order]
        elif table.name == "blacklist":
            cause, block = column["cause"], column["block_date_us"]
            black = sorted((key[0], values[cause], values[block]) for key, values in rows.items())
            found["blacklist_keys"] = np.array([e[0] for e in black], dtype=np.uint64)
            found["blacklist_causes"] = np.array([int(e[1]) for e in black], dtype=np.uint8)
            found["blacklist_block_date_us"] = np.array(
                [NO_DATE if e[2] is None else e[2] for e in black], dtype=np.int64
            )
        elif table.name == "notifications":
            msisdn, block = column["msisdn"], column["block_date_us"]
            found["notifications"] = [
                (
                    key,
                    imsi,
                    values[msisdn],
                    values[block],
                    b"" if salt is None else _salt(values[salt]),
                )
                for (key, imsi), values in sorted(rows.items())
            ]
        elif table.name == "exceptions":
            found["exceptions"] = [
                (key, imsi, b"" if salt is None else _salt(values[salt]))
                for (key, imsi), values in rows.items()
            ]
    return ListState.from_columns(ListColumns(sequence=sequence, policy=replayed.policy, **found))


def _salt(value: Any) -> bytes:
    """A replayed subscriber salt as memory holds it: a version 1 row's is not
    in the log (``UNKNOWN``) and its table row has none, like a NULL."""
    return b"" if value is UNKNOWN or not value else bytes(value)


class _LogCheck:
    """Leaf by leaf: sequence, recomputed leaf hash, tree nodes, checkpoint root.

    From leaf ``first`` on (0: the whole log, into one frontier); with
    ``chunk_level``, into one frontier per 2^chunk_level leaves, whose roots
    (``chunk_roots``) a later merge appends (``startup_range``).
    """

    def __init__(
        self,
        stored_nodes: dict[tuple[int, int], bytes],
        checkpoint_size: int | None,
        *,
        first: int = 0,
        chunk_level: int | None = None,
    ) -> None:
        self.stored_nodes = stored_nodes
        self.checkpoint_size = checkpoint_size
        self.checkpoint_root: bytes | None = None
        self.unhashed_from: int | None = None  # the first change without a stored hash
        self.size = first  # the leaves before the next one
        self.frontier = Frontier(on_node=self.node)
        self.chunk = None if chunk_level is None else 1 << chunk_level
        self.chunk_roots: list[bytes] = []
        self.chunk_leaves: list[bytes] = []
        self.checkpoint_leaves: list[bytes] | None = None

    def leaf(self, change: Change, stored: bytes | None) -> None:
        sequence = change.sequence
        expected = self.size + 1
        if sequence != expected:
            raise LogNotVerified(
                expected,
                f"change {expected} is missing: the change table goes from change "
                f"{expected - 1} to change {sequence} (a deleted or renumbered change row)",
            )
        try:
            digest = leaf_hash(encode_change(change))
        except AuditError as error:
            problem = f"change {sequence} cannot be encoded: {error}"
            raise LogNotVerified(sequence, problem) from error
        if stored is None:
            # Changes written before the log (or without it) are hashed by the
            # server once it has started; they must all come after the hashed ones.
            if self.unhashed_from is None:
                self.unhashed_from = sequence
        elif self.unhashed_from is not None:
            raise LogNotVerified(
                self.unhashed_from,
                f"change {self.unhashed_from} has no stored leaf hash but change {sequence} "
                "after it has one: a leaf hash was erased",
            )
        elif digest != stored:
            key = "-" if change.imei_key is None else f"{change.imei_key:014d}"
            raise LogNotVerified(
                sequence,
                f"change {sequence} ({change.kind.name}, IMEI key {key}) was altered: its row "
                f"hashes to {short(digest)}, but the log recorded {short(stored)} when it was "
                "written",
            )
        if self.chunk is None:
            self.frontier.append(digest)
            self.size = sequence
            if sequence == self.checkpoint_size:
                self.checkpoint_root = self.frontier.root()
        else:
            self._chunked(digest)

    def _chunked(self, digest: bytes) -> None:
        chunk, start = self.chunk, self.size
        assert chunk is not None
        if start % chunk == 0:
            base = start

            def node(level: int, index: int, node_digest: bytes) -> None:
                self.node(level, (base >> level) + index, node_digest)

            self.frontier = Frontier(on_node=node)
            self.chunk_leaves = []
        self.frontier.append(digest)
        self.chunk_leaves.append(digest)
        self.size = start + 1
        if self.size == self.checkpoint_size:
            self.checkpoint_leaves = list(self.chunk_leaves)
        if self.size % chunk == 0:
            self.chunk_roots.append(self.frontier.root())

    def node(self, level: int, index: int, digest: bytes) -> None:
        """Compare a node the leaves complete with the stored one (levels 8, 16, ...)."""
        if level % TILE_HEIGHT:
            return
        first, last = (index << level) + 1, (index + 1) << level
        stored = self.stored_nodes.pop((level, index), None)
        if stored is None:
            if self.unhashed_from is None:  # a hashed range must have its node stored
                raise LogNotVerified(
                    first,
                    f"the stored tree node ({level}, {index}) over changes {first} to {last} "
                    "is missing: a tree node was deleted",
                )
        elif stored != digest:
            raise LogNotVerified(
                first,
                f"the stored tree node ({level}, {index}) over changes {first} to {last} is "
                f"{short(stored)}, but those changes give {short(digest)}: a tree node was "
                "altered",
            )

    def finish(self) -> None:
        """Stored nodes the tree does not have: the changes under them were removed."""
        if self.stored_nodes:
            level, index = min(self.stored_nodes, key=lambda node: node[1] << node[0])
            first = (index << level) + 1
            raise LogNotVerified(
                first,
                f"the stored tree node ({level}, {index}) covers changes {first} to "
                f"{(index + 1) << level}, but the change table ends at change "
                f"{self.size}: changes were deleted",
            )


def _check_checkpoint(
    check: _LogCheck, size: int, note: str, keys: list[Verifier], origin: str
) -> bool:
    """The latest checkpoint's root against the leaves; its signature under the
    server's key or an earlier custodian's (True when checked)."""
    if size > check.size:
        raise LogNotVerified(
            check.size + 1,
            f"the latest checkpoint signed {size} changes, but the change table ends at "
            f"change {check.size}: changes were deleted",
        )
    try:
        if not keys:
            checkpoint = Checkpoint.parse(note.split("\n\n", 1)[0] + "\n")
        else:
            checkpoint = open_checkpoint(note, keys, origin)
    except AuditError as error:
        whose = "this server's key" if len(keys) == 1 else "this server's key nor a trusted one"
        raise LogNotVerified(
            None,
            f"the latest stored checkpoint (size {size}) is refused: {error}"
            + (f" (it is not signed by {whose})" if keys else ""),
        ) from error
    root = check.checkpoint_root
    if size == 0 or root is None:
        return bool(keys)
    if root != checkpoint.root_hash:
        raise LogNotVerified(
            None,
            f"the first {size} changes hash to {short(root)}, but the checkpoint of size {size} "
            f"signed {short(checkpoint.root_hash)}: a change among 1 to {size} was altered "
            "together with its stored leaf hash and tree nodes",
        )
    return bool(keys)


def _stored_nodes(connection: Connection, after: int = 0) -> dict[tuple[int, int], bytes]:
    """The stored tree nodes, or (``after``) those over some leaf after the
    first ``after``: node (level, index) ends at leaf (index + 1) << level."""
    sql = 'SELECT level, "index", hash FROM tree_nodes'
    if after:
        sql += f' WHERE "index" >= ({int(after)} >> level)'
    rows = connection.exec_driver_sql(sql)
    return {(int(level), int(index)): bytes(digest) for level, index, digest in rows}


_CHANGES = schema.Base.metadata.tables["changes"]
_COLUMNS = tuple(column.name for column in _CHANGES.columns)
# change_from_row reads columns by attribute; a named tuple reads them at C speed.
_ChangeRow = namedtuple("_ChangeRow", _COLUMNS)  # type: ignore[misc]  # names from the schema
_HASH = _COLUMNS.index("leaf_hash")


def _change_batches(
    connection: Connection, after: int, upto: int | None
) -> Iterator[list[tuple[Change, bytes | None]]]:
    """The changes after ``after`` (up to ``upto``) with their stored leaf
    hashes, in sequence order, a batch at a time."""
    sql = select_sql("changes", _COLUMNS, ("sequence",))
    bound = "" if upto is None else f" AND sequence <= {int(upto)}"
    sql = sql.replace(" ORDER BY ", f" WHERE sequence > {int(after)}{bound} ORDER BY ", 1)
    make = _ChangeRow._make
    # It reads a row's columns by attribute, which the named tuple has.
    to_change: Callable[[Any], Change] = repo.change_from_row
    for rows in driver_batches(connection, sql, BATCH):
        yield [
            (to_change(make(row)), None if row[_HASH] is None else bytes(row[_HASH]))
            for row in rows
        ]

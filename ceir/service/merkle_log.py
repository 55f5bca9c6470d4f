"""The register's change feed as a Merkle log, kept in the database.

Every change is leaf ``sequence - 1`` of an RFC 6962 tree (``ceir.audit``).
A write transaction appends its changes' leaf hashes to a copy of the
frontier and stores, with the changes:

- each change's leaf hash (``changes.leaf_hash``, level 0 of the tree);
- every perfect subtree the append completes at levels 8, 16, ...
  (``tree_nodes``; about one row per 256 changes);
- when the server has a signing key, the checkpoint of the new tree size,
  signed at the commit time (``checkpoints``), for offline audits.

The new frontier is kept only once the transaction has committed. At
start-up the frontier is rebuilt from the stored hashes, and changes written
before the log existed (no leaf hash) are hashed then (a backfill). Proofs
and roots of past sizes come from a ``Prover`` over the stored hashes.

Checkpoints for other sizes (the RPCs, snapshots, feed messages) are signed
on request with the signing time; the root of a size never changes, so
every checkpoint of one size states the same root.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from ceir.audit import (
    TILE_HEIGHT,
    Checkpoint,
    Frontier,
    Prover,
    Signer,
    encode_changes,
    leaf_hash,
    sign_checkpoint,
)
from ceir.domain.model import Change
from ceir.storage import log_repository as log_repo
from ceir.storage import repository as repo
from ceir.storage.database import Database

__all__ = ["DEFAULT_ORIGIN", "Append", "CheckpointSigner", "DatabaseHashStore", "MerkleLog"]

log = logging.getLogger("ceir.merkle_log")

DEFAULT_ORIGIN = "ceir.kominfo.go.id/register"
BACKFILL_BATCH = 10_000
_RECENT_NOTES = 1_024  # signed notes of recent commits, reused by the live feed


@dataclass(frozen=True)
class CheckpointSigner:
    """The custodian's key and the log's origin: signs checkpoints of this log."""

    origin: str
    signer: Signer

    def sign(self, size: int, root: bytes, time_us: int) -> str:
        """The signed note of the checkpoint (origin, size, root, time)."""
        return sign_checkpoint(Checkpoint(self.origin, size, root, time_us), [self.signer])


class DatabaseHashStore:
    """``ceir.audit.HashStore`` over the register's tables.

    Stored hashes never change, so each level keeps the prefix it has read
    in memory: a proof then costs no database read, which matters when five
    verifying operators ask for one per feed message. The cache stops
    growing at ``CACHE_NODES`` hashes a level; beyond that reads go to the
    database.
    """

    CACHE_NODES = 4_000_000

    def __init__(self, db: Database) -> None:
        self.db = db
        self._levels: dict[int, list[bytes]] = {}

    def node_hashes(self, level: int, start: int, end: int) -> Sequence[bytes]:
        """Stored hashes of nodes (level, start) to (level, end - 1)."""
        cached = self._levels.setdefault(level, [])
        if end <= len(cached):
            return cached[start:end]
        if len(cached) < self.CACHE_NODES and start <= len(cached):
            read = self._read(level, len(cached), min(end, self.CACHE_NODES))
            cached.extend(read)
            if end <= len(cached):
                return cached[start:end]
        return self._read(level, start, end)

    def _read(self, level: int, start: int, end: int) -> list[bytes]:
        with self.db.read() as connection:
            if level == 0:
                return list(log_repo.leaf_hashes(connection, start, end))
            return list(log_repo.tree_node_hashes(connection, level, start, end))


@dataclass
class Append:
    """What one write adds to the log, computed before its transaction commits."""

    frontier: Frontier
    leaf_hashes: list[bytes]
    nodes: list[tuple[int, int, bytes]] = field(default_factory=list)
    note: str = ""  # the signed checkpoint of the new size ("" when unsigned)
    time_us: int = 0


class MerkleLog:
    """The log of one server process: the frontier, the prover, the signer."""

    def __init__(self, db: Database, signer: CheckpointSigner | None = None) -> None:
        self.db = db
        self.signer = signer
        self._prover = Prover(DatabaseHashStore(db))
        self._prover_lock = threading.Lock()
        self._frontier = Frontier()
        self._notes: dict[int, str] = {}  # tree size -> signed note, for recent commits

    @property
    def origin(self) -> str:
        return self.signer.origin if self.signer is not None else DEFAULT_ORIGIN

    @property
    def size(self) -> int:
        """The number of leaves this process has seen committed."""
        return self._frontier.size

    def frontier(self) -> Frontier:
        """A copy of the frontier of the leaves this process has seen committed."""
        return self._frontier.copy()

    # --- start-up -------------------------------------------------------------------------

    def open(self) -> None:
        """Hash changes that have no leaf hash yet, then load the frontier."""
        with self.db.write() as session:
            head = repo.lock_state(session)
            size = log_repo.logged_size(session)
            if size < head:
                log.warning(
                    "hashing changes written before the Merkle log",
                    extra={"from_sequence": size + 1, "to_sequence": head},
                )
                self._frontier = self._rebuild(size)
                while self._frontier.size < head:
                    self._backfill(session, head)
        self._frontier = self._rebuild(self._stored_size())

    def _stored_size(self) -> int:
        with self.db.read() as connection:
            return log_repo.logged_size(connection)

    def _backfill(self, session: Session, head: int) -> None:
        batch = repo.changes_after(session, self._frontier.size, BACKFILL_BATCH)
        append = self.prepare(batch, 0, sign=False)
        log_repo.set_leaf_hashes(
            session, [(c.sequence, h) for c, h in zip(batch, append.leaf_hashes, strict=True)]
        )
        log_repo.insert_tree_nodes(session, append.nodes)
        self._frontier = append.frontier

    def _rebuild(self, size: int) -> Frontier:
        with self._prover_lock:
            return self._prover.frontier(size)

    def resync(self, size: int) -> None:
        """Load the frontier at ``size`` (another process appended; write lock held)."""
        if size != self._frontier.size:
            self._frontier = self._rebuild(size)

    # --- appending (inside the write transaction) -------------------------------------------

    def prepare(self, changes: Sequence[Change], time_us: int, *, sign: bool = True) -> Append:
        """Hash numbered changes onto a copy of the frontier; sign the new size."""
        nodes: list[tuple[int, int, bytes]] = []

        def keep(level: int, index: int, digest: bytes) -> None:
            if level % TILE_HEIGHT == 0:
                nodes.append((level, index, digest))

        frontier = self._frontier.copy(keep)
        if changes and changes[0].sequence != frontier.size + 1:
            raise RuntimeError(
                f"the Merkle log holds {frontier.size} leaves but the next change is "
                f"{changes[0].sequence}"
            )
        hashes = list(map(leaf_hash, encode_changes(changes)))
        frontier.extend(hashes)
        append = Append(frontier, hashes, nodes, time_us=time_us)
        if sign and changes and self.signer is not None:
            append.note = self.signer.sign(frontier.size, frontier.root(), time_us)
        return append

    def store(self, session: Session, append: Append) -> None:
        """Write the append's tree nodes and checkpoint (the leaf hashes go with the changes)."""
        log_repo.insert_tree_nodes(session, append.nodes)
        if append.note:
            log_repo.insert_checkpoint(session, append.frontier.size, append.note, append.time_us)

    def accept(self, append: Append) -> None:
        """Keep the append's frontier: its transaction committed."""
        self._frontier = Frontier(append.frontier.size, append.frontier.hashes)
        if append.note:
            if len(self._notes) >= _RECENT_NOTES:
                self._notes.clear()
            self._notes[append.frontier.size] = append.note

    # --- reading -----------------------------------------------------------------------------

    def root(self, size: int) -> bytes:
        """The root of the first ``size`` leaves (``size`` at most what is committed)."""
        frontier = self._frontier
        if size == frontier.size:
            return frontier.root()
        with self._prover_lock:
            return self._prover.root(size)

    def checkpoint_at(self, size: int, now_us: int) -> str:
        """The signed checkpoint of ``size`` ("" without a signing key).

        The note signed when that size committed if this process still holds
        it, otherwise a new one signed at ``now_us``.
        """
        if self.signer is None:
            return ""
        note = self._notes.get(size)
        if note is not None:
            return note
        return self.signer.sign(size, self.root(size), now_us)

    def frontier_hashes(self, size: int) -> list[bytes]:
        """The roots of the perfect subtrees of the first ``size`` leaves, left to right."""
        frontier = self._frontier
        if size == frontier.size:
            return list(frontier.hashes)
        with self._prover_lock:
            return list(self._prover.frontier(size).hashes)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        with self._prover_lock:
            return self._prover.inclusion_proof(index, size)

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        with self._prover_lock:
            return self._prover.consistency_proof(first, second)

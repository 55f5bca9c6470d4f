"""Offline audits of the change log: from a database or from an export file.

An audit trusts nothing the database says about itself. It recomputes every
leaf from the change rows, compares each with the leaf hash stored beside
it (the first mismatch names the altered change), rebuilds the tree and its
tile nodes, checks every stored checkpoint's root against the rebuilt tree
and the signature of the latest one, and (from a database) replays the
changes into the rows each list table must hold and compares presence and
values (``list_audit``), naming per table the first row that the log does not
explain.

An export (JSON lines) carries the leaf bytes, the stored leaf hashes and
the signed checkpoints, so the same checks run where the database is not
reachable. Each leaf's first byte names its encoding version, so an export
of a log that moved from version 1 to version 2 verifies leaf by leaf. A
version 2 leaf holds the subscriber commitment, never the clear IMSI or
MSISDN; version 1 leaves (older changes) hold them in clear::

    {"format": "ceir-log-export/1", "origin": "...", "leaves": N}
    {"sequence": 1, "leaf": "<hex leaf bytes>", "leaf_hash": "<hex, as stored>"}
    ...
    {"checkpoint": "<signed note>"}
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ceir.audit import (
    TILE_HEIGHT,
    AuditError,
    Checkpoint,
    Frontier,
    Leaf,
    Verifier,
    decode_leaf,
    encode_change,
    encode_leaf,
    leaf_hash,
    open_checkpoint,
)
from ceir.audit.merkle import short
from ceir.domain.model import Change
from ceir.storage import log_repository as log_repo
from ceir.storage import repository as repo
from ceir.storage.database import Database

from .list_audit import ReplayedLists, list_differences

__all__ = ["EXPORT_FORMAT", "AuditReport", "audit_database", "audit_export", "export_log"]

EXPORT_FORMAT = "ceir-log-export/1"
_BATCH = 10_000


@dataclass
class AuditReport:
    """What an audit found. ``problems`` is empty when the log verified."""

    leaves: int = 0
    checkpoints: int = 0
    note: str = ""  # the latest checkpoint, as signed
    checkpoint: Checkpoint | None = None
    signature_checked: bool = False
    first_bad_sequence: int | None = None
    bad_leaves: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class _Auditor:
    verifiers: list[Verifier]
    origin: str | None
    report: AuditReport = field(default_factory=AuditReport)
    frontier: Frontier = field(default_factory=Frontier)
    roots: dict[int, bytes] = field(default_factory=dict)  # sizes of checkpoints -> root
    nodes: dict[tuple[int, int], bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.frontier = Frontier(on_node=self._keep)

    def _keep(self, level: int, index: int, digest: bytes) -> None:
        if level % TILE_HEIGHT == 0:
            self.nodes[(level, index)] = digest

    def leaf(
        self, change: Change | Leaf, recorded: bytes | None, leaf: bytes | None = None
    ) -> None:
        """Check the next change (from a database) or leaf (read from an export)
        against its recorded leaf hash and append it."""
        report = self.report
        index = self.frontier.size
        if change.sequence != index + 1:
            self.problem(
                change.sequence,
                f"leaf {index} is change {change.sequence}, expected change {index + 1}: "
                "the change table has a gap or a duplicate",
            )
        try:
            encoded = encode_leaf(change) if isinstance(change, Leaf) else encode_change(change)
        except AuditError as error:
            self.problem(
                change.sequence,
                f"change {change.sequence} (leaf {index}) cannot be encoded as a version "
                f"{change.leaf_version} leaf: {error}",
            )
            # Its recorded hash keeps the later leaves at their positions.
            if recorded is not None:
                self.append(recorded)
            return
        if leaf is not None and leaf != encoded:
            self.problem(change.sequence, f"leaf {index}: the exported bytes are not canonical")
        actual = leaf_hash(encoded)
        if recorded is None:
            self.problem(change.sequence, f"change {change.sequence} has no recorded leaf hash")
        elif actual != recorded:
            report.bad_leaves += 1
            self.problem(
                change.sequence,
                f"first bad leaf: change {change.sequence} (leaf {index}, {change.kind.name}, "
                f"IMEI key {_key(change.imei_key)}) hashes to {short(actual)}, but the log "
                f"recorded {short(recorded)} when it was written: the change row was altered",
            )
        self.append(actual)

    def append(self, digest: bytes) -> None:
        """Append a leaf hash, keeping the root at every checkpoint's size."""
        self.frontier.append(digest)
        if self.frontier.size in self.roots:
            self.roots[self.frontier.size] = self.frontier.root()

    def problem(self, sequence: int | None, message: str) -> None:
        report = self.report
        if sequence is not None and report.first_bad_sequence is None:
            report.first_bad_sequence = sequence
        if len(report.problems) < 20:
            report.problems.append(message)

    def checkpoints(self, notes: list[tuple[int, str]]) -> None:
        """Check every stored checkpoint's root, and the latest one's signature."""
        report = self.report
        report.checkpoints = len(notes)
        if not notes:
            if self.frontier.size:
                self.problem(None, "the log holds no signed checkpoint")
            return
        for size, note in notes:
            try:
                checkpoint = Checkpoint.parse(note.split("\n\n", 1)[0] + "\n")
            except AuditError as error:
                self.problem(None, f"stored checkpoint of size {size}: {error}")
                continue
            root = self.roots.get(size)
            if size > self.frontier.size:
                self.problem(
                    None,
                    f"a checkpoint signed size {size}, but the log holds {self.frontier.size} "
                    "changes: changes were removed",
                )
            elif root is not None and root != checkpoint.root_hash:
                self.problem(
                    None,
                    f"the first {size} changes hash to {short(root)}, but the checkpoint of "
                    f"size {size} signed {short(checkpoint.root_hash)}: a change up to {size} "
                    "was altered (with its stored hash)",
                )
        size, note = notes[-1]
        report.note = note
        origin = self.origin or note.split("\n", 1)[0]
        if not self.verifiers:
            report.checkpoint = Checkpoint.parse(note.split("\n\n", 1)[0] + "\n")
            return
        try:
            report.checkpoint = open_checkpoint(note, self.verifiers, origin)
            report.signature_checked = True
        except AuditError as error:
            self.problem(None, f"the latest checkpoint (size {size}) is refused: {error}")

    def tree_nodes(self, stored: Iterable[tuple[int, int, bytes]]) -> None:
        for level, index, digest in stored:
            expected = self.nodes.get((level, index))
            if expected is not None and expected != digest:
                self.problem(
                    None,
                    f"stored tree node ({level}, {index}) is {short(digest)}, the changes give "
                    f"{short(expected)}",
                )
                return


def audit_database(
    db: Database, verifiers: Iterable[Verifier], origin: str | None = None
) -> AuditReport:
    """Audit the log and the lists of a register's database."""
    auditor = _Auditor(list(verifiers), origin)
    with db.read_snapshot() as connection:
        notes = log_repo.stored_checkpoints(connection)
        auditor.roots = {size: b"" for size, _ in notes}
        replayed = ReplayedLists()
        after = 0
        while batch := log_repo.changes_with_hashes(connection, after, _BATCH):
            for change, recorded in batch:
                auditor.leaf(change, recorded)
                # A gap is reported by leaf(); the lists are compared anyway.
                replayed.apply(change)
            after = batch[-1][0].sequence
        auditor.report.leaves = auditor.frontier.size
        auditor.tree_nodes(_stored_nodes(connection))
        auditor.checkpoints(notes)
        for difference in list_differences(connection, replayed):
            auditor.problem(None, difference)
    return auditor.report


def _stored_nodes(connection: Any) -> Iterator[tuple[int, int, bytes]]:
    rows = connection.exec_driver_sql('SELECT level, "index", hash FROM tree_nodes')
    for level, index, digest in rows:
        yield int(level), int(index), bytes(digest)


def _key(key: int | None) -> str:
    return "-" if key is None else f"{key:014d}"


# --- exports ---------------------------------------------------------------------------


def export_log(db: Database, out: TextIO) -> int:
    """Write the log (leaves, stored hashes, checkpoints) as JSON lines; return the leaves."""
    with db.read_snapshot() as connection:
        notes = log_repo.stored_checkpoints(connection)
        leaves = repo.last_sequence(connection)
        origin = notes[-1][1].split("\n", 1)[0] if notes else ""
        header = {"format": EXPORT_FORMAT, "origin": origin, "leaves": leaves}
        out.write(json.dumps(header) + "\n")
        after = 0
        while batch := log_repo.changes_with_hashes(connection, after, _BATCH):
            for change, recorded in batch:
                try:
                    encoded = encode_change(change)
                except AuditError as error:
                    raise AuditError(f"change {change.sequence}: {error}") from error
                line = {
                    "sequence": change.sequence,
                    "leaf": encoded.hex(),
                    "leaf_hash": "" if recorded is None else recorded.hex(),
                }
                out.write(json.dumps(line) + "\n")
            after = batch[-1][0].sequence
        for _, note in notes:
            out.write(json.dumps({"checkpoint": note}) + "\n")
    return leaves


def audit_export(
    path: Path, verifiers: Iterable[Verifier], origin: str | None = None
) -> AuditReport:
    """Audit an export file written by ``export_log``."""
    auditor = _Auditor(list(verifiers), origin)
    notes: list[tuple[int, str]] = []
    with Path(path).open(encoding="utf-8") as lines:
        header = json.loads(next(lines, "{}"))
        if header.get("format") != EXPORT_FORMAT:
            raise AuditError(f"{path}: not a {EXPORT_FORMAT} export (first line {header!r})")
        records = [json.loads(line) for line in lines if line.strip()]
    for record in records:
        if "checkpoint" in record:
            note = record["checkpoint"]
            notes.append((int(note.split("\n", 2)[1]), note))
    auditor.roots = {size: b"" for size, _ in notes}
    for record in records:
        if "leaf" not in record:
            continue
        leaf = bytes.fromhex(record["leaf"])
        recorded = bytes.fromhex(record["leaf_hash"]) if record["leaf_hash"] else None
        try:
            decoded = decode_leaf(leaf)
        except AuditError as error:
            # An unknown encoding version or non-canonical bytes: refused. The
            # bytes still hash, so the later leaves keep their positions.
            auditor.problem(record.get("sequence"), f"change {record.get('sequence')}: {error}")
            auditor.append(leaf_hash(leaf))
            continue
        auditor.leaf(decoded, recorded, leaf)
    auditor.report.leaves = auditor.frontier.size
    auditor.checkpoints(sorted(notes))
    return auditor.report

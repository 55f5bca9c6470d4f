"""The Merkle log's storage: leaf hashes (a column of the change feed),
stored subtree hashes and signed checkpoints.

Like ``repository``, functions take the caller's session or connection and
never open or commit a transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from ceir.domain.model import Change

from . import schema
from .repository import Executor, _table, change_from_row

_changes = _table(schema.ChangeRecord)
_tree_nodes = _table(schema.TreeNode)
_checkpoints = _table(schema.SignedCheckpoint)


def logged_size(connection: Executor) -> int:
    """The number of changes with a leaf hash (they are hashed in sequence order)."""
    found = connection.execute(
        select(func.max(_changes.c.sequence)).where(_changes.c.leaf_hash.is_not(None))
    ).scalar()
    return int(found or 0)


def leaf_hashes(connection: Executor, start: int, end: int) -> list[bytes]:
    """The stored leaf hashes of leaves ``start`` to ``end - 1`` (changes start+1 to end)."""
    rows = connection.execute(
        select(_changes.c.leaf_hash)
        .where(_changes.c.sequence > start, _changes.c.sequence <= end)
        .order_by(_changes.c.sequence)
    )
    found = []
    for (digest,) in rows:
        if digest is None:
            break
        found.append(bytes(digest))
    return found


def tree_node_hashes(connection: Executor, level: int, start: int, end: int) -> list[bytes]:
    """Stored hashes of tree nodes (level, start) to (level, end - 1), in order."""
    rows = connection.execute(
        select(_tree_nodes.c.hash)
        .where(
            _tree_nodes.c.level == level,
            _tree_nodes.c.index >= start,
            _tree_nodes.c.index < end,
        )
        .order_by(_tree_nodes.c.index)
    )
    return [bytes(digest) for (digest,) in rows]


def insert_tree_nodes(session: Session, nodes: Sequence[tuple[int, int, bytes]]) -> None:
    """Store (level, index, hash) rows of perfect subtrees."""
    if nodes:
        session.execute(
            insert(_tree_nodes), [{"level": lv, "index": i, "hash": h} for lv, i, h in nodes]
        )


def set_leaf_hashes(session: Session, hashes: Sequence[tuple[int, bytes]]) -> None:
    """Fill in the leaf hash of changes given as (sequence, hash) (a backfill)."""
    if hashes:
        session.execute(
            update(_changes)
            .where(_changes.c.sequence == bindparam("s"))
            .values(leaf_hash=bindparam("h")),
            [{"s": sequence, "h": digest} for sequence, digest in hashes],
        )


def insert_checkpoint(session: Session, tree_size: int, note: str, signed_at_us: int) -> None:
    session.execute(
        insert(_checkpoints).values(tree_size=tree_size, note=note, signed_at_us=signed_at_us)
    )


def latest_checkpoint(connection: Executor) -> tuple[int, str] | None:
    """(tree size, signed note) of the largest stored checkpoint, or None."""
    row = connection.execute(
        select(_checkpoints.c.tree_size, _checkpoints.c.note)
        .order_by(_checkpoints.c.tree_size.desc())
        .limit(1)
    ).first()
    return None if row is None else (int(row.tree_size), row.note)


def stored_checkpoints(connection: Executor) -> list[tuple[int, str]]:
    """Every stored (tree size, signed note), by size."""
    rows = connection.execute(
        select(_checkpoints.c.tree_size, _checkpoints.c.note).order_by(_checkpoints.c.tree_size)
    )
    return [(int(row.tree_size), row.note) for row in rows]


def changes_with_hashes(
    connection: Executor, after: int, limit: int
) -> list[tuple[Change, bytes | None]]:
    """Up to ``limit`` changes after ``after`` with their stored leaf hashes, in order."""
    rows = connection.execute(
        select(_changes)
        .where(_changes.c.sequence > after)
        .order_by(_changes.c.sequence)
        .limit(limit)
    )
    return [
        (change_from_row(row), None if row.leaf_hash is None else bytes(row.leaf_hash))
        for row in rows
    ]

"""Checks that tie changes to signed checkpoints: the operator's and the auditor's side.

- ``change_leaf_hash`` turns the change at log position ``index`` into its
  leaf hash, refusing a change whose sequence is not ``index + 1`` (a change
  dropped, replayed or reordered in flight). It takes a ``Change`` (encoded
  in its own ``leaf_version``) or a ``Leaf`` (what a receiver without the
  clear subscriber numbers holds), so a log that mixes version 1 and
  version 2 leaves verifies leaf by leaf.
- ``check_leaf_hash`` compares a leaf with the hash the log recorded for it
  (``ceir audit verify`` on a database: a row changed behind the server's back).
- ``replay`` appends leaf hashes to a frontier and checks its root at the size
  of every checkpoint: the changes applied hash to what the custodian signed.
- ``check_same_view`` compares two checkpoints of one log (gossip between
  nodes): equal sizes must have equal roots, or the log is forked.
"""

from __future__ import annotations

from collections.abc import Iterable

from ceir.domain.model import Change

from .checkpoint import Checkpoint
from .errors import BadLeaf, InconsistentTree
from .leaf import Leaf, encode_change, encode_leaf
from .merkle import Frontier, leaf_hash, short

__all__ = ["change_leaf_hash", "check_leaf_hash", "check_same_view", "replay"]


def change_leaf_hash(change: Change | Leaf, index: int) -> bytes:
    """The leaf hash of ``change`` as leaf ``index`` (from 0) of the log.

    Raises ``BadLeaf`` when the change's sequence is not ``index + 1``, and
    ``LeafEncodingError`` when it cannot be encoded (an unknown leaf version,
    a version 2 change with an IMSI but no salt).
    """
    if change.sequence != index + 1:
        raise BadLeaf(
            f"leaf {index} must be change {index + 1}, got change {change.sequence}: "
            "a change was dropped, replayed or reordered",
            index,
        )
    encoded = encode_leaf(change) if isinstance(change, Leaf) else encode_change(change)
    return leaf_hash(encoded)


def check_leaf_hash(index: int, leaf: bytes, recorded: bytes) -> None:
    """Raise ``BadLeaf`` if leaf ``index``'s bytes do not hash to the recorded hash."""
    actual = leaf_hash(leaf)
    if actual != recorded:
        raise BadLeaf(
            f"leaf {index} does not hash to {short(recorded)}, the hash the log recorded "
            f"for it (it hashes to {short(actual)}): the change was altered",
            index,
        )


def replay(
    leaf_hashes: Iterable[bytes],
    checkpoints: Iterable[Checkpoint],
    start: Frontier | None = None,
) -> Frontier:
    """Append leaf hashes to ``start`` (or an empty frontier), checking every checkpoint.

    Each checkpoint's root must equal the root of the leaves up to its size;
    every checkpoint must be reached. Raises ``InconsistentTree`` naming the
    checkpoint and the leaves among which the first difference lies (after
    the last checkpoint that matched). Returns the frontier after the last leaf.
    """
    frontier = start.copy() if start is not None else Frontier()
    pending = sorted(checkpoints, key=lambda checkpoint: checkpoint.size)
    if pending and pending[0].size < frontier.size:
        raise ValueError(
            f"checkpoint of size {pending[0].size} is before the replay's start at {frontier.size}"
        )
    verified = frontier.size
    position = 0
    iterator = iter(leaf_hashes)
    while position < len(pending):
        checkpoint = pending[position]
        while frontier.size < checkpoint.size:
            digest = next(iterator, None)
            if digest is None:
                raise InconsistentTree(
                    f"the log ends at {frontier.size} leaves, but a checkpoint signed "
                    f"size {checkpoint.size}: leaves were removed",
                    frontier.size,
                    checkpoint.size,
                )
            frontier.append(digest)
        root = frontier.root()
        if root != checkpoint.root_hash:
            raise InconsistentTree(
                f"the first {checkpoint.size} leaves hash to {short(root)}, but the checkpoint "
                f"of size {checkpoint.size} signed {short(checkpoint.root_hash)}: a leaf from "
                f"{verified} to {checkpoint.size - 1} was changed",
                verified,
                checkpoint.size,
            )
        verified = checkpoint.size
        position += 1
    frontier.extend(iterator)
    return frontier


def check_same_view(first: Checkpoint, second: Checkpoint) -> None:
    """Raise ``InconsistentTree`` if two checkpoints of one log and size differ in root.

    Checkpoints of different sizes need a consistency proof to compare
    (``merkle.verify_consistency``).
    """
    if first.origin != second.origin:
        raise ValueError(f"checkpoints of two logs: {first.origin!r} and {second.origin!r}")
    if first.size == second.size and first.root_hash != second.root_hash:
        raise InconsistentTree(
            f"two checkpoints of size {first.size} with roots {short(first.root_hash)} "
            f"and {short(second.root_hash)}: the log shows a split view (forked history)",
            0,
            first.size,
        )

"""The later changes of the start-up proof, verified and replayed in a second process.

Verifying a change costs Python work per change (building it, encoding its
leaf, hashing), so from a few hundred thousand changes on a second core
takes the changes after a split point while the server's process does the
ones before it. The split is a multiple of 2^16 (the chunk): the second
process hands back the root of each complete chunk of leaves (it checks the stored tree
nodes inside them itself), the leaf hashes after the last complete chunk,
and the replay of its changes as the rows they leave and the keys they
remove, which lie over the replay of the earlier changes exactly as
applying them one by one would.

It reads the same snapshot as the server's process: on PostgreSQL the
exported snapshot of that transaction; on SQLite its own read of changes
up to the head the server's process read (change rows are only ever
appended).
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from ceir.audit import Frontier, node_hash
from ceir.domain.model import ChangeKind, Policy
from ceir.storage.database import Database

from .list_audit import ReplayedLists, without_cycle_collection

if TYPE_CHECKING:
    from .startup_proof import _LogCheck

__all__ = ["RangeVerifier"]


@dataclass
class RangeResult:
    """What the second process found about changes ``after + 1`` to ``upto``."""

    problem: tuple[int | None, str] | None = None  # the first failure, if any
    chunk_roots: list[bytes] = field(default_factory=list)
    tail: list[bytes] = field(default_factory=list)  # leaf hashes after the last chunk
    checkpoint_leaves: list[bytes] | None = None  # of the checkpoint's chunk, up to it
    unhashed_from: int | None = None
    first_hashed: int | None = None
    rows: dict[str, list[tuple[Any, Any]]] = field(default_factory=dict)
    removed: dict[str, list[Any]] = field(default_factory=dict)
    policy: Policy | None = None


class RangeVerifier:
    """Starts the second process on entry; ``merge_into`` lays its result over
    the first range's; on exit (or a refusal) the process is ended."""

    def __init__(
        self, connection: Connection, check: _LogCheck, split: int, head: int, level: int
    ) -> None:
        self.split, self.head, self.level = split, head, level
        snapshot = None
        if connection.dialect.name == "postgresql":
            snapshot = connection.exec_driver_sql("SELECT pg_export_snapshot()").scalar()
        # The nodes inside the chunks the second process checks: it checks them.
        nodes = {
            node: check.stored_nodes.pop(node)
            for node in list(check.stored_nodes)
            if node[0] <= self.level and node[1] << node[0] >= split
        }
        url = connection.engine.url.render_as_string(hide_password=False)
        arguments = (url, snapshot, split, head, level, nodes, check.checkpoint_size)
        # A process of its own, not multiprocessing's spawn, which would import
        # the server's main script again in the child.
        self.process = subprocess.Popen(
            [sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self.process.stdin is not None
        with self.process.stdin as sent:
            sent.write(pickle.dumps(arguments, pickle.HIGHEST_PROTOCOL))

    def __enter__(self) -> RangeVerifier:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.process.poll() is None:
            self.process.kill()  # the first range failed: its refusal comes first
        assert self.process.stdout is not None
        self.process.stdout.close()
        self.process.wait()

    def _result(self) -> RangeResult:
        assert self.process.stdout is not None
        data = self.process.stdout.read()
        if self.process.wait() != 0:
            raise RuntimeError(
                f"the second process of the start-up proof failed (exit code "
                f"{self.process.returncode}; its error is on standard error)"
            )
        result = pickle.loads(data)  # from the child this process started
        assert isinstance(result, RangeResult)
        return result

    def merge_into(self, check: _LogCheck, replayed: ReplayedLists) -> None:
        """Lay the second range over the first (raises its first failure)."""
        from .startup_proof import LogNotVerified

        result = self._result()
        if check.unhashed_from is not None and result.first_hashed is not None:
            raise LogNotVerified(
                check.unhashed_from,
                f"change {check.unhashed_from} has no stored leaf hash but change "
                f"{result.first_hashed} after it has one: a leaf hash was erased",
            )
        if result.problem is not None:
            raise LogNotVerified(*result.problem)
        chunk = 1 << self.level
        start = self.split
        for root in result.chunk_roots:
            self._checkpoint_root(check, result, start, start + chunk)
            _append_subtree(check, self.level, root)
            start += chunk
        self._checkpoint_root(check, result, start, self.head)
        # The tail's nodes (levels below the chunks') were checked by the second process.
        tail = Frontier(check.frontier.size, check.frontier.hashes)
        tail.extend(result.tail)
        check.frontier = Frontier(tail.size, tail.hashes, check.node)
        check.size = tail.size
        if check.unhashed_from is None:
            check.unhashed_from = result.unhashed_from
        for name, rows in replayed.rows.items():
            for key in result.removed.get(name, ()):
                rows.pop(key, None)
            rows.update(result.rows.get(name, ()))
        if result.policy is not None:
            replayed.policy = result.policy

    def _checkpoint_root(self, check: _LogCheck, result: RangeResult, start: int, end: int) -> None:
        size = check.checkpoint_size
        if size is not None and start < size <= end and result.checkpoint_leaves is not None:
            frontier = check.frontier.copy()
            frontier.extend(result.checkpoint_leaves)
            check.checkpoint_root = frontier.root()


def _append_subtree(check: _LogCheck, level: int, root: bytes) -> None:
    """Append the root of 2^level leaves (the frontier's size is a multiple of it)."""
    size, hashes = check.frontier.size, list(check.frontier.hashes)
    carry, digest, height = size >> level, root, level
    while carry & 1:  # as Frontier.append does for a leaf, from this level up
        digest = node_hash(hashes.pop(), digest)
        carry >>= 1
        height += 1
        check.node(height, size >> height, digest)
    hashes.append(digest)
    check.frontier = Frontier(size + (1 << level), hashes, check.node)
    check.size = check.frontier.size


def verify_range(*arguments: Any) -> RangeResult:
    """Verify and replay changes ``after + 1`` to ``upto`` (in the second
    process; arguments as ``_verify_range`` takes them)."""
    with without_cycle_collection():
        return _verify_range(*arguments)


def _verify_range(
    url: str,
    snapshot: str | None,
    after: int,
    upto: int,
    chunk_level: int,
    nodes: dict[tuple[int, int], bytes],
    checkpoint_size: int | None,
) -> RangeResult:
    from .startup_proof import LogNotVerified, _change_batches, _LogCheck, _tracked

    result = RangeResult()
    check = _LogCheck(nodes, checkpoint_size, first=after, chunk_level=chunk_level)
    replayed = _tracked(ReplayedLists())
    policy_changed = False
    db = Database(url)
    try:
        with db.read_snapshot() as connection:
            if snapshot is not None:  # the server process's transaction's snapshot
                connection.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            for batch in _change_batches(connection, after, upto):
                for change, stored in batch:
                    check.leaf(change, stored)
                    replayed.apply(change)
                    if stored is not None and result.first_hashed is None:
                        result.first_hashed = change.sequence
                    policy_changed |= change.kind is ChangeKind.POLICY_CHANGED
            check.finish()
    except LogNotVerified as error:
        result.problem = (error.sequence, error.problem)
        return result
    finally:
        db.dispose()
    result.chunk_roots = check.chunk_roots
    result.tail = check.chunk_leaves if check.size % (1 << chunk_level) else []
    result.checkpoint_leaves = check.checkpoint_leaves
    result.unhashed_from = check.unhashed_from
    result.rows = {name: list(rows.items()) for name, rows in replayed.rows.items()}
    result.removed = {
        name: list(getattr(rows, "removed", ())) for name, rows in replayed.rows.items()
    }
    result.policy = replayed.policy if policy_changed else None
    return result


def main() -> None:
    """The second process: arguments pickled on stdin, the result pickled on stdout."""
    # Through the package, so the result's class is the one the server unpickles.
    from ceir.service import startup_range

    arguments = pickle.load(sys.stdin.buffer)
    result = startup_range.verify_range(*arguments)
    pickle.dump(result, sys.stdout.buffer, pickle.HIGHEST_PROTOCOL)


if __name__ == "__main__":
    main()

"""The whole log of a register, read through its public feed, and its root.

The verdict counts the acknowledged writes in the final custodian's log;
the split-view scenario needs the tree at the final size to forge a
checkpoint one change larger. Both read ``WatchChanges`` from the start as
a regulator (Kominfo sees every subscriber) and hash leaves with the nodes'
own encoding (``operators_sim.leaf``).
"""

from __future__ import annotations

import time

import grpc

from ceir.audit.merkle import Frontier
from ceir.v1 import list_sync_pb2 as sync_pb
from ceir.v1 import list_sync_pb2_grpc as sync_grpc
from ceir.v1 import types_pb2 as pb

from ..leaf import leaf_hash

__all__ = ["read_log", "tree_root"]


def read_log(channel: grpc.Channel, timeout: float = 120.0) -> list[pb.ListChange]:
    """Every change of the register's log, from the first to its head when read."""
    stub = sync_grpc.ListSyncServiceStub(channel)
    changes: list[pb.ListChange] = []
    deadline = time.monotonic() + timeout
    while True:  # a stream cut (the register restarting) resumes where it stopped
        after = changes[-1].sequence if changes else 0
        stream = stub.WatchChanges(
            sync_pb.WatchChangesRequest(after_sequence=after),
            timeout=max(deadline - time.monotonic(), 1.0),
        )
        try:
            for message in stream:
                changes.extend(message.changes)
                if changes and changes[-1].sequence >= message.head_sequence:
                    return changes
                if not changes and message.head_sequence == 0:
                    return changes
        except grpc.RpcError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)
        finally:
            stream.cancel()  # type: ignore[no-untyped-call]


def tree_root(changes: list[pb.ListChange], size: int) -> tuple[Frontier, bytes]:
    """The frontier and the root of the tree of the first ``size`` changes."""
    frontier = Frontier()
    for change in changes[:size]:
        frontier.append(leaf_hash(change))
    return frontier, frontier.root()

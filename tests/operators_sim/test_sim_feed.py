"""Following the change feed: strict order, and what a node does with a
stream that has a gap, a duplicate or an out-of-order change."""

from __future__ import annotations

import time

import pytest

from ceir.v1 import list_sync_pb2 as sync_pb
from ceir.v1 import types_pb2 as pb
from operators_sim.fake import FakeLink, change
from operators_sim.follower import Follower, bootstrap, read_snapshot
from operators_sim.replica import Replica, SequenceError

A, B, C = 35209900000011, 35209900000029, 35209900000037
WL = pb.CHANGE_KIND_WHITELIST_ADDED
WL_REMOVED = pb.CHANGE_KIND_WHITELIST_REMOVED
STOLEN = pb.CHANGE_KIND_BLACKLIST_BLOCKED


def message(*changes: pb.ListChange, head: int = 0) -> sync_pb.WatchChangesResponse:
    top = max((c.sequence for c in changes), default=0)
    return sync_pb.WatchChangesResponse(changes=changes, head_sequence=head or top)


def snapshot_at(sequence: int, *keys: int) -> list[sync_pb.GetSnapshotResponse]:
    return [
        sync_pb.GetSnapshotResponse(
            sequence=sequence,
            list=sync_pb.SNAPSHOT_LIST_WHITELIST,
            imei_keys=list(keys),
            valid_until_unix=[0] * len(keys),
            last=True,
        )
    ]


def wait_until(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def test_replica_refuses_a_gap_and_keeps_what_came_before() -> None:
    replica = Replica()
    replica.apply([change(1, WL, A), change(2, WL, B)])
    with pytest.raises(SequenceError, match="expected change 4, got 5: a gap"):
        replica.apply([change(3, WL, C), change(5, WL_REMOVED, A)])
    assert replica.sequence == 3
    with pytest.raises(SequenceError, match="duplicate or out-of-order"):
        replica.apply([change(3, WL_REMOVED, C)])
    assert replica.sequence == 3
    assert replica.whitelist.get(C) == 0


def test_a_change_after_a_gap_is_not_applied() -> None:
    replica = Replica()
    replica.apply([change(1, WL, A)])
    with pytest.raises(SequenceError):
        replica.apply([change(2, WL, B), change(4, STOLEN, A, blacklist_cause=1)])
    assert replica.sequence == 2
    assert replica.blacklist.get(A) is None  # the change after the gap was refused


def test_node_given_a_gap_resumes_from_its_last_applied_sequence() -> None:
    log = [change(1, WL, A), change(2, WL, B), change(3, WL, C), change(4, WL_REMOVED, A)]
    crafted = [message(log[0], log[1]), message(log[3], head=4)]  # 3 is missing
    link = FakeLink(feeds=[crafted], log=log)
    replica = Replica()
    follower = Follower(link, replica)
    follower.start()
    try:
        wait_until(lambda: replica.sequence == 4)
    finally:
        follower.stop()
    assert follower.stats.refused == 1
    assert link.watch_calls[:2] == [0, 2]  # resumed after the last applied change
    assert replica.whitelist.get(A) is None and replica.whitelist.get(C) == 0
    assert link.snapshot_calls == 1


def test_node_given_out_of_order_changes_refuses_them_and_resumes() -> None:
    log = [change(1, WL, A), change(2, WL, B), change(3, WL_REMOVED, A)]
    crafted = [message(log[0], log[2], log[1], head=3)]
    link = FakeLink(feeds=[crafted], log=log)
    replica = Replica()
    follower = Follower(link, replica)
    follower.start()
    try:
        wait_until(lambda: replica.sequence == 3)
    finally:
        follower.stop()
    assert follower.stats.refused == 1
    assert link.watch_calls[1] == 1
    assert replica.whitelist.get(A) is None and replica.whitelist.get(B) == 0


def test_node_refused_twice_at_the_same_sequence_takes_a_fresh_snapshot() -> None:
    log = [change(1, WL, A), change(2, WL, B), change(3, WL, C)]
    broken = [message(log[2], head=3)]  # 2 is missing
    link = FakeLink(snapshot=snapshot_at(1, A), feeds=[broken, broken], log=log)
    replica = Replica()
    follower = Follower(link, replica)
    follower.start()
    try:
        wait_until(lambda: replica.sequence == 3)
    finally:
        follower.stop()
    assert follower.stats.refused == 2
    assert link.snapshot_calls == 2  # the bootstrap, then the resync
    assert follower.stats.snapshots == 2
    assert all(replica.whitelist.get(k) is not None for k in (A, B, C))


def test_node_behind_a_register_restored_to_an_older_sequence_resyncs() -> None:
    link = FakeLink(
        snapshot=snapshot_at(5, A),
        feeds=[[message(head=3)]],  # the register's head went back to 3
        log=[change(6, WL, B)],
    )
    replica = Replica()
    follower = Follower(link, replica)
    follower.start()
    try:
        wait_until(lambda: follower.stats.snapshots == 2)
    finally:
        follower.stop()
    assert replica.sequence >= 5


def test_snapshot_chunks_at_different_sequences_are_refused() -> None:
    chunks = snapshot_at(4, A)
    chunks.insert(
        0,
        sync_pb.GetSnapshotResponse(
            sequence=3, list=sync_pb.SNAPSHOT_LIST_WHITELIST, imei_keys=[B], valid_until_unix=[0]
        ),
    )
    with pytest.raises(Exception, match="sequence 4, expected 3"):
        read_snapshot(iter(chunks))


def test_a_truncated_snapshot_is_refused() -> None:
    chunk = sync_pb.GetSnapshotResponse(
        sequence=3, list=sync_pb.SNAPSHOT_LIST_WHITELIST, imei_keys=[A], valid_until_unix=[0]
    )
    with pytest.raises(Exception, match="before its last chunk"):
        read_snapshot(iter([chunk]))


def test_policy_changes_follow_the_feed() -> None:
    replica = Replica()
    enforce = pb.Policy(
        phase=pb.PHASE_ENFORCE, grace_days=7, clone_threshold=2, clone_window_seconds=600
    )
    replica.apply([change(1, pb.CHANGE_KIND_POLICY_CHANGED, policy=enforce)])
    assert replica.policy.phase == pb.PHASE_ENFORCE
    assert replica.policy.clone_window_seconds == 600


def test_bootstrap_takes_the_policy_the_snapshot_carries() -> None:
    at_snapshot = pb.Policy(
        phase=pb.PHASE_ENFORCE, grace_days=5, clone_threshold=2, clone_window_seconds=60
    )
    chunks = snapshot_at(3, A)
    chunks[0].policy.CopyFrom(at_snapshot)
    later = pb.Policy(
        phase=pb.PHASE_NOTIFY, grace_days=30, clone_threshold=3, clone_window_seconds=86_400
    )
    link = FakeLink(snapshot=chunks, policy=later)
    replica = Replica()
    bootstrap(link, replica)
    assert replica.policy.phase == pb.PHASE_ENFORCE and replica.policy.grace_days == 5


def test_bootstrap_without_a_snapshot_policy_reads_the_policy_around_it() -> None:
    link = FakeLink(snapshot=snapshot_at(3, A))
    replica = Replica()
    bootstrap(link, replica)
    assert replica.sequence == 3 and replica.policy.grace_days == 30


def test_a_custody_change_moves_the_replica_s_sequence_and_no_list() -> None:
    replica = Replica()
    replica.apply([change(1, WL, A)])
    custody = pb.ListChange(
        sequence=2,
        kind=pb.CHANGE_KIND_CUSTODY_CHANGED,
        imei_key="00000000000000",
        leaf_version=2,
        actor="telkomsel",
        reason="FROZEN 1",
    )
    replica.apply([custody, change(3, WL, B)])
    assert replica.sequence == 3
    assert replica.whitelist.get(A) == 0 and replica.whitelist.get(B) == 0
    assert replica.whitelist.get(0) is None

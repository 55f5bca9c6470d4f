"""Snapshots and the change feed: consistent, ordered, gap-free, resumable."""

from __future__ import annotations

import threading

import grpc

from ceir.v1 import list_sync_pb2, registry_pb2, types_pb2

from .helpers import TELKOMSEL_IMSI, Client, imei


def watch(client: Client, after: int, count: int) -> list[types_pb2.ListChange]:
    """The next ``count`` changes after a sequence, then hang up."""
    stream = client.sync.WatchChanges(
        list_sync_pb2.WatchChangesRequest(after_sequence=after),
        metadata=client.metadata,
        timeout=30,
    )
    changes: list[types_pb2.ListChange] = []
    for response in stream:
        changes.extend(response.changes)
        if len(changes) >= count:
            stream.cancel()  # type: ignore[no-untyped-call]
            break
    return changes[:count]


def test_snapshot_holds_every_list_at_one_sequence(clients: dict[str, Client]) -> None:
    kemenperin, op = clients["kemenperin"], clients["telkomsel"]
    kemenperin.register(imei(1), imei(2))
    op.call(
        op.registry.ReportStolen,
        registry_pb2.ReportStolenRequest(
            imeis=[imei(3)], police_report="P", subscriber_imsi=TELKOMSEL_IMSI
        ),
    )
    op.call(
        op.registry.AddException,
        registry_pb2.AddExceptionRequest(imei=imei(4), imsi=TELKOMSEL_IMSI),
    )
    op.check_imei(imei(5), msisdn="6281100000009")
    chunks = list(
        op.sync.GetSnapshot(
            list_sync_pb2.GetSnapshotRequest(chunk_size=1), metadata=op.metadata, timeout=30
        )
    )
    assert {c.sequence for c in chunks} == {5}
    assert [c.last for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert chunks[0].total_entries == 5 == len(chunks)
    by_list: dict[int, list[list_sync_pb2.GetSnapshotResponse]] = {}
    for chunk in chunks:
        by_list.setdefault(chunk.list, []).append(chunk)
    whitelist = [k for c in by_list[list_sync_pb2.SNAPSHOT_LIST_WHITELIST] for k in c.imei_keys]
    assert whitelist == [int(imei(1)[:14]), int(imei(2)[:14])]
    (blacklist,) = by_list[list_sync_pb2.SNAPSHOT_LIST_BLACKLIST]
    assert list(blacklist.blacklist_causes) == [types_pb2.BLACKLIST_CAUSE_STOLEN]
    (notification,) = by_list[list_sync_pb2.SNAPSHOT_LIST_NOTIFICATION]
    assert (list(notification.imsis), list(notification.msisdns)) == (
        [TELKOMSEL_IMSI],
        ["6281100000009"],
    )
    (exception,) = by_list[list_sync_pb2.SNAPSHOT_LIST_EXCEPTION]
    assert list(exception.imei_keys) == [int(imei(4)[:14])]


def test_snapshot_carries_the_policy_at_its_sequence(clients: dict[str, Client]) -> None:
    from google.protobuf.field_mask_pb2 import FieldMask

    from ceir.v1 import policy_pb2

    kominfo, op = clients["kominfo"], clients["telkomsel"]
    kominfo.call(
        kominfo.policy.UpdatePolicy,
        policy_pb2.UpdatePolicyRequest(
            policy=types_pb2.Policy(phase=types_pb2.PHASE_ENFORCE, grace_days=7),
            update_mask=FieldMask(paths=["phase", "grace_days"]),
        ),
    )
    chunks = list(
        op.sync.GetSnapshot(list_sync_pb2.GetSnapshotRequest(), metadata=op.metadata, timeout=30)
    )
    assert chunks[0].sequence == 1
    assert (chunks[0].policy.phase, chunks[0].policy.grace_days) == (types_pb2.PHASE_ENFORCE, 7)
    (change,) = watch(op, 0, 1)
    assert change.kind == types_pb2.CHANGE_KIND_POLICY_CHANGED
    assert change.policy.grace_days == 7


def test_an_empty_register_still_answers_its_sequence(clients: dict[str, Client]) -> None:
    op = clients["telkomsel"]
    chunks = list(
        op.sync.GetSnapshot(list_sync_pb2.GetSnapshotRequest(), metadata=op.metadata, timeout=30)
    )
    assert [(c.sequence, c.last, len(c.imei_keys)) for c in chunks] == [(0, True, 0)]


def test_feed_is_ordered_gap_free_and_resumable(clients: dict[str, Client]) -> None:
    kemenperin, op = clients["kemenperin"], clients["telkomsel"]
    for n in range(10):
        kemenperin.register(imei(10 + n))
    first = watch(op, 0, 4)
    assert [c.sequence for c in first] == [1, 2, 3, 4]
    rest = watch(op, first[-1].sequence, 6)
    assert [c.sequence for c in rest] == list(range(5, 11))
    assert all(c.kind == types_pb2.CHANGE_KIND_WHITELIST_ADDED for c in first + rest)
    assert rest[-1].imei_key == imei(19)[:14]


def test_feed_goes_live_after_the_backlog(clients: dict[str, Client]) -> None:
    kemenperin, op = clients["kemenperin"], clients["telkomsel"]
    kemenperin.register(imei(30))
    received: list[types_pb2.ListChange] = []
    listener = threading.Thread(target=lambda: received.extend(watch(op, 0, 3)))
    listener.start()
    kemenperin.register(imei(31))
    op.call(
        op.registry.ReportStolen,
        registry_pb2.ReportStolenRequest(
            imeis=[imei(31)], police_report="P", subscriber_imsi=TELKOMSEL_IMSI
        ),
    )
    listener.join(timeout=30)
    assert not listener.is_alive()
    assert [(c.sequence, types_pb2.ChangeKind.Name(c.kind)) for c in received] == [
        (1, "CHANGE_KIND_WHITELIST_ADDED"),
        (2, "CHANGE_KIND_WHITELIST_ADDED"),
        (3, "CHANGE_KIND_BLACKLIST_BLOCKED"),
    ]
    assert received[2].blacklist_cause == types_pb2.BLACKLIST_CAUSE_STOLEN


def test_customs_may_not_receive_the_lists(clients: dict[str, Client]) -> None:
    customs = clients["customs"]
    try:
        list(
            customs.sync.GetSnapshot(
                list_sync_pb2.GetSnapshotRequest(), metadata=customs.metadata, timeout=30
            )
        )
    except grpc.RpcError as error:
        assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    else:
        raise AssertionError("customs received a snapshot")

"""A verifying node against crafted feeds: every attack of issue 4 on the
stream is refused, the node keeps its last verified state, and the alert is
counted by reason. The custodian's key is made here; the checkpoints are
signed with ``ceir.audit``'s signer, as the server signs them."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from ceir.audit.keys import generate_signing_key
from ceir.audit.note import Signer
from ceir.v1 import list_sync_pb2 as sync_pb
from ceir.v1 import types_pb2 as pb
from operators_sim.fake import FakeLink, SignedLog, change
from operators_sim.node import OPERATORS, SyncNode
from operators_sim.verification import DEFAULT_ORIGIN, SPLIT_VIEW, Gossip, Trust

WL = pb.CHANGE_KIND_WHITELIST_ADDED
STOLEN = pb.CHANGE_KIND_BLACKLIST_BLOCKED
BASE_KEY = 35209900000000


def signer() -> Signer:
    return Signer(DEFAULT_ORIGIN, generate_signing_key())


def signed_log(custodian: Signer, size: int, salt: int = 0) -> SignedLog:
    log = SignedLog(custodian)
    for sequence in range(1, size + 1):
        kind = STOLEN if sequence % 5 == 0 else WL
        log.append(change(sequence, kind, BASE_KEY + salt + sequence, device_id=f"d{sequence}"))
    return log


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def verifying_node(
    link: FakeLink, custodian: Signer, gossip: Gossip | None = None, index: int = 0
) -> SyncNode:
    trust = Trust((custodian.verifier,))
    return SyncNode(OPERATORS[index], link, trust=trust, gossip=gossip)


def run(node: SyncNode, until: Callable[[], bool]) -> None:
    node.start()
    try:
        wait_until(until)
    finally:
        node.stop()


def test_an_honest_feed_is_verified_and_applied() -> None:
    custodian = signer()
    log = signed_log(custodian, 30)
    link = FakeLink(feeds=[log.messages(10)], signed=log)
    node = verifying_node(link, custodian)
    run(node, lambda: node.replica.sequence == 30)
    assert node.verifier is not None
    stats = node.verifier.stats
    assert stats.alerts == {}
    assert stats.checkpoints_verified == 3
    assert stats.consistency_proofs == 2  # from 10 to 20, from 20 to 30
    assert link.proofs_asked == [(10, 20), (20, 30)]
    # The fake's snapshot carries no signed lists statement: replayed from 0.
    assert node.follower.stats.snapshots == 0
    assert node.replica.blacklist.get(BASE_KEY + 5) is not None


def _tampered(
    log: SignedLog, edit: Callable[[list[pb.ListChange]], None]
) -> list[sync_pb.WatchChangesResponse]:
    """The first message (changes 1-5, honest) and changes 6-10 edited in
    flight, under the honest checkpoint of size 10."""
    second = list(log.changes[5:10])
    edit(second)
    return [
        log.message(1, 5),
        sync_pb.WatchChangesResponse(
            changes=second, head_sequence=log.size, checkpoint=log.checkpoint(10)
        ),
    ]


def _drop(changes: list[pb.ListChange]) -> None:
    del changes[2]


def _replay(changes: list[pb.ListChange]) -> None:
    changes.insert(1, changes[0])


def _reorder(changes: list[pb.ListChange]) -> None:
    changes[1], changes[2] = changes[2], changes[1]


def _alter(changes: list[pb.ListChange]) -> None:
    altered = pb.ListChange()
    altered.CopyFrom(changes[2])
    altered.device_id = "someone else's"
    changes[2] = altered


def _alter_keeping_order_of_sequences(changes: list[pb.ListChange]) -> None:
    # a reordering that renumbers the sequences: only the root catches it
    a, b = pb.ListChange(), pb.ListChange()
    a.CopyFrom(changes[2])
    b.CopyFrom(changes[1])
    a.sequence, b.sequence = changes[1].sequence, changes[2].sequence
    changes[1], changes[2] = a, b


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (_drop, "BAD_LEAF"),
        (_replay, "BAD_LEAF"),
        (_reorder, "BAD_LEAF"),
        (_alter, "INCONSISTENT_TREE"),
        (_alter_keeping_order_of_sequences, "INCONSISTENT_TREE"),
    ],
)
def test_a_stream_tampered_in_flight_is_refused(
    edit: Callable[[list[pb.ListChange]], None], reason: str
) -> None:
    custodian = signer()
    log = signed_log(custodian, 10)
    link = FakeLink(feeds=[_tampered(log, edit)], signed=log)
    node = verifying_node(link, custodian)
    assert node.verifier is not None
    states: list[int] = []
    original = node.replica.apply

    def apply(changes: object) -> int:
        states.append(node.replica.sequence)
        return original(changes)  # type: ignore[arg-type]

    node.replica.apply = apply  # type: ignore[method-assign]
    # refused, then resumed from the last verified sequence (5) on the honest feed
    run(node, lambda: node.replica.sequence == 10)
    stats = node.verifier.stats
    assert stats.alerts == {reason: 1}
    assert node.follower.stats.refused == 1
    assert link.watch_calls[:2] == [0, 5]
    assert states == [0, 5]  # nothing of the tampered message reached the replica
    assert node.replica.whitelist.get(BASE_KEY + 8) is not None


def test_the_replica_keeps_its_last_verified_state_while_refusing() -> None:
    custodian = signer()
    log = signed_log(custodian, 10)
    tampered = _tampered(log, _alter)
    # the CEIR keeps sending the altered stream: the node never moves past 5
    link = FakeLink(feeds=[tampered, tampered[1:], tampered[1:]], signed=log)
    node = verifying_node(link, custodian)
    assert node.verifier is not None
    run(node, lambda: len(link.watch_calls) >= 3)
    assert node.verifier.stats.alerts["INCONSISTENT_TREE"] >= 2
    assert node.verifier.verified_sequence == 5
    assert node.replica.whitelist.get(BASE_KEY + 8) is None
    assert link.snapshot_calls <= 1  # asked once at start (no statement), never to recover


def test_a_checkpoint_signed_by_an_unknown_key_is_refused() -> None:
    custodian, impostor = signer(), signer()
    log = signed_log(custodian, 10)
    forged = SignedLog(impostor)
    for c in log.changes:
        forged.append(c)
    link = FakeLink(feeds=[[log.message(1, 5), forged.message(6, 10)]], signed=log)
    node = verifying_node(link, custodian)
    assert node.verifier is not None
    run(node, lambda: node.replica.sequence == 10)
    assert node.verifier.stats.alerts == {"UNKNOWN_KEY": 1}
    assert impostor.verifier.vkey.split("+")[1] in node.verifier.stats.last_alert


def test_a_checkpoint_that_contradicts_the_last_verified_one_is_refused() -> None:
    # the custodian's own key signs a rewritten history: the consistency
    # proof from the verified size 5 fails against the rewritten root
    custodian = signer()
    log = signed_log(custodian, 10)
    rewritten = signed_log(custodian, 10, salt=1000)
    link = FakeLink(feeds=[[log.message(1, 5), rewritten.message(6, 10)]], signed=log)
    node = verifying_node(link, custodian)
    assert node.verifier is not None
    run(node, lambda: node.replica.sequence == 10)
    assert sum(node.verifier.stats.alerts.values()) == 1
    assert set(node.verifier.stats.alerts) <= {"INCONSISTENT_TREE", "BAD_PROOF"}


def test_a_forked_history_is_a_split_view_in_gossip() -> None:
    custodian = signer()
    honest = signed_log(custodian, 12)
    fork = signed_log(custodian, 12, salt=500)  # same size, other root, validly signed
    gossip = Gossip()
    a = verifying_node(FakeLink(signed=honest), custodian, gossip, index=0)
    b = verifying_node(FakeLink(signed=fork), custodian, gossip, index=1)
    for node in (a, b):
        run(node, lambda node=node: node.replica.sequence == 12)  # type: ignore[misc]
    assert a.verifier is not None and b.verifier is not None
    assert a.verifier.stats.alerts == {}  # each view verifies on its own
    assert b.verifier.stats.alerts == {SPLIT_VIEW: 1}
    assert len(gossip.split_views) == 1
    assert "size 12 with different roots" in gossip.split_views[0]


def test_gossip_checks_consistency_between_sizes() -> None:
    custodian = signer()
    honest = signed_log(custodian, 20)
    gossip = Gossip()
    a = verifying_node(FakeLink(feeds=[[honest.message(1, 8)]], signed=honest), custodian, gossip)
    run(a, lambda: a.replica.sequence == 8)
    b_link = FakeLink(signed=honest)
    b = verifying_node(b_link, custodian, gossip, index=1)
    run(b, lambda: b.replica.sequence == 20)
    assert b.verifier is not None
    assert b.verifier.stats.alerts == {}
    assert (8, 20) in b_link.proofs_asked  # a's size 8 linked to b's 20

    forked = signed_log(custodian, 20, salt=700)
    c = verifying_node(FakeLink(signed=forked), custodian, gossip, index=2)
    run(c, lambda: c.replica.sequence == 20)
    assert c.verifier is not None
    assert c.verifier.stats.alerts == {SPLIT_VIEW: 2}  # against a (size 8) and b (size 20)

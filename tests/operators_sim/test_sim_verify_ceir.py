"""Verifying nodes against a real CEIR (a child process on SQLite that signs
its log with a key of its own data directory): an honest register verifies
with no alert, and a change row altered in the database behind the server's
back is refused by the next node that checks it against the signed root."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import sqlalchemy
from sqlalchemy.pool import NullPool

from ceir.v1 import list_sync_pb2 as sync_pb
from ceir.v1 import types_pb2 as pb
from operators_sim.embedded import EmbeddedCeir
from operators_sim.loader import Admin, load
from operators_sim.node import OPERATORS, SyncNode
from operators_sim.population import generate
from operators_sim.simulation import head_sequence
from operators_sim.transport import GrpcLink
from operators_sim.verification import Gossip, Trust


def verifying_node(
    ceir: EmbeddedCeir,
    tokens: dict[str, str],
    index: int,
    gossip: Gossip | None = None,
    *,
    replay_log: bool = False,
    link: GrpcLink | None = None,
) -> SyncNode:
    operator = OPERATORS[index]
    link = link or GrpcLink(ceir.address, tokens[operator.name])
    trust = dataclasses.replace(Trust.from_file(ceir.public_key_path), replay_log=replay_log)
    return SyncNode(operator, link, trust=trust, gossip=gossip)


def test_nodes_verify_an_honest_ceir_and_gossip_agrees(
    ceir_process: EmbeddedCeir, sim_tokens: dict[str, str]
) -> None:
    admin = Admin(ceir_process.address, sim_tokens)
    load(admin, generate(500, seed=3))
    gossip = Gossip()
    # Two start from a snapshot proven against the log, one replays the log.
    nodes = [
        verifying_node(ceir_process, sim_tokens, i, gossip, replay_log=i == 2) for i in range(3)
    ]
    try:
        for node in nodes:
            node.follower.start()
        for node in nodes:
            assert node.wait_ready(30)
        for grace in (10, 20, 30):  # changes while they follow the feed
            admin.set_policy(phase=pb.PHASE_NOTIFY, grace_days=grace)
        head = head_sequence(ceir_process.address, sim_tokens["kominfo"])
        for node in nodes:
            assert node.follower.wait_for(head, 30)
    finally:
        for node in nodes:
            node.stop()
        admin.close()
    for node in nodes:
        assert node.verifier is not None
        stats = node.verifier.stats
        assert stats.alerts == {}
        assert stats.verified_size == head
        assert stats.checkpoints_verified >= 2
        assert stats.consistency_proofs >= 1
    assert [node.follower.stats.snapshots for node in nodes] == [1, 1, 0]
    assert gossip.split_views == []
    assert {c.size for c in gossip.latest().values()} == {head}
    assert nodes[0].replica.policy.grace_days == 30


def test_a_change_row_altered_in_the_database_is_refused(
    ceir_process: EmbeddedCeir, sim_tokens: dict[str, str]
) -> None:
    admin = Admin(ceir_process.address, sim_tokens)
    try:
        load(admin, generate(300, seed=4))
    finally:
        admin.close()
    head = head_sequence(ceir_process.address, sim_tokens["kominfo"])
    target = head // 2
    engine = sqlalchemy.create_engine(f"sqlite:///{ceir_process.db_path}", poolclass=NullPool)
    try:
        with engine.begin() as connection:
            statement = sqlalchemy.text(
                "UPDATE changes SET device_id = 'rewritten' WHERE sequence = :s"
            )
            assert connection.execute(statement, {"s": target}).rowcount == 1
    finally:
        engine.dispose()

    # A replaying node meets the altered change (a snapshot of the lists
    # would not contain it: the server's own start-up proof catches that).
    node = verifying_node(ceir_process, sim_tokens, 0, replay_log=True)
    assert node.verifier is not None
    node.follower.start()
    try:
        deadline_ok = node.follower.wait_for(head, 3)  # it must never get there
        refused = node.follower.stats.refused
    finally:
        node.stop()
    assert not deadline_ok
    assert refused >= 1
    assert node.verifier.stats.alerts.get("INCONSISTENT_TREE", 0) >= 1
    # the node keeps its last verified state: everything before the altered change's checkpoint
    assert node.verifier.verified_sequence < target
    assert node.replica.sequence == node.verifier.verified_sequence
    assert not node.follower.ready


class DroppingLink(GrpcLink):
    """A link through a proxy that drops the first whitelist entry of every snapshot."""

    def snapshot(self, chunk_size: int = 0) -> Iterator[sync_pb.GetSnapshotResponse]:
        dropped = False
        for chunk in super().snapshot(chunk_size):
            if not dropped and chunk.list == sync_pb.SNAPSHOT_LIST_WHITELIST and chunk.imei_keys:
                del chunk.imei_keys[0]
                del chunk.valid_until_unix[0]
                dropped = True
            yield chunk


def test_a_snapshot_that_is_not_the_signed_lists_is_refused_and_the_log_replayed(
    ceir_process: EmbeddedCeir, sim_tokens: dict[str, str]
) -> None:
    admin = Admin(ceir_process.address, sim_tokens)
    try:
        load(admin, generate(200, seed=5))
    finally:
        admin.close()
    head = head_sequence(ceir_process.address, sim_tokens["kominfo"])
    operator = OPERATORS[1]
    link = DroppingLink(ceir_process.address, sim_tokens[operator.name])
    node = verifying_node(ceir_process, sim_tokens, 1, link=link)
    assert node.verifier is not None
    node.follower.start()
    try:
        assert node.follower.wait_for(head, 30)
    finally:
        node.stop()
    assert node.verifier.stats.alerts.get("SNAPSHOT_MISMATCH") == 1
    assert node.follower.stats.snapshots == 0  # the snapshot was not used
    assert node.verifier.stats.verified_size == head  # every change replayed and verified
    assert len(node.replica.whitelist) == len(
        {int(c) for c in _whitelisted(ceir_process, sim_tokens)}
    )


def _whitelisted(ceir: EmbeddedCeir, tokens: dict[str, str]) -> list[int]:
    """The whitelist's keys as an honest snapshot gives them."""
    link = GrpcLink(ceir.address, tokens["kominfo"])
    try:
        return [
            key
            for chunk in link.snapshot()
            if chunk.list == sync_pb.SNAPSHOT_LIST_WHITELIST
            for key in chunk.imei_keys
        ]
    finally:
        link.close()

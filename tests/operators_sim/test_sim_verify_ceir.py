"""Verifying nodes against a real CEIR (a child process on SQLite that signs
its log with a key of its own data directory): an honest register verifies
with no alert, and a change row altered in the database behind the server's
back is refused by the next node that checks it against the signed root."""

from __future__ import annotations

import sqlalchemy
from sqlalchemy.pool import NullPool

from ceir.v1 import types_pb2 as pb
from operators_sim.embedded import EmbeddedCeir
from operators_sim.loader import Admin, load
from operators_sim.node import OPERATORS, SyncNode
from operators_sim.population import generate
from operators_sim.simulation import head_sequence
from operators_sim.transport import GrpcLink
from operators_sim.verification import Gossip, Trust


def verifying_node(
    ceir: EmbeddedCeir, tokens: dict[str, str], index: int, gossip: Gossip | None = None
) -> SyncNode:
    operator = OPERATORS[index]
    link = GrpcLink(ceir.address, tokens[operator.name])
    return SyncNode(operator, link, trust=Trust.from_file(ceir.public_key_path), gossip=gossip)


def test_nodes_verify_an_honest_ceir_and_gossip_agrees(
    ceir_process: EmbeddedCeir, sim_tokens: dict[str, str]
) -> None:
    admin = Admin(ceir_process.address, sim_tokens)
    load(admin, generate(500, seed=3))
    gossip = Gossip()
    nodes = [verifying_node(ceir_process, sim_tokens, i, gossip) for i in range(3)]
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
        assert node.follower.stats.snapshots == 0  # replayed, not snapshotted
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

    node = verifying_node(ceir_process, sim_tokens, 0)
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

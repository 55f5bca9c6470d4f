"""Differential test: a node's local decision equals the CEIR's own answer
for the same IMEI, IMSI and sequence, on a random population of tens of
thousands of devices covering every category, in both phases, across policy
changes, grace expiry and list changes made while checking.

How each check is compared: the node's replica is brought to the register's
head H and decides; the CEIR then answers the same checks. An answer at H is
compared with the local decision as it is (status, reasons, block date,
sequence). An answer past H means the CEIR recorded something for that check
(a notification, a block): its answer reflects the lists at its own sequence
S, so the node follows the feed to S and decides that check again, and that
decision must equal the answer exactly.

One node sees every check here, as the CEIR does (it mirrors the lists
with a regulator's view of the subscribers), so even clone suspicions must
agree; ``test_sim_clone_scope`` covers what differs when each operator's
node sees only its own subscribers. Each check reaches the CEIR from the
operator the SIM attaches to, as in the simulation: the CEIR records a
notification only for the checking operator's own subscribers.
"""

from __future__ import annotations

import numpy as np
import pytest

from ceir.v1 import equipment_check_pb2 as check_pb
from ceir.v1 import types_pb2 as pb
from operators_sim.codec import imsi_text
from operators_sim.decision import Outcome, outcome_of
from operators_sim.embedded import EmbeddedCeir
from operators_sim.loader import Admin, load
from operators_sim.node import OPERATORS, AttachBatch, SyncNode, now_us
from operators_sim.population import Category, generate
from operators_sim.simulation import head_sequence
from operators_sim.traffic import Injector, Traffic
from operators_sim.transport import GrpcLink
from operators_sim.truth import Truth

DEVICES = 20_000
ROUND = 6_000
BATCH = 1_000


class Differ:
    def __init__(self, ceir: EmbeddedCeir, tokens: dict[str, str], node: SyncNode) -> None:
        self.target = ceir.address
        self.token = tokens["kominfo"]
        self.node = node
        self.links = [GrpcLink(ceir.address, tokens[operator.name]) for operator in OPERATORS]
        self.compared = 0
        self.decided_again = 0
        self.outcomes: set[Outcome] = set()

    def round(self, traffic: Traffic, count: int) -> None:
        attaches = traffic.draw(count)
        population = traffic.population
        for start in range(0, count, BATCH):
            rows = np.arange(start, min(start + BATCH, count))
            for index, link in enumerate(self.links):
                mine = rows[attaches.operator[rows] == index]
                if mine.size:
                    self.compare(attaches.batch(population, mine), link)

    def compare(self, batch: AttachBatch, ceir: GrpcLink) -> None:
        head = head_sequence(self.target, self.token)
        assert self.node.follower.wait_for(head, 30)
        local = self.node.decide_batch(batch, now_us())
        requests = [
            check_pb.CheckEquipmentRequest(
                imei=batch.imeis[i].decode(),
                imsi=imsi_text(int(batch.imsis[i])),
                msisdn=str(int(batch.msisdns[i])),
            )
            for i in range(len(batch))
        ]
        answers = ceir.check_batch(requests)
        later: list[int] = []
        for index, answer in enumerate(answers):
            if answer.sequence == head:
                self.check_equal(local.at(index), answer, requests[index])
            else:
                assert answer.sequence > head
                later.append(index)
        if later:
            top = max(answers[i].sequence for i in later)
            assert self.node.follower.wait_for(top, 30)
            rows = np.array(later)
            again = self.node.decide_batch(
                AttachBatch(batch.imeis[rows], batch.imsis[rows], batch.msisdns[rows]), now_us()
            )
            for position, index in enumerate(later):
                self.check_equal(again.at(position), answers[index], requests[index])
                self.decided_again += 1

    def check_equal(
        self,
        local: object,
        answer: check_pb.CheckEquipmentResponse,
        request: check_pb.CheckEquipmentRequest,
    ) -> None:
        expected = outcome_of(int(answer.status), tuple(int(r) for r in answer.reasons))
        block = answer.block_date.seconds if answer.HasField("block_date") else None
        got = (local.outcome, local.block_date, local.sequence)  # type: ignore[attr-defined]
        assert got == (expected, block, answer.sequence), (
            f"{request.imei}/{request.imsi}: local {got}, CEIR {(expected, block, answer.sequence)}"
        )
        self.compared += 1
        self.outcomes.add(expected)


@pytest.mark.slow
def test_sim_local_decisions_equal_the_ceirs_answers(
    ceir_process: EmbeddedCeir, sim_tokens: dict[str, str]
) -> None:
    admin = Admin(ceir_process.address, sim_tokens)
    population = generate(DEVICES, seed=11)
    assert all(count > 0 for count in population.counts().values())
    admin.set_policy(phase=pb.PHASE_NOTIFY, grace_days=30)
    loaded = load(admin, population)
    assert loaded.rows_rejected == 0

    # It follows the feed with a regulator's view: every subscriber in clear
    # (an operator's node gets other operators' subscribers as commitments
    # only, so could not decide their exception pairs; test_privacy).
    node = SyncNode(OPERATORS[0], GrpcLink(ceir_process.address, sim_tokens["kominfo"]))
    # the reporter stays off: the test's own checks are the only ones the CEIR gets
    node.replica.start_merging()
    node.follower.start()
    try:
        assert node.wait_ready(60)
        differ = Differ(ceir_process, sim_tokens, node)
        traffic = Traffic(population, seed=5)
        injector = Injector(admin, population, Truth(population, pb.PHASE_NOTIFY), 1.0, seed=5)

        differ.round(traffic, ROUND)
        for _ in range(30):  # registrations, stolen reports, recoveries
            injector.inject_one()
        differ.round(traffic, ROUND)
        # blocks for expired grace periods: a grace of 0 days ends at first sight
        admin.set_policy(grace_days=0)
        differ.round(traffic, ROUND)
        differ.round(traffic, ROUND // 2)
        admin.set_policy(phase=pb.PHASE_ENFORCE, grace_days=30)
        differ.round(traffic, ROUND)
    finally:
        node.stop()
        admin.close()

    assert differ.compared >= 4 * ROUND
    assert differ.decided_again > 0
    every_rule = set(Outcome) - {
        Outcome.FORCED_ALLOW,
        Outcome.FORCED_DENY,
        # a tourist's registration expired and the grace ran out: needs days to pass
        Outcome.REGISTRATION_EXPIRED_GRACE_EXPIRED,
    }
    assert every_rule - differ.outcomes == set()
    assert node.follower.stats.refused == 0


@pytest.mark.slow
def test_sim_a_fresh_snapshot_equals_the_replica_that_followed_the_feed(
    ceir_process: EmbeddedCeir, sim_tokens: dict[str, str]
) -> None:
    admin = Admin(ceir_process.address, sim_tokens)
    population = generate(3_000, seed=12)
    link = GrpcLink(ceir_process.address, sim_tokens["xl"])
    follower = SyncNode(OPERATORS[2], link)
    follower.replica.merge_threshold = 500  # merge during the load, in the background
    follower.replica.start_merging()
    follower.follower.start()
    try:
        assert follower.wait_ready(30)
        load(admin, population)
        traffic = Traffic(population, seed=1)
        attaches = traffic.draw(2_000)
        answers = GrpcLink(ceir_process.address, sim_tokens["xl"])
        batch = attaches.batch(population, np.arange(len(attaches)))
        for start in range(0, len(batch), BATCH):
            answers.check_batch(
                [
                    check_pb.CheckEquipmentRequest(
                        imei=batch.imeis[i].decode(), imsi=imsi_text(int(batch.imsis[i]))
                    )
                    for i in range(start, min(start + BATCH, len(batch)))
                ]
            )
        head = head_sequence(ceir_process.address, sim_tokens["kominfo"])
        assert follower.follower.wait_for(head, 30)
        fresh = SyncNode(OPERATORS[2], GrpcLink(ceir_process.address, sim_tokens["xl"]))
        fresh.follower.start()
        assert fresh.wait_ready(30)
        fresh.stop()
    finally:
        follower.stop()
        admin.close()
    assert follower.replica.merges > 0
    assert fresh.replica.sequence == follower.replica.sequence == head
    assert fresh.replica.sizes() == follower.replica.sizes()
    keys = np.unique(population.keys[population.keys != 0])
    for table in ("whitelist", "blacklist"):
        mine = getattr(follower.replica, table).lookup(keys)
        theirs = getattr(fresh.replica, table).lookup(keys)
        assert np.array_equal(mine[0], theirs[0])
        if table == "blacklist":  # a snapshot carries no block date: compare causes
            assert np.array_equal(mine[1] & 3, theirs[1] & 3)
        else:
            assert np.array_equal(mine[1], theirs[1])
    stolen = population.keys[population.of(Category.STOLEN), 0]
    assert bool(follower.replica.blacklist.lookup(stolen)[0].all())

"""The node's reference decider (``operators_sim.rules.decide`` over a
``Replica``) against the shared decision vectors in
``tests/vectors/decisions.json``; the register runs the same vectors in
``tests/test_decision_vectors.py``."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from ceir.v1 import types_pb2 as pb
from operators_sim import rules
from operators_sim.clones import CloneTracker
from operators_sim.codec import MALFORMED_KEY, imei_key, imei_keys
from operators_sim.decision import OUTCOME_ANSWERS, Outcome
from operators_sim.node import AttachBatch
from operators_sim.replica import Replica
from tests.vectors import Vector, load_decision_vectors

VECTORS = load_decision_vectors()
MICROS = 1_000_000


def _timestamp(us: int | None) -> Timestamp | None:
    return None if us is None else Timestamp(seconds=us // MICROS, nanos=us % MICROS * 1000)


def replica(vector: Vector) -> Replica:
    """A replica holding the vector's lists, built through the change feed as
    the register publishes it."""
    policy = vector.policy
    changes = [
        pb.ListChange(
            kind=pb.CHANGE_KIND_POLICY_CHANGED,
            policy=pb.Policy(
                phase=pb.Phase.Value(policy.phase),
                grace_days=policy.grace_days,
                clone_threshold=policy.clone_threshold,
                clone_window_seconds=policy.clone_window_seconds,
            ),
        )
    ]
    changes += [
        pb.ListChange(
            kind=pb.CHANGE_KIND_WHITELIST_ADDED,
            imei_key=f"{e.key:014d}",
            valid_until=_timestamp(e.valid_until_us),
        )
        for e in vector.whitelist
    ]
    changes += [
        pb.ListChange(
            kind=pb.CHANGE_KIND_BLACKLIST_BLOCKED,
            imei_key=f"{e.key:014d}",
            blacklist_cause=pb.BlacklistCause.Value(e.cause),
            block_date=_timestamp(e.block_date_us),
        )
        for e in vector.blacklist
    ]
    changes += [
        pb.ListChange(
            kind=pb.CHANGE_KIND_NOTIFICATION_NEW,
            imei_key=f"{n.key:014d}",
            imsi=n.imsi,
            msisdn=n.msisdn,
            block_date=_timestamp(n.block_date_us),
        )
        for n in vector.notifications
    ]
    changes += [
        pb.ListChange(kind=pb.CHANGE_KIND_EXCEPTION_ADDED, imei_key=f"{e.key:014d}", imsi=e.imsi)
        for e in vector.exceptions
    ]
    for sequence, change in enumerate(changes, start=1):
        change.sequence = sequence
    result = Replica()
    result.apply(changes)
    return result


def decide_one(
    lists: Replica, clones: CloneTracker, imei: str, imsi: str, msisdn: str, at_us: int
) -> tuple[Outcome, int | None, str]:
    batch = AttachBatch.one(imei, imsi, msisdn)
    keys = imei_keys(batch.imeis)
    decisions, effects = rules.decide(lists, clones, keys, batch.imsis, at_us)
    records = "nothing"
    if effects.new_notification.size:
        records = "notification"
    if effects.grace_expired.size:
        records = "blacklist entry"
    block = int(decisions.block_date[0])
    return Outcome(int(decisions.outcome[0])), block * MICROS if block else None, records


@pytest.mark.parametrize("vector", VECTORS, ids=[v.name for v in VECTORS])
def test_the_node_decides_every_vector(vector: Vector) -> None:
    lists = replica(vector)
    clones = CloneTracker()
    for sighting in vector.earlier_checks:
        decide_one(lists, clones, vector.imei, sighting.imsi, "", sighting.at_us)
    outcome, block_date_us, records = decide_one(
        lists, clones, vector.imei, vector.imsi, vector.msisdn, vector.at_us
    )
    status, reasons = OUTCOME_ANSWERS[outcome]
    got = (
        pb.EquipmentStatus.Name(status),  # type: ignore[arg-type]
        tuple(pb.Reason.Name(r) for r in reasons),  # type: ignore[arg-type]
        block_date_us,
        records,
    )
    expected = vector.expected
    assert got == (expected.status, expected.reasons, expected.block_date_us, expected.records)


def test_the_vectors_imeis_have_the_same_key_one_by_one_and_in_a_batch() -> None:
    """The scalar parser (a handful of IMEIs) and the vectorised one (a batch)
    agree on every IMEI the vectors send."""
    imeis = [v.imei for v in VECTORS]
    batch = np.concatenate([AttachBatch.one(imei).imeis.astype("S17") for imei in imeis])
    assert batch.shape[0] > 8  # the vectorised path
    one_by_one = [imei_key(i) if i.isascii() else None for i in imeis]
    batched = [None if k == MALFORMED_KEY else k for k in imei_keys(batch).tolist()]
    assert batched == one_by_one

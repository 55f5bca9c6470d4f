"""The register's decider (``ListState.decide``) against the shared decision
vectors in ``tests/vectors/decisions.json``; the node's reference decider
runs the same vectors in ``tests/operators_sim/test_sim_decision_vectors.py``."""

from __future__ import annotations

import pytest

from ceir.domain.lists import GraceExpired, ListState, NewNotification
from ceir.domain.model import BlacklistCause, Change, ChangeKind, Phase, Policy
from ceir.v1 import types_pb2 as pb
from tests.vectors import Vector, load_decision_vectors

VECTORS = load_decision_vectors()


def list_state(vector: Vector) -> ListState:
    """A ListState holding the vector's lists, built through the change feed."""
    policy = vector.policy
    changes = [
        Change(
            ChangeKind.POLICY_CHANGED,
            policy=Policy(
                phase=Phase[policy.phase.removeprefix("PHASE_")],
                grace_days=policy.grace_days,
                clone_threshold=policy.clone_threshold,
                clone_window_seconds=policy.clone_window_seconds,
            ),
        )
    ]
    changes += [
        Change(ChangeKind.WHITELIST_ADDED, e.key, valid_until_us=e.valid_until_us)
        for e in vector.whitelist
    ]
    changes += [
        Change(
            ChangeKind.BLACKLIST_BLOCKED,
            e.key,
            blacklist_cause=BlacklistCause[e.cause.removeprefix("BLACKLIST_CAUSE_")],
            block_date_us=e.block_date_us,
        )
        for e in vector.blacklist
    ]
    changes += [
        Change(
            ChangeKind.NOTIFICATION_NEW,
            n.key,
            imsi=n.imsi,
            msisdn=n.msisdn,
            block_date_us=n.block_date_us,
        )
        for n in vector.notifications
    ]
    changes += [Change(ChangeKind.EXCEPTION_ADDED, e.key, imsi=e.imsi) for e in vector.exceptions]
    state = ListState()
    for sequence, change in enumerate(changes, start=1):
        state.apply(Change(**{**change.__dict__, "sequence": sequence}))
    return state


@pytest.mark.parametrize("vector", VECTORS, ids=[v.name for v in VECTORS])
def test_the_register_decides_every_vector(vector: Vector) -> None:
    state = list_state(vector)
    for sighting in vector.earlier_checks:
        state.decide(vector.imei, sighting.imsi, "", sighting.at_us)
    decision, effect = state.decide(vector.imei, vector.imsi, vector.msisdn, vector.at_us)
    records = {
        NewNotification: "notification",
        GraceExpired: "blacklist entry",
        type(None): "nothing",
    }[type(effect)]
    got = (
        pb.EquipmentStatus.Name(decision.status),  # type: ignore[arg-type]
        tuple(pb.Reason.Name(r) for r in decision.reasons),  # type: ignore[arg-type]
        decision.block_date_us,
        records,
    )
    expected = vector.expected
    assert got == (expected.status, expected.reasons, expected.block_date_us, expected.records)

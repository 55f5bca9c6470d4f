"""The node's rules ask for the writes the register makes: here, no
notification past the register's bound on notified IMSIs per IMEI, and the
same block date as the register's, in the node's unit."""

from __future__ import annotations

import numpy as np

from ceir.domain import lists
from ceir.domain.model import Policy
from operators_sim import rules
from operators_sim.clones import CloneTracker
from operators_sim.codec import imsi_code
from operators_sim.decision import Outcome
from operators_sim.replica import Policy as NodePolicy
from operators_sim.replica import Replica

KEY = 35209900000040
NOW_US = 1_600_000_000_000_000
BLOCK = NOW_US // 1_000_000 + 30 * 86_400


def imsi(n: int) -> int:
    return imsi_code(f"510100000000{n:03d}")


def test_the_node_knows_the_registers_bound() -> None:
    assert rules.MAX_NOTIFICATIONS_PER_IMEI == lists.MAX_NOTIFICATIONS_PER_IMEI


def test_the_node_blocks_on_the_registers_grace_end_in_seconds() -> None:
    for now_us in (0, NOW_US, NOW_US + 999_999, NOW_US + 1_000_000):
        for days in (0, 1, 30, 365):
            register_us = lists.grace_end_us(now_us, Policy(grace_days=days))
            node_s = rules.grace_end_s(now_us, NodePolicy(grace_days=days))
            assert register_us == node_s * 1_000_000


def test_past_the_bound_a_new_imsi_is_answered_but_not_reported() -> None:
    replica = Replica()
    bound = rules.MAX_NOTIFICATIONS_PER_IMEI
    for n in range(bound - 1):
        replica.notifications.put(KEY, imsi(n), BLOCK)
    keys = np.array([KEY], dtype=np.uint64)
    last_place = np.array([imsi(bound - 1)], dtype=np.uint64)
    _, effects = rules.decide(replica, CloneTracker(), keys, last_place, NOW_US)
    assert effects.new_notification.tolist() == [0]
    replica.notifications.put(KEY, imsi(bound - 1), BLOCK)
    one_more = np.array([imsi(bound)], dtype=np.uint64)
    result, effects = rules.decide(replica, CloneTracker(), keys, one_more, NOW_US)
    assert effects.new_notification.size == 0
    assert result.outcome.tolist() == [Outcome.NOT_REGISTERED_PENDING]
    assert result.block_date.tolist() == [BLOCK]

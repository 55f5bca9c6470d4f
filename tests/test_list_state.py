"""The in-memory lists: applying the change feed, and the rules' order."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ceir.domain.lists import MAX_NOTIFICATIONS_PER_IMEI, GraceExpired, ListState, NewNotification
from ceir.domain.model import (
    BlacklistCause,
    Change,
    ChangeKind,
    EquipmentStatus,
    Phase,
    Policy,
    Reason,
)

KEY = 35209900176148
IMEI = "352099001761481"
IMSI = "510101234567890"
NOW = 1_600_000_000_000_000


def feed(state: ListState, *changes: Change) -> None:
    for change in changes:
        state.apply(Change(**{**change.__dict__, "sequence": state.sequence + 1}))


def test_apply_refuses_a_gap_and_a_replay() -> None:
    state = ListState()
    state.apply(Change(ChangeKind.WHITELIST_ADDED, KEY, sequence=1))
    with pytest.raises(ValueError, match="does not follow"):
        state.apply(Change(ChangeKind.WHITELIST_REMOVED, KEY, sequence=3))
    with pytest.raises(ValueError, match="does not follow"):
        state.apply(Change(ChangeKind.WHITELIST_REMOVED, KEY, sequence=1))
    assert state.sequence == 1 and state.is_whitelisted(KEY)


def test_first_matching_rule_wins() -> None:
    state = ListState()
    feed(
        state,
        Change(ChangeKind.WHITELIST_ADDED, KEY),
        Change(ChangeKind.BLACKLIST_BLOCKED, KEY, blacklist_cause=BlacklistCause.STOLEN),
        Change(ChangeKind.EXCEPTION_ADDED, KEY, imsi=IMSI),
    )
    decision, effect = state.decide(IMEI, IMSI, "", NOW)
    assert (decision.status, decision.reasons) == (
        EquipmentStatus.WHITELISTED,
        (Reason.EXCEPTION_PAIR,),
    )
    assert effect is None
    decision, _ = state.decide(IMEI, "510109999999999", "", NOW)
    assert decision.reasons == (Reason.STOLEN,)


def test_unregistered_in_notify_asks_for_a_notification_then_expires() -> None:
    state = ListState(Policy(phase=Phase.NOTIFY, grace_days=10))
    decision, effect = state.decide(IMEI, IMSI, "6281100000001", NOW)
    assert decision.status is EquipmentStatus.GREYLISTED
    assert isinstance(effect, NewNotification)
    assert effect.block_date_us == NOW + 10 * 86_400 * 1_000_000
    feed(
        state,
        Change(ChangeKind.NOTIFICATION_NEW, KEY, imsi=IMSI, block_date_us=effect.block_date_us),
    )
    assert state.decide(IMEI, IMSI, "", NOW)[1] is None  # already notified
    decision, effect = state.decide(IMEI, IMSI, "", effect.block_date_us)
    assert decision.reasons == (Reason.NOT_REGISTERED, Reason.NOTIFICATION_EXPIRED)
    assert isinstance(effect, GraceExpired)


def test_policy_changes_arrive_through_the_feed() -> None:
    state = ListState()
    feed(state, Change(ChangeKind.POLICY_CHANGED, policy=Policy(phase=Phase.ENFORCE)))
    decision, effect = state.decide(IMEI, IMSI, "", NOW)
    assert decision.reasons == (Reason.NOT_REGISTERED, Reason.ENFORCEMENT_PHASE)
    assert effect is None


def test_clone_window_forgets_old_sightings() -> None:
    state = ListState(Policy(clone_threshold=1, clone_window_seconds=60))
    feed(state, Change(ChangeKind.WHITELIST_ADDED, KEY))
    assert state.decide(IMEI, "510100000000001", "", NOW)[0].status is EquipmentStatus.WHITELISTED
    assert state.decide(IMEI, "510100000000002", "", NOW)[0].status is EquipmentStatus.GREYLISTED
    later = NOW + 120 * 1_000_000
    assert state.decide(IMEI, "510100000000003", "", later)[0].status is EquipmentStatus.WHITELISTED


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 5), st.integers(1, 4)), max_size=60))
def test_the_block_date_is_the_earliest_of_the_pairs_after_any_changes(
    steps: list[tuple[bool, int, int]],
) -> None:
    state = ListState()
    for add, imsi, date in steps:
        kind = ChangeKind.NOTIFICATION_NEW if add else ChangeKind.NOTIFICATION_RESOLVED
        feed(state, Change(kind, KEY, imsi=f"51010000000000{imsi}", block_date_us=date))
        pairs = state.notified.get(KEY)
        assert state.block_date_of(KEY) == (min(pairs.values()) if pairs else None)


def test_past_the_bound_a_new_imsi_is_answered_but_asks_for_no_notification() -> None:
    state = ListState(Policy(phase=Phase.NOTIFY, grace_days=10))
    block = NOW + 10 * 86_400_000_000
    for n in range(MAX_NOTIFICATIONS_PER_IMEI):
        feed(
            state,
            Change(
                ChangeKind.NOTIFICATION_NEW, KEY, imsi=f"5101000000{n:05d}", block_date_us=block
            ),
        )
    decision, effect = state.decide(IMEI, IMSI, "", NOW)
    assert (decision.status, decision.reasons, decision.block_date_us) == (
        EquipmentStatus.GREYLISTED,
        (Reason.NOT_REGISTERED, Reason.NOTIFICATION_PENDING),
        block,
    )
    assert effect is None

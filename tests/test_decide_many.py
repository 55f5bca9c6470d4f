"""A batch decided over columns (``ListState.decide_many``) must be exactly
the checks decided one by one (``decide``): the same decisions, the same
effects, and the same clone tracker afterwards, on any lists."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from ceir.domain.clones import imsi_codes
from ceir.domain.columns import MALFORMED, imei_keys
from ceir.domain.identifiers import full_imei, imei_key
from ceir.domain.lists import MAX_NOTIFICATIONS_PER_IMEI, Effect, ListState
from ceir.domain.model import (
    BlacklistCause,
    Change,
    ChangeKind,
    Decision,
    EquipmentStatus,
    Phase,
    Policy,
    Reason,
)

NOW = 1_600_000_000_000_000
SECOND = 1_000_000
DAY = 86_400 * SECOND
# A few IMEIs and IMSIs, so that lists, queries and repeats meet.
KEYS = [35209900176100 + n for n in range(8)]
HOME_IMSIS = [f"5101012345678{n:02d}" for n in range(6)]
ROAMER_IMSIS = ["525011234567890", "310150123456789"]

key_st = st.sampled_from(KEYS)
imsi_st = st.sampled_from(HOME_IMSIS)
# Around NOW: expired, not yet, exactly now, not a whole second (kept exactly).
date_st = st.sampled_from([NOW - DAY, NOW, NOW + DAY, NOW + DAY + 7, NOW - 3, 5 * SECOND])


def _notified(key: int, how_many: int, block_date: int) -> list[Change]:
    """An IMEI with many pairs, up to past the register's bound."""
    return [
        Change(ChangeKind.NOTIFICATION_NEW, key, imsi=f"5101099{n:08d}", block_date_us=block_date)
        for n in range(how_many)
    ]


change_st = st.one_of(
    st.builds(
        lambda k, until: Change(ChangeKind.WHITELIST_ADDED, k, valid_until_us=until),
        key_st,
        st.one_of(st.none(), date_st),
    ),
    st.builds(lambda k: Change(ChangeKind.WHITELIST_REMOVED, k), key_st),
    st.builds(
        lambda k, cause, date: Change(
            ChangeKind.BLACKLIST_BLOCKED, k, blacklist_cause=cause, block_date_us=date
        ),
        key_st,
        st.sampled_from(BlacklistCause),
        st.one_of(st.none(), date_st),
    ),
    st.builds(lambda k: Change(ChangeKind.BLACKLIST_UNBLOCKED, k), key_st),
    st.builds(
        lambda k, i, m, date: Change(
            ChangeKind.NOTIFICATION_NEW, k, imsi=i, msisdn=m, block_date_us=date
        ),
        key_st,
        imsi_st,
        st.sampled_from(["", "6281100000001"]),
        date_st,
    ),
    st.builds(lambda k, i: Change(ChangeKind.NOTIFICATION_RESOLVED, k, imsi=i), key_st, imsi_st),
    st.builds(lambda k, i: Change(ChangeKind.EXCEPTION_ADDED, k, imsi=i), key_st, imsi_st),
    st.builds(lambda k, i: Change(ChangeKind.EXCEPTION_REMOVED, k, imsi=i), key_st, imsi_st),
)
# How an IMEI arrives: 15 digits (right or wrong check digit), 14, an
# IMEISV, an unknown IMEI, or something that is not an IMEI at all.
imei_st = st.one_of(
    key_st.map(full_imei),
    key_st.map(str),
    key_st.map(lambda k: f"{k}07"),
    key_st.map(lambda k: full_imei(k)[:14] + str((int(full_imei(k)[14]) + 1) % 10)),
    st.integers(10**13, 10**14 - 1).map(full_imei),
    st.text(st.sampled_from("0123456789a\u0663"), min_size=1, max_size=17),
)
query_st = st.tuples(
    imei_st,
    st.one_of(st.just(""), imsi_st, st.sampled_from(ROAMER_IMSIS)),
    st.sampled_from(["", "6281234567890"]),
)


@dataclass
class Lists:
    registered: list[int | bool | None]  # per key: valid until, None: no expiry, False: none
    changes: list[Change]
    policy: Policy
    crowded: int  # an IMEI with this many pairs (past MAX_NOTIFICATIONS_PER_IMEI)
    merged: bool  # the tables' overlays merged into their arrays first
    capacity: int  # the clone tracker's


lists_st = st.builds(
    Lists,
    st.lists(st.one_of(st.just(False), st.none(), date_st), min_size=len(KEYS), max_size=len(KEYS)),
    st.lists(change_st, max_size=30),
    st.builds(
        Policy,
        phase=st.sampled_from(Phase),
        grace_days=st.integers(0, 3),
        clone_threshold=st.integers(1, 3),
        clone_window_seconds=st.sampled_from([1, 60, 86_400]),
    ),
    st.sampled_from([0, MAX_NOTIFICATIONS_PER_IMEI - 1, MAX_NOTIFICATIONS_PER_IMEI]),
    st.booleans(),
    st.sampled_from([2, 5, 1_000]),
)


def _state(lists: Lists) -> ListState:
    state = ListState(lists.policy, clone_capacity=lists.capacity)
    registrations = [
        Change(ChangeKind.WHITELIST_ADDED, key, valid_until_us=until)
        for key, until in zip(KEYS, lists.registered, strict=True)
        if until is not False
    ]
    crowded = _notified(KEYS[-1], lists.crowded, NOW + DAY)
    changes = [*registrations, *lists.changes, *crowded]
    for change in changes:
        state.apply(Change(**{**change.__dict__, "sequence": state.sequence + 1}))
    if lists.merged:
        state.merge()
    return state


def _one_by_one(
    state: ListState, batch: list[tuple[str, str, str]], now: int
) -> tuple[list[Decision], list[tuple[int, Effect]]]:
    decisions: list[Decision] = []
    effects: list[tuple[int, Effect]] = []
    for index, (imei, imsi, msisdn) in enumerate(batch):
        decision, effect = state.decide(imei, imsi, msisdn, now)
        decisions.append(decision)
        if effect is not None:
            effects.append((index, effect))
    return decisions, effects


def _tracker(state: ListState) -> tuple[object, ...]:
    clones = state.clones
    return list(clones._imeis.items()), clones._countdown, clones.evicted, clones.expired


@settings(max_examples=300, deadline=None)
@given(
    lists_st,
    # Batches at moving times (each sighting's age matters to the clone rule).
    st.lists(
        st.tuples(st.sampled_from([0, SECOND, 2 * SECOND, DAY]), st.lists(query_st, max_size=90)),
        min_size=1,
        max_size=4,
    ),
)
def test_a_batch_decides_as_its_checks_one_by_one(
    lists: Lists, batches: list[tuple[int, list[tuple[str, str, str]]]]
) -> None:
    one, many = _state(lists), _state(lists)
    now = NOW
    for step, batch in batches:
        now += step
        expected = _one_by_one(one, batch, now)
        imeis, imsis, msisdns = (
            (list(column) for column in zip(*batch, strict=True)) if batch else ([], [], [])
        )
        assert many.decide_many(imeis, imsis, msisdns, now) == expected
        assert _tracker(many) == _tracker(one)


def test_a_suspected_clone_in_a_batch_is_the_sighting_that_crosses_the_threshold() -> None:
    state = ListState(Policy(clone_threshold=2))
    state.apply(Change(ChangeKind.WHITELIST_ADDED, KEYS[0], sequence=1))
    imei = full_imei(KEYS[0])
    imsis = HOME_IMSIS[:4]
    decisions, effects = state.decide_many([imei] * 4, imsis, [""] * 4, NOW)
    assert [d.status for d in decisions] == [EquipmentStatus.WHITELISTED] * 2 + [
        EquipmentStatus.GREYLISTED
    ] * 2
    assert decisions[2].reasons == (Reason.REGISTERED, Reason.DUPLICATE_SUSPECTED)
    assert effects == [] and state.clones.imsis_of(KEYS[0]) == 3


def test_an_exception_added_and_removed_is_seen_by_a_batch() -> None:
    state = ListState(Policy(phase=Phase.ENFORCE))
    imei, imsi = full_imei(KEYS[1]), HOME_IMSIS[0]
    state.apply(Change(ChangeKind.EXCEPTION_ADDED, KEYS[1], imsi=imsi, sequence=1))
    state.apply(Change(ChangeKind.EXCEPTION_ADDED, KEYS[1], imsi=HOME_IMSIS[1], sequence=2))
    first = state.decide_many([imei, imei], [imsi, HOME_IMSIS[2]], ["", ""], NOW)[0]
    assert [d.reasons[0] for d in first] == [Reason.EXCEPTION_PAIR, Reason.NOT_REGISTERED]
    state.apply(Change(ChangeKind.EXCEPTION_REMOVED, KEYS[1], imsi=imsi, sequence=3))
    (after,), _ = state.decide_many([imei], [imsi], [""], NOW)
    assert after.reasons == (Reason.NOT_REGISTERED, Reason.ENFORCEMENT_PHASE)
    (other,), _ = state.decide_many([imei], [HOME_IMSIS[1]], [""], NOW)
    assert other.reasons == (Reason.EXCEPTION_PAIR,)


_IMEI_WIDTH = st.sampled_from([13, 14, 15, 16, 17])


@given(
    st.lists(
        st.one_of(
            st.tuples(st.integers(0, 10**14 - 1), _IMEI_WIDTH).map(
                lambda kw: (full_imei(kw[0]) + "35")[: kw[1]]
            ),
            _IMEI_WIDTH.flatmap(
                lambda w: st.text(
                    st.sampled_from("0123456789/:a\x00\u0663"), min_size=w, max_size=w
                )
            ),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_a_column_of_imeis_is_parsed_as_each_imei_alone(values: list[str]) -> None:
    # Values of one width are read as one buffer, the others one by one.
    expected = [MALFORMED if imei_key(v) is None else imei_key(v) for v in values]
    assert imei_keys(values).tolist() == expected


@given(
    st.lists(
        st.text(st.sampled_from("0123456789"), min_size=1, max_size=15)
        | st.sampled_from(["510101234567890", "5101012345678", "51010123456789"]),
        min_size=1,
        max_size=12,
    )
)
def test_imsi_codes_of_a_column_are_each_imsis_own(imsis: list[str]) -> None:
    # Lengths may differ, or add up to a whole number of equal ones.
    assert imsi_codes(imsis) == [int(imsi) << 5 | len(imsi) for imsi in imsis]

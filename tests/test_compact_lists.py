"""The register's whitelist and blacklist on the compact tables: the same
answers as plain dicts across merges, exact valid-until values, columns
that round-trip, and checks that stay right while another thread applies
changes and merges (checks take no lock)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from ceir.domain.identifiers import full_imei
from ceir.domain.lists import NO_DATE, ListColumns, ListState
from ceir.domain.model import (
    BlacklistCause,
    Change,
    ChangeKind,
    EquipmentStatus,
    Phase,
    Policy,
)

NOW = 1_600_000_000_000_000
BASE = 35_000_000_000_000
# valid-until values of every kind the column must keep exactly
UNTILS = [None, NOW + 86_400_000_000, NOW + 1, 0, -5, 2**32 * 1_000_000, 5 * 1_000_000]


def feed(state: ListState, *changes: Change) -> None:
    for change in changes:
        state.apply(Change(**{**change.__dict__, "sequence": state.sequence + 1}))


def _check_against(
    state: ListState,
    white: dict[int, int | None],
    black: dict[int, tuple[BlacklistCause, int | None]],
    keys: range,
) -> None:
    for key in keys:
        assert state.is_whitelisted(key) == (key in white), key
        if key in white:
            assert state.valid_until_of(key) == white[key], key
        assert state.blacklist_entry_of(key) == black.get(key), key
    queried = np.array(list(keys), dtype=np.uint64)
    assert state.whitelisted(queried).tolist() == [k in white for k in keys]
    assert state.sizes()["whitelist"] == len(white)
    assert state.sizes()["blacklist"] == len(black)


@pytest.mark.parametrize("seed", range(4))
def test_lists_behave_like_dicts_across_merges(seed: int) -> None:
    rng = np.random.default_rng(seed)
    state = ListState()
    state.merge_threshold = 16  # merges all along (in the background)
    white: dict[int, int | None] = {}
    black: dict[int, tuple[BlacklistCause, int | None]] = {}
    keys = range(BASE, BASE + 300)
    for step in range(3_000):
        key = BASE + int(rng.integers(0, 300))
        roll = rng.random()
        if roll < 0.4:
            until = UNTILS[int(rng.integers(0, len(UNTILS)))]
            feed(state, Change(ChangeKind.WHITELIST_ADDED, key, valid_until_us=until))
            white[key] = until
        elif roll < 0.6:
            feed(state, Change(ChangeKind.WHITELIST_REMOVED, key))
            white.pop(key, None)
        elif roll < 0.8:
            cause = (
                BlacklistCause.STOLEN if rng.random() < 0.5 else BlacklistCause.NOTIFICATION_EXPIRED
            )
            date = None if rng.random() < 0.3 else NOW + step
            feed(
                state,
                Change(
                    ChangeKind.BLACKLIST_BLOCKED, key, blacklist_cause=cause, block_date_us=date
                ),
            )
            black[key] = (cause, date)
        else:
            feed(state, Change(ChangeKind.BLACKLIST_UNBLOCKED, key))
            black.pop(key, None)
        if step % 500 == 0:
            state.merge()  # and in the foreground too
            _check_against(state, white, black, keys)
    _check_against(state, white, black, keys)
    assert state.merges > 0
    again = ListState.from_columns(state.columns())
    _check_against(again, white, black, keys)


def test_columns_round_trip_exactly() -> None:
    columns = ListColumns(
        sequence=7,
        policy=Policy(grace_days=3),
        whitelist_keys=np.array([BASE + i for i in range(len(UNTILS))], dtype=np.uint64),
        whitelist_valid_until_us=np.array(
            [NO_DATE if u is None else u for u in UNTILS], dtype=np.int64
        ),
        blacklist_keys=np.array([BASE + 1, BASE + 9], dtype=np.uint64),
        blacklist_causes=np.array([1, 2], dtype=np.uint8),
        blacklist_block_date_us=np.array([NO_DATE, NOW + 3], dtype=np.int64),
        notifications=[(BASE + 20, "510101234567890", "6281100000001", NOW + 5, b"s" * 16)],
        exceptions=[(BASE + 21, "510101234567891", b"t" * 16)],
    )
    state = ListState.from_columns(columns)
    assert state.sequence == 7 and state.policy == columns.policy
    assert state.valid_until_of(BASE + 2) == NOW + 1  # not a whole second: kept exactly
    assert state.blacklist_entry_of(BASE + 9) == (BlacklistCause.NOTIFICATION_EXPIRED, NOW + 3)
    assert state.blacklist_entry_of(BASE + 1) == (BlacklistCause.STOLEN, None)
    back = state.columns()
    for name in (
        "whitelist_keys",
        "whitelist_valid_until_us",
        "blacklist_keys",
        "blacklist_causes",
        "blacklist_block_date_us",
    ):
        assert getattr(back, name).tolist() == getattr(columns, name).tolist(), name
    assert back.notifications == columns.notifications
    assert back.exceptions == columns.exceptions
    assert back.total_entries == columns.total_entries == 11


def test_a_whitelisted_imei_costs_at_most_16_bytes() -> None:
    count = 200_000
    keys = np.arange(BASE, BASE + count, dtype=np.uint64) * 3
    until = np.full(count, NOW // 1_000_000 * 1_000_000, dtype=np.int64)
    empty = np.empty(0, np.uint64)
    state = ListState.from_columns(
        ListColumns(
            1, Policy(), keys, until, empty, np.empty(0, np.uint8), np.empty(0, np.int64), [], []
        )
    )
    assert state.nbytes() <= 16 * count
    assert state.valid_until_of(int(keys[-1])) == NOW // 1_000_000 * 1_000_000


def test_checks_stay_right_while_another_thread_applies_and_merges() -> None:
    """Keys that never change must always be answered the same, however the
    overlay is frozen, merged and installed under the readers."""
    state = ListState(Policy(phase=Phase.ENFORCE))
    state.merge_threshold = 64
    steady = [BASE + i for i in range(0, 2_000, 2)]  # whitelisted throughout
    exact = BASE + 100_001  # whitelisted throughout, valid-until not a whole second
    absent = [BASE + i for i in range(1, 2_000, 2)]  # never whitelisted
    for key in steady:
        feed(state, Change(ChangeKind.WHITELIST_ADDED, key))
    feed(state, Change(ChangeKind.WHITELIST_ADDED, exact, valid_until_us=NOW * 2 + 7))
    churn = range(BASE + 10_000, BASE + 12_000)
    stop = threading.Event()
    errors: list[str] = []
    checked = [0]

    def reader() -> None:
        queried = np.array(steady + absent, dtype=np.uint64)
        expected = [True] * len(steady) + [False] * len(absent)
        while not stop.is_set():
            for key in steady[::37]:
                decision, _ = state.decide(full_imei(key), "", "", NOW)
                if decision.status is not EquipmentStatus.WHITELISTED:
                    errors.append(f"{key}: {decision.status}")
            for key in absent[::37]:
                if state.is_whitelisted(key):
                    errors.append(f"{key} whitelisted")
            if state.valid_until_of(exact) != NOW * 2 + 7:
                errors.append("exact valid-until lost")
            if state.whitelisted(queried).tolist() != expected:
                errors.append("batch membership wrong")
            checked[0] += 1

    readers = [threading.Thread(target=reader) for _ in range(2)]
    for thread in readers:
        thread.start()
    try:
        for round_ in range(6):
            for key in churn:
                feed(state, Change(ChangeKind.WHITELIST_ADDED, key, valid_until_us=NOW + round_))
            for key in churn:
                feed(state, Change(ChangeKind.WHITELIST_REMOVED, key))
            state.merge()
    finally:
        stop.set()
        for thread in readers:
            thread.join()
    assert errors == []
    assert checked[0] > 0 and state.merges > 6
    assert state.sizes()["whitelist"] == len(steady) + 1

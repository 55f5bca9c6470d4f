"""What a write adds to the whitelist, as the capacity counts it."""

from __future__ import annotations

import pytest

from ceir.domain.errors import QuotaExceeded
from ceir.domain.lists import ListState
from ceir.domain.model import Change, ChangeKind
from ceir.service.capacity import CapacityStatus, WriteLimits, whitelist_growth


def _state(*keys: int) -> ListState:
    state = ListState()
    for sequence, key in enumerate(keys, start=1):
        state.apply(Change(ChangeKind.WHITELIST_ADDED, key, sequence=sequence))
    return state


def test_growth_counts_new_keys_net_of_removed_ones() -> None:
    state = _state(1, 2)
    changes = [
        Change(ChangeKind.WHITELIST_ADDED, 2),  # on the whitelist already (a re-registration)
        Change(ChangeKind.WHITELIST_ADDED, 3),
        Change(ChangeKind.WHITELIST_ADDED, 4),
        Change(ChangeKind.WHITELIST_REMOVED, 1),
        Change(ChangeKind.NOTIFICATION_NEW, 9, imsi="510101234567890"),
    ]
    assert whitelist_growth(state, changes) == 1


def test_a_write_that_only_removes_is_taken_when_over_the_capacity() -> None:
    state = _state(1, 2, 3)
    limits = WriteLimits(capacity=2)  # restarted with less than it holds
    command = object()
    limits.check(state, command, [Change(ChangeKind.WHITELIST_REMOVED, 1)])  # type: ignore[arg-type]
    with pytest.raises(QuotaExceeded, match="the register is full"):
        limits.check(state, command, [Change(ChangeKind.WHITELIST_ADDED, 7)])  # type: ignore[arg-type]


def test_the_status_says_when_the_register_is_near_its_capacity() -> None:
    assert not CapacityStatus(89, 100).near_limit
    assert CapacityStatus(90, 100).near_limit
    assert not CapacityStatus(10**9, None).near_limit
    assert CapacityStatus(5, None).fill == 0.0
    with pytest.raises(ValueError, match="range guard"):
        WriteLimits(range_guard=1)

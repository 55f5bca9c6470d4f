"""The record of whitelisted IMEIs seen in checks, and dense runs of keys."""

from __future__ import annotations

import numpy as np
import pytest

from ceir.domain.model import Decision, EquipmentStatus, Reason
from ceir.service import ranges
from ceir.service.ranges import SeenRecord, dense_runs


def _decision(key: int, reason: Reason) -> Decision:
    return Decision(EquipmentStatus.WHITELISTED, (reason,), key, 1)


def test_only_registered_answers_mark_an_imei_seen() -> None:
    seen = SeenRecord(0)
    seen.note(_decision(5, Reason.REGISTERED))
    seen.note(_decision(5, Reason.REGISTERED))
    seen.note(_decision(6, Reason.INBOUND_ROAMER))
    seen.note(Decision(EquipmentStatus.BLACKLISTED, (Reason.MALFORMED_IMEI,), None, 1))
    keys = np.array([4, 5, 6], dtype=np.uint64)
    assert seen.seen(keys).tolist() == [False, True, False]
    assert seen.checks == 2
    assert seen.keys().tolist() == [5]


def test_the_buffer_merges_into_a_sorted_unique_array(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ranges, "FLUSH", 4)
    seen = SeenRecord(0)
    for key in (9, 3, 9, 1, 7, 3, 2):
        seen.note(_decision(key, Reason.REGISTERED))
    assert seen.nbytes >= 8 * 4
    assert seen.keys().tolist() == [1, 2, 3, 7, 9]
    assert seen.checks == 7


def test_runs_break_at_a_gap_and_at_a_tac_boundary() -> None:
    tac = 86_000_001 * 1_000_000
    keys = [tac + 1, tac + 2, tac + 3, tac + 5, tac + 999_999, tac + 1_000_000, tac + 1_000_001]
    assert dense_runs(keys) == [
        (tac + 1, tac + 3),
        (tac + 5, tac + 5),
        (tac + 999_999, tac + 999_999),
        (tac + 1_000_000, tac + 1_000_001),
    ]
    assert dense_runs([]) == []

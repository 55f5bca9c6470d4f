"""The clone tracker: the register's rule with bounded memory. Per IMEI it
keeps at most threshold + 1 IMSIs whatever it is sent; across IMEIs at most
its capacity; sightings that left the window go; and for legitimate
traffic it decides as the unbounded rule does."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from ceir.domain.clones import CloneTracker
from ceir.domain.identifiers import full_imei
from ceir.domain.lists import ListState
from ceir.domain.model import Change, ChangeKind, EquipmentStatus, Policy

NOW = 1_600_000_000_000_000
SECOND = 1_000_000


def unbounded_rule(
    seen: dict[int, dict[str, int]], key: int, imsi: str, now: int, threshold: int, window: int
) -> bool:
    """The rule as the register applied it before the tracker was bounded."""
    imsis = seen.setdefault(key, {})
    imsis[imsi] = now
    horizon = now - window * SECOND
    return sum(1 for last in imsis.values() if last >= horizon) > threshold


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 4),
    st.integers(60, 600),
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 7), st.integers(0, 90)), max_size=200),
)
def test_decides_as_the_unbounded_rule(
    threshold: int, window: int, sightings: list[tuple[int, int, int]]
) -> None:
    tracker = CloneTracker()
    seen: dict[int, dict[str, int]] = {}
    now = NOW
    for imei, imsi, step in sightings:
        now += step * SECOND  # time only moves forward
        text = f"51010000000000{imsi}"
        expected = unbounded_rule(seen, imei, text, now, threshold, window)
        assert tracker.observe(imei, text, now, threshold, window) == expected


def test_one_imei_keeps_threshold_plus_one_imsis_however_many_it_is_sent() -> None:
    tracker = CloneTracker()
    rng = random.Random(1)
    suspected = [
        tracker.observe(7, str(510_100_000_000_000 + rng.randrange(10**9)), NOW + i, 3, 86_400)
        for i in range(20_000)
    ]
    assert tracker.imsis_of(7) == 4 and tracker.sightings() == 4 and len(tracker) == 1
    assert suspected[:3] == [False] * 3 and all(suspected[3:])


def test_imeis_are_capped_least_recently_seen_first() -> None:
    tracker = CloneTracker(max_imeis=1_000)
    for key in range(10_000):
        tracker.observe(key, "510100000000001", NOW + key, 3, 86_400)
    assert len(tracker) == 1_000 and tracker.evicted == 9_000
    assert tracker.imsis_of(9_999) == 1 and tracker.imsis_of(0) == 0
    # An IMEI seen again moves to the back: the next newcomer evicts another.
    tracker.observe(9_000, "510100000000002", NOW + 10_000, 3, 86_400)
    tracker.observe(10_000, "510100000000001", NOW + 10_001, 3, 86_400)
    assert tracker.imsis_of(9_000) == 2 and tracker.imsis_of(9_001) == 0


def test_imeis_whose_sightings_left_the_window_are_dropped() -> None:
    tracker = CloneTracker()
    for key in range(100):
        tracker.observe(key, "510100000000001", NOW, 3, 60)
    later = NOW + 61 * SECOND
    for key in range(1_000, 1_200):  # now and then a sighting drops the stale IMEIs
        tracker.observe(key, "510100000000001", later, 3, 60)
    assert len(tracker) == 200 and tracker.expired == 100


def test_the_register_greylists_a_clone_with_a_bounded_tracker() -> None:
    state = ListState(Policy(clone_threshold=2, clone_window_seconds=60), clone_capacity=10)
    key = 35_209_900_176_148
    state.apply(Change(ChangeKind.WHITELIST_ADDED, key, sequence=1))
    imei = "352099001761481"
    answers = [state.decide(imei, f"51010000000000{n}", "", NOW + n)[0].status for n in range(3)]
    assert answers == [EquipmentStatus.WHITELISTED] * 2 + [EquipmentStatus.GREYLISTED]
    for other in range(100):  # a flood of other registered IMEIs
        state.apply(Change(ChangeKind.WHITELIST_ADDED, other + 1, sequence=state.sequence + 1))
        state.decide(full_imei(other + 1), "510100000000009", "", NOW + 10)
    assert len(state.clones) == 10  # the cap holds

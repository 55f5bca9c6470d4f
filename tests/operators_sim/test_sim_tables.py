"""The replica's building blocks against plain Python models: tables with
overlays and merges, clone tracking, IMEI parsing in batches."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ceir.compact import KeyTable, PairTable
from operators_sim.clones import CloneTracker
from operators_sim.codec import (
    MALFORMED_KEY,
    full_imei,
    imei_key,
    imei_keys,
    imsi_code,
    imsi_codes,
    imsi_text,
    roamer_mask,
)


@pytest.mark.parametrize("seed", range(5))
def test_key_table_behaves_like_a_dict_across_merges(seed: int) -> None:
    rng = np.random.default_rng(seed)
    table = KeyTable(np.int64)
    model: dict[int, int] = {}
    initial = np.unique(rng.integers(0, 500, 200).astype(np.uint64))
    table.load(initial, initial.astype(np.int64) * 10)
    model.update({int(k): int(k) * 10 for k in initial})
    merging = None
    for step in range(2_000):
        key = int(rng.integers(0, 500))
        if rng.random() < 0.6:
            table.put(key, step)
            model[key] = step
        else:
            table.delete(key)
            model.pop(key, None)
        if step % 97 == 0 and table.freeze():
            merging = (table.build_merged(), table.generation)
        if step % 97 == 50 and merging is not None:
            table.install(*merging)
            merging = None
        if step % 50 == 0:
            queries = np.arange(500, dtype=np.uint64)
            found, values = table.lookup(queries)
            assert [int(k) for k in queries[found]] == sorted(model)
            assert [int(v) for v in values[found]] == [model[k] for k in sorted(model)]
            assert len(table) == len(model)
    assert all(table.get(k) == v for k, v in model.items())


@pytest.mark.parametrize("seed", range(5))
def test_pair_table_behaves_like_a_dict_across_merges(seed: int) -> None:
    rng = np.random.default_rng(seed)
    table = PairTable()
    model: dict[tuple[int, int], int] = {}
    merging = None
    for step in range(2_000):
        key, imsi = int(rng.integers(0, 60)), int(rng.integers(1, 5))
        if rng.random() < 0.6:
            table.put(key, imsi, step)
            model[(key, imsi)] = step
        else:
            table.delete(key, imsi)
            model.pop((key, imsi), None)
        if step % 89 == 0 and table.freeze():
            merging = (table.build_merged(), table.generation)
        if step % 89 == 40 and merging is not None:
            table.install(*merging)
            merging = None
    for key in range(60):
        assert table.entries(key) == {i: v for (k, i), v in model.items() if k == key}
    queries = np.arange(100, dtype=np.uint64)
    candidates = table.key_candidates(queries)
    assert all(candidates[k] for k, _ in model)
    assert len(table) == len(model)


class ReferenceClones:
    """The register's rule, as ``ListState._looks_cloned`` states it."""

    def __init__(self) -> None:
        self.seen: dict[int, dict[int, int]] = {}

    def observe(self, key: int, imsi: int, now: int, threshold: int, window: int) -> bool:
        seen = self.seen.get(key)
        if seen is None:
            self.seen[key] = {imsi: now}
            return False
        seen[imsi] = now
        if len(seen) <= threshold:
            return False
        horizon = now - window * 1_000_000
        for other, last in list(seen.items()):
            if last < horizon:
                del seen[other]
        return len(seen) > threshold


@pytest.mark.parametrize("seed", range(6))
def test_clone_tracker_follows_the_registers_rule(seed: int) -> None:
    rng = np.random.default_rng(seed)
    tracker, reference = CloneTracker(recent_limit=64), ReferenceClones()
    threshold, window = int(rng.integers(1, 4)), 60
    now = 1_700_000_000_000_000
    for _ in range(300):
        size = int(rng.choice([1, 3, 16, 17, 200]))
        keys = rng.integers(0, 400, size).astype(np.uint64)
        # most keys keep one IMSI; a few (the clones) rotate through several
        imsis = np.where(keys < 20, rng.integers(1, 7, size), keys + 1000).astype(np.uint64)
        got = tracker.observe(keys, imsis, now, threshold, window)
        expected = [
            reference.observe(int(k), int(i), now, threshold, window)
            for k, i in zip(keys, imsis, strict=True)
        ]
        assert got.tolist() == expected
        now += int(rng.integers(0, 20)) * 1_000_000


imei_text = st.text(alphabet="0123456789x٣", min_size=0, max_size=18)


@given(st.lists(imei_text, min_size=0, max_size=40))
@settings(max_examples=200, deadline=None)
def test_batch_imei_parsing_equals_the_scalar_rule(values: list[str]) -> None:
    encoded = np.array([v.encode() for v in values], dtype=object)
    expected = [imei_key(v) for v in values]
    if any(not v.isascii() for v in values):
        return  # a network sends ASCII; the scalar rule alone covers the rest
    got = imei_keys(encoded.astype("S18") if values else np.array([], dtype="S16"))
    assert [None if k == MALFORMED_KEY else k for k in got.tolist()] == expected


def test_valid_imeis_of_every_form_parse_to_their_key() -> None:
    keys = [35209900000011, 86244105123456, 10000000000000]
    forms = [f"{k:014d}" for k in keys] + [full_imei(k) for k in keys]
    forms += [f"{k:014d}07" for k in keys]
    got = imei_keys(np.array([f.encode() for f in forms * 4], dtype="S16"))
    assert got.tolist() == keys * 12


def test_imsi_codes_round_trip_and_find_roamers() -> None:
    imsis = ["510101234567890", "525011234567890", "0510123456", "", "510891"]
    codes = imsi_codes(np.array([i.encode() for i in imsis], dtype="S15"))
    assert codes.tolist() == [imsi_code(i) for i in imsis]
    assert [imsi_text(c) for c in codes.tolist()] == imsis
    assert roamer_mask(codes).tolist() == [False, True, True, False, False]


@pytest.mark.parametrize("clustered", [False, True])
def test_indexed_lookups_of_a_large_table_find_exactly_its_keys(clustered: bool) -> None:
    rng = np.random.default_rng(7)
    if clustered:  # real IMEIs crowd into a few TACs
        tacs = rng.integers(35_000_000, 36_000_000, 5).astype(np.uint64)
        serials = rng.integers(0, 1_000_000, 100_000).astype(np.uint64)
        keys = np.unique(tacs[rng.integers(0, 5, 100_000)] * np.uint64(10**6) + serials)
    else:
        keys = np.unique(rng.integers(0, 10**14, 100_000).astype(np.uint64))
    table = KeyTable(np.uint32)
    table.load(keys, (keys % np.uint64(1000)).astype(np.uint32))
    queries = np.concatenate(
        [keys[::7], keys[::11] + np.uint64(1), np.array([0, 2**63], np.uint64)]
    )
    found, values = table.lookup(queries)
    assert found.tolist() == np.isin(queries, keys).tolist()
    assert (values[found] == (queries[found] % np.uint64(1000))).all()

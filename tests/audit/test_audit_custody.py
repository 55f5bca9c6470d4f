"""Custody leaves (CUSTODY_CHANGED): version 2 only, one shape, no list effect,
documented byte for byte in docs/trust.md and encoded alike by the operator
nodes' own encoder."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from pathlib import Path

import pytest

from ceir.api import convert
from ceir.audit.errors import LeafEncodingError
from ceir.audit.leaf import decode_leaf, encode_change, encode_leaf, leaf_view
from ceir.domain.custody_steps import CUSTODY_STEPS, custody_change, parse_custody_reason
from ceir.domain.lists import ListState
from ceir.domain.model import BlacklistCause, Change, ChangeKind, Policy
from ceir.storage.projection import ProjectedRows, rows_of
from ceir.v1 import types_pb2 as pb
from operators_sim.leaf import LeafError
from operators_sim.leaf import encode_leaf as node_encode_leaf

DOC = (Path(__file__).parents[2] / "docs" / "trust.md").read_text(encoding="utf-8")
REFERENCE = hashlib.sha256(b"ceir docs example policy: not a real one").hexdigest()
ANNOUNCED = replace(
    custody_change("ANNOUNCED", 1, REFERENCE, "kominfo"),
    sequence=5,
    committed_at_us=1_622_505_600_000_000,
)


def _section() -> str:
    start = DOC.index("### Custody leaves")
    return DOC[start : DOC.index("## Hashing and proofs", start)]


def test_the_documented_custody_leaf_is_its_encoding() -> None:
    blocks = re.findall(r"```\n(.*?)```", _section(), flags=re.DOTALL)
    annotated = "".join(
        re.match(r"([0-9a-f]+(?: [0-9a-f]+)*)\s{2,}", line).group(1).replace(" ", "")  # type: ignore[union-attr]
        for line in blocks[0].splitlines()
    )
    encoded = encode_change(ANNOUNCED)
    assert annotated == encoded.hex()
    assert blocks[1].strip() == encoded.hex()
    assert f"As one string, {len(encoded)} bytes" in _section()
    assert f"`{REFERENCE[:8]}…{REFERENCE[-8:]}`" in _section()


def test_the_documented_steps_are_the_code_s() -> None:
    sentence = re.search(r"The steps written as leaves are (.*?); the version", _section(), re.S)
    assert sentence is not None
    assert tuple(re.findall(r"`([A-Z]+)`", sentence.group(1))) == CUSTODY_STEPS


def test_a_custody_change_round_trips_through_its_leaf_and_its_message() -> None:
    assert decode_leaf(encode_change(ANNOUNCED)) == leaf_view(ANNOUNCED)
    message = convert.change(ANNOUNCED)
    assert message.kind == pb.CHANGE_KIND_CUSTODY_CHANGED
    assert (message.imei_key, message.reason, message.reference) == (
        "00000000000000",
        "ANNOUNCED 1",
        REFERENCE,
    )
    assert convert.change_from_pb(message) == ANNOUNCED
    assert node_encode_leaf(message) == encode_change(ANNOUNCED)


@pytest.mark.parametrize("step", CUSTODY_STEPS)
def test_every_step_reads_back(step: str) -> None:
    change = custody_change(step, 2**63 - 1, "", "telkomsel")
    assert parse_custody_reason(change.reason) == (step, 2**63 - 1)


@pytest.mark.parametrize(
    "reason",
    [
        "",
        "FROZEN",
        "FROZEN 01",
        "FROZEN  1",
        "frozen 1",
        "OPERATING 1",
        "FROZEN -1",
        "FROZEN 9223372036854775808",
        "FROZEN 1 ",
        "FROZEN ١",
    ],
)
def test_a_malformed_reason_is_refused(reason: str) -> None:
    with pytest.raises(ValueError):
        parse_custody_reason(reason)
    with pytest.raises(LeafEncodingError, match="custody reason"):
        encode_change(replace(ANNOUNCED, reason=reason))


def test_a_custody_change_has_no_version_1_leaf() -> None:
    with pytest.raises(LeafEncodingError, match="version 2 only"):
        encode_change(replace(ANNOUNCED, leaf_version=1))
    other = Change(ChangeKind.WHITELIST_REMOVED, imei_key=0, sequence=5, leaf_version=1)
    version_1 = bytearray(encode_change(other))
    version_1[1] = int(ChangeKind.CUSTODY_CHANGED)
    with pytest.raises(LeafEncodingError, match="version 2 only"):
        decode_leaf(bytes(version_1))
    with pytest.raises(LeafError, match="version 2 only"):
        node_encode_leaf(_with(convert.change(ANNOUNCED), leaf_version=1))


def _with(message: pb.ListChange, **fields: object) -> pb.ListChange:
    copy = pb.ListChange()
    copy.CopyFrom(message)
    for name, value in fields.items():
        setattr(copy, name, value)
    return copy


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("imei_key", None),
        ("imei_key", 35_209_900_176_148),
        ("reference", "AB" * 32),
        ("reference", "ab" * 31),
        ("actor", ""),
        ("device_id", "dev-1"),
        ("blacklist_cause", BlacklistCause.STOLEN),
        ("block_date_us", 1),
        ("policy", Policy()),
        ("device_imei_keys", (1,)),
        ("police_report", "LP/1"),
    ],
)
def test_a_custody_change_out_of_shape_is_refused(field: str, value: object) -> None:
    odd = replace(ANNOUNCED, **{field: value})  # type: ignore[arg-type]
    with pytest.raises(LeafEncodingError):
        encode_change(odd)
    with pytest.raises(LeafEncodingError):  # the checked path refuses it too
        encode_leaf(leaf_view(odd))
    with pytest.raises((LeafError, ValueError)):
        node_encode_leaf(convert.change(odd))


def test_a_decoder_refuses_a_custody_leaf_out_of_shape() -> None:
    # A custody leaf whose imei key is absent: the bytes of a well-formed
    # leaf of another kind with the kind byte set to 11.
    other = replace(ANNOUNCED, kind=ChangeKind.WHITELIST_REMOVED, imei_key=None)
    data = bytearray(encode_change(other))
    data[1] = int(ChangeKind.CUSTODY_CHANGED)
    with pytest.raises(LeafEncodingError, match="imei key 0"):
        decode_leaf(bytes(data))


def test_the_helper_refuses_what_the_encoder_would() -> None:
    with pytest.raises(ValueError, match="custody reason"):
        custody_change("OPERATING", 1, "", "telkomsel")
    with pytest.raises(ValueError, match="reference"):
        custody_change("FROZEN", 1, "not a digest", "telkomsel")


def test_a_custody_change_touches_no_list_and_moves_the_sequence() -> None:
    state = ListState(sequence=4)
    state.apply(ANNOUNCED)
    assert state.sequence == 5
    assert state.sizes() == ListState().sizes()
    assert rows_of(ANNOUNCED) == []
    rows = ProjectedRows()
    rows.apply(ANNOUNCED)
    assert all(not table for table in rows.rows.values())


def test_a_custody_change_is_numbered_by_the_write_unit() -> None:
    change: Change = custody_change("READY", 1, "", "ignored")
    assert (change.sequence, change.committed_at_us) == (0, 0)
    assert change.leaf_version == 2

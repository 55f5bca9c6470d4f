"""Leaf encoding version 1 (changes written before version 2): round trip,
canonicality, refusals, and the bytes of docs/trust.md, which never change."""

from __future__ import annotations

import re
import struct
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ceir.audit.errors import LeafEncodingError
from ceir.audit.leaf import decode_leaf, encode_change, encode_leaf, leaf_view
from ceir.domain.model import (
    BlacklistCause,
    Change,
    ChangeKind,
    Phase,
    Policy,
    RegistrationSource,
)

I64 = st.integers(-(2**63), 2**63 - 1)
U32 = st.integers(0, 2**32 - 1)
TEXT = st.text(max_size=40)

policies = st.builds(
    Policy,
    phase=st.sampled_from(Phase),
    grace_days=U32,
    clone_threshold=U32,
    clone_window_seconds=U32,
    updated_at_us=I64,
    updated_by=TEXT,
)

changes = st.builds(
    Change,
    # a custody change has no version 1 leaf (test_audit_custody.py)
    kind=st.sampled_from([kind for kind in ChangeKind if kind is not ChangeKind.CUSTODY_CHANGED]),
    imei_key=st.none() | st.integers(0, 10**14 - 1),
    imsi=TEXT,
    msisdn=TEXT,
    source=st.none() | st.sampled_from(RegistrationSource),
    valid_until_us=st.none() | I64,
    device_id=TEXT,
    blacklist_cause=st.none() | st.sampled_from(BlacklistCause),
    block_date_us=st.none() | I64,
    operator_mcc_mnc=TEXT,
    policy=st.none() | policies,
    sequence=st.integers(1, 2**64 - 1),
    committed_at_us=I64,
    actor=TEXT,
    # what version 1 does not record, so its leaf_view drops
    reference=TEXT,
    device_imei_keys=st.lists(st.integers(0, 10**14 - 1), max_size=3).map(tuple),
    reason=TEXT,
    subscriber_salt=st.binary(max_size=16),
    leaf_version=st.just(1),
)

# A tourist's phone whitelisted on 18 April 2020 until 17 July 2020 (docs/trust.md).
EXAMPLE = Change(
    kind=ChangeKind.WHITELIST_ADDED,
    imei_key=35_209_900_176_148,
    source=RegistrationSource.TOURIST,
    valid_until_us=1_594_944_000_000_000,
    device_id="dev-7",
    sequence=1,
    committed_at_us=1_587_168_000_123_456,
    actor="telkomsel",
    leaf_version=1,
)
EXAMPLE_HEX = (
    "01"  # version
    "01"  # kind WHITELIST_ADDED
    "0000000000000001"  # sequence 1
    "0005a38558d8a240"  # commit time 2020-04-18T00:00:00.123456Z
    "01"
    "00002005f197b314"  # imei key 35209900176148
    "01"
    "04"  # source TOURIST
    "01"
    "0005aa97d68e8000"  # valid until 2020-07-17T00:00:00Z
    "00"
    "00"  # no blacklist cause
    "00"
    "0000000000000000"  # no block date
    "00"
    "00"
    "00000000"
    "00000000"
    "00000000"
    "0000000000000000"  # no policy
    "0000"  # imsi ""
    "0000"  # msisdn ""
    "0005"
    "6465762d37"  # device id "dev-7"
    "0000"  # operator ""
    "0000"  # policy updated-by ""
)


@settings(max_examples=300)
@given(changes)
def test_decoding_an_encoded_change_gives_what_its_leaf_records(change: Change) -> None:
    leaf = decode_leaf(encode_change(change))
    assert leaf == leaf_view(change)
    assert (leaf.imsi, leaf.msisdn, leaf.actor, leaf.reference) == (
        change.imsi,
        change.msisdn,
        "",
        "",
    )


@settings(max_examples=300)
@given(changes, st.data())
def test_any_bytes_that_decode_are_the_one_encoding_of_their_change(
    change: Change, data: st.DataObject
) -> None:
    encoded = bytearray(encode_change(change))
    mutation = data.draw(st.sampled_from(["flip", "truncate", "extend", "insert"]))
    if mutation == "flip":
        position = data.draw(st.integers(0, len(encoded) - 1))
        encoded[position] ^= 1 << data.draw(st.integers(0, 7))
    elif mutation == "truncate":
        del encoded[data.draw(st.integers(0, len(encoded) - 1)) :]
    elif mutation == "extend":
        encoded += data.draw(st.binary(min_size=1, max_size=4))
    else:
        position = data.draw(st.integers(0, len(encoded)))
        encoded[position:position] = data.draw(st.binary(min_size=1, max_size=4))
    mutated = bytes(encoded)
    try:
        decoded = decode_leaf(mutated)
    except LeafEncodingError:
        return
    assert encode_leaf(decoded) == mutated
    assert decoded != leaf_view(change)


def test_the_documented_example_encodes_to_the_documented_bytes() -> None:
    assert encode_change(EXAMPLE).hex() == EXAMPLE_HEX
    assert decode_leaf(bytes.fromhex(EXAMPLE_HEX)) == leaf_view(EXAMPLE)


def test_fields_sit_at_the_documented_offsets() -> None:
    policy = Policy(
        phase=Phase.ENFORCE,
        grace_days=30,
        clone_threshold=3,
        clone_window_seconds=86_400,
        updated_at_us=-5,
        updated_by="kominfo",
    )
    change = Change(
        kind=ChangeKind.POLICY_CHANGED,
        policy=policy,
        sequence=7,
        committed_at_us=-1,
        imsi="510101234567890",
        leaf_version=1,
    )
    data = encode_change(change)
    assert data[0] == 1
    assert data[1] == ChangeKind.POLICY_CHANGED
    assert struct.unpack_from(">Qq", data, 2) == (7, -1)
    assert data[18:49] == bytes(31)  # five absent values
    assert struct.unpack_from(">BBIIIq", data, 49) == (1, 2, 30, 3, 86_400, -5)
    assert data[71:73] == b"\x00\x0f"
    assert data[73:88] == b"510101234567890"
    assert data[-9:] == b"\x00\x07kominfo"


def test_the_actor_and_the_version_2_fields_are_not_part_of_a_version_1_leaf() -> None:
    other = replace(EXAMPLE, actor="someone else", reference="TPP-1", reason="why")
    assert encode_change(EXAMPLE) == encode_change(other)
    with pytest.raises(LeafEncodingError, match=r"^actor is set, but leaf version 1"):
        encode_leaf(replace(leaf_view(EXAMPLE), actor="someone else"))


def test_an_empty_string_and_an_absent_value_encode_differently_from_zero() -> None:
    absent = Change(kind=ChangeKind.WHITELIST_REMOVED, sequence=1, leaf_version=1)
    zero = replace(absent, imei_key=0, valid_until_us=0, block_date_us=0)
    assert encode_change(absent) != encode_change(zero)
    assert decode_leaf(encode_change(zero)) == leaf_view(zero)


def test_non_ascii_text_is_length_prefixed_in_utf8_bytes() -> None:
    change = replace(EXAMPLE, device_id="perangkat-ü")
    data = encode_change(change)
    assert b"\x00\x0cperangkat-\xc3\xbc" in data
    assert decode_leaf(data) == leaf_view(change)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (replace(EXAMPLE, sequence=0), "sequence"),
        (replace(EXAMPLE, sequence=2**64), "sequence"),
        (replace(EXAMPLE, imei_key=10**14), "imei_key"),
        (replace(EXAMPLE, imei_key=-1), "imei_key"),
        (replace(EXAMPLE, committed_at_us=2**63), "committed_at_us"),
        (replace(EXAMPLE, valid_until_us=-(2**63) - 1), "valid_until_us"),
        (replace(EXAMPLE, kind=3), "kind"),  # type: ignore[arg-type]
        (replace(EXAMPLE, source=4), "source"),  # type: ignore[arg-type]
        (replace(EXAMPLE, device_id="\ud800"), "device_id"),
        (replace(EXAMPLE, imsi="1" * 65_536), "imsi"),
        (replace(EXAMPLE, policy=Policy(grace_days=2**32)), "policy.grace_days"),
        (replace(EXAMPLE, policy=Policy(updated_by="\udfff")), "policy.updated_by"),
    ],
)
def test_unencodable_values_are_refused_naming_the_field(change: Change, field: str) -> None:
    with pytest.raises(LeafEncodingError, match="^" + re.escape(field) + " "):
        encode_change(change)


def test_the_longest_string_fits() -> None:
    change = replace(EXAMPLE, device_id="x" * 65_535)
    assert decode_leaf(encode_change(change)) == leaf_view(change)


def _with(offset: int, value: bytes, data: bytes | None = None) -> bytes:
    raw = bytearray(encode_change(EXAMPLE) if data is None else data)
    raw[offset : offset + len(value)] = value
    return bytes(raw)


NON_CANONICAL = [
    (b"", "leaf is empty: no encoding version at offset 0"),
    (encode_change(EXAMPLE)[:70], "shorter than the 71-byte fixed part of version 1"),
    (
        _with(0, b"\x07"),
        r"^leaf encoding version 7 at offset 0 is not one this verifier knows \(1, 2\)$",
    ),
    (_with(0, b"\x00"), "leaf encoding version 0 at offset 0 is not one"),
    (_with(1, b"\x00"), "0 at offset 1 is not a ChangeKind"),
    (_with(1, b"\x0c"), "12 at offset 1 is not a ChangeKind"),
    (_with(1, b"\x0b"), "CUSTODY_CHANGED has leaf version 2 only, not version 1"),
    (_with(2, bytes(8)), "sequence at offset 2 is 0"),
    (_with(18, b"\x02"), "presence byte at offset 18 is 2"),
    (_with(19, struct.pack(">Q", 10**14)), "imei key 100000000000000 at offset 19"),
    (_with(28, b"\x07"), "7 at offset 28 is not a RegistrationSource"),
    (_with(38, b"\x00\x01"), "absent value after offset 38 has non-zero bytes"),
    (_with(51, b"\x01"), "absent value after offset 49 has non-zero bytes"),
    (encode_change(EXAMPLE) + b"\x00", "1 trailing bytes at offset 86"),
    (encode_change(EXAMPLE)[:-1], "ends at offset 85 before the length of policy.updated_by"),
    (_with(75, b"\xff\xff"), "device_id at offset 77 claims 65535 bytes"),
    (_with(77, b"\xff"), "device_id at offset 77 is not valid UTF-8"),
]


@pytest.mark.parametrize(
    ("data", "message"), NON_CANONICAL, ids=[message for _, message in NON_CANONICAL]
)
def test_non_canonical_bytes_are_refused_with_the_offset(data: bytes, message: str) -> None:
    with pytest.raises(LeafEncodingError, match=message):
        decode_leaf(data)


def test_an_absent_policy_must_have_no_updated_by() -> None:
    data = encode_change(replace(EXAMPLE, policy=Policy(updated_by="x")))
    data = _with(49, b"\x00" + bytes(21), data)
    with pytest.raises(LeafEncodingError, match="offset 49"):
        decode_leaf(data)


@given(changes)
def test_the_fast_path_gives_the_checked_path_s_bytes(change: Change) -> None:
    from ceir.audit import _leaf_v1

    fast = _leaf_v1.encode_plain(change)
    if fast is not None:
        assert fast == encode_leaf(leaf_view(change))

"""Leaf encoding version 2: provenance in the leaf, the subscriber as a salted commitment."""

from __future__ import annotations

import re
import struct
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ceir.audit import _leaf_v2
from ceir.audit.commitment import new_salt, subscriber_commitment
from ceir.audit.errors import LeafEncodingError
from ceir.audit.leaf import LEAF_VERSION, Leaf, decode_leaf, encode_change, encode_leaf, leaf_view
from ceir.domain.model import (
    BlacklistCause,
    Change,
    ChangeKind,
    Phase,
    Policy,
    RegistrationSource,
)

from ..test_convert_change import custody_changes
from .test_audit_leaf import EXAMPLE, I64, TEXT, policies

KEY = st.integers(0, 10**14 - 1)
SALT = bytes(range(16))


@st.composite
def subscribers(draw: st.DrawFn) -> dict[str, object]:
    """No subscriber, or an IMSI (with or without an MSISDN) and its row's salt."""
    if draw(st.booleans()):
        return {}
    return {
        "imsi": draw(TEXT.filter(bool)),
        "msisdn": draw(TEXT),
        "subscriber_salt": draw(st.binary(min_size=16, max_size=16)),
    }


def changes() -> st.SearchStrategy[Change]:
    """List and policy changes with any fields, and custody steps in their one shape."""
    return list_changes() | custody_changes()


@st.composite
def list_changes(draw: st.DrawFn) -> Change:
    change = draw(
        st.builds(
            Change,
            kind=st.sampled_from(
                [kind for kind in ChangeKind if kind is not ChangeKind.CUSTODY_CHANGED]
            ),
            imei_key=st.none() | KEY,
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
            reference=TEXT,
            brand=TEXT,
            model=TEXT,
            device_imei_keys=st.lists(KEY, max_size=16).map(tuple),
            police_report=TEXT,
            reason=TEXT,
        )
    )
    return replace(change, **draw(subscribers()))  # type: ignore[arg-type]


NOTIFIED = Change(
    kind=ChangeKind.NOTIFICATION_NEW,
    imei_key=35_693_803_564_380,
    imsi="510101234567890",
    msisdn="6281234567890",
    block_date_us=1_617_178_530_250_000,
    operator_mcc_mnc="510-10",
    sequence=3,
    committed_at_us=1_614_586_530_250_000,
    actor="telkomsel",
    subscriber_salt=SALT,
)


@settings(max_examples=300, deadline=None)  # slow under a loaded test machine
@given(changes())
def test_decoding_an_encoded_change_gives_what_its_leaf_records(change: Change) -> None:
    leaf = decode_leaf(encode_change(change))
    assert leaf == leaf_view(change)
    assert leaf.leaf_version == 2
    assert (leaf.imsi, leaf.msisdn) == ("", "")
    assert (leaf.actor, leaf.reference, leaf.device_imei_keys, leaf.reason) == (
        change.actor,
        change.reference,
        change.device_imei_keys,
        change.reason,
    )


@settings(max_examples=300, deadline=None)  # slow under a loaded test machine
@given(changes(), st.data())
def test_any_bytes_that_decode_are_the_one_encoding_of_their_leaf(
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


@given(changes())
def test_the_fast_path_gives_the_checked_path_s_bytes(change: Change) -> None:
    fast = _leaf_v2.encode_plain(change)
    if fast is not None:
        assert fast == encode_leaf(leaf_view(change))


def test_new_changes_get_version_2_leaves() -> None:
    change = Change(kind=ChangeKind.WHITELIST_REMOVED, imei_key=1, sequence=1)
    assert change.leaf_version == LEAF_VERSION == 2
    assert encode_change(change)[0] == 2


def test_fields_sit_at_the_documented_offsets() -> None:
    policy = Policy(
        phase=Phase.ENFORCE,
        grace_days=30,
        clone_threshold=3,
        clone_window_seconds=86_400,
        updated_at_us=-5,
        updated_by="kominfo",
    )
    change = replace(
        NOTIFIED,
        policy=policy,
        device_imei_keys=(35_693_803_564_380, 1),
        device_id="d",
        reference="r",
        brand="b",
        model="m",
        police_report="p",
        reason="why",
    )
    data = encode_change(change)
    assert struct.unpack_from(">BBQq", data) == (2, 5, 3, 1_614_586_530_250_000)
    assert data[18:27] == b"\x01" + (35_693_803_564_380).to_bytes(8, "big")
    assert struct.unpack_from(">BBIIIq", data, 49) == (1, 2, 30, 3, 86_400, -5)
    assert data[71] == 1
    assert data[72:104] == subscriber_commitment(SALT, NOTIFIED.imsi, NOTIFIED.msisdn)
    assert data[104] == 2
    assert struct.unpack_from(">QQ", data, 105) == (35_693_803_564_380, 1)
    assert data[121:] == (
        b"\x00\x09telkomsel\x00\x01d\x00\x06510-10\x00\x01r\x00\x01b\x00\x01m"
        b"\x00\x01p\x00\x03why\x00\x07kominfo"
    )


def test_the_imsi_and_msisdn_are_never_in_a_version_2_leaf_in_clear() -> None:
    data = encode_change(NOTIFIED)
    assert NOTIFIED.imsi.encode() not in data
    assert NOTIFIED.msisdn.encode() not in data
    assert SALT not in data
    leaf = decode_leaf(data)
    assert (leaf.imsi, leaf.msisdn) == ("", "")


def test_the_commitment_is_present_exactly_when_the_change_has_an_imsi() -> None:
    with_imsi = encode_change(NOTIFIED)
    assert with_imsi[71] == 1
    assert decode_leaf(with_imsi).subscriber_commitment == subscriber_commitment(
        SALT, NOTIFIED.imsi, NOTIFIED.msisdn
    )
    without = encode_change(replace(NOTIFIED, imsi="", msisdn="", subscriber_salt=b""))
    assert without[71:104] == bytes(33)
    assert decode_leaf(without).subscriber_commitment == b""
    no_msisdn = encode_change(replace(NOTIFIED, msisdn=""))
    assert no_msisdn[71] == 1
    assert no_msisdn[72:104] != with_imsi[72:104]


def test_the_salt_makes_the_commitment_of_one_subscriber_differ_per_row() -> None:
    first = leaf_view(replace(NOTIFIED, subscriber_salt=new_salt()))
    second = leaf_view(replace(NOTIFIED, subscriber_salt=new_salt()))
    assert first.subscriber_commitment != second.subscriber_commitment
    # a change that ends the row reuses its salt, so its commitment matches the start's
    resolved = replace(NOTIFIED, kind=ChangeKind.NOTIFICATION_RESOLVED, sequence=9)
    assert leaf_view(resolved).subscriber_commitment == leaf_view(NOTIFIED).subscriber_commitment


@pytest.mark.parametrize("length", [0, 15, 17, 32])
def test_an_imsi_needs_a_16_byte_salt(length: int) -> None:
    change = replace(NOTIFIED, subscriber_salt=bytes(length))
    with pytest.raises(LeafEncodingError, match=f"^subscriber_salt is {length} bytes, expected 16"):
        encode_change(change)
    with pytest.raises(LeafEncodingError, match="expected 16"):
        leaf_view(change)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (replace(NOTIFIED, imsi=""), "^msisdn is set but imsi is empty"),
        (replace(NOTIFIED, imsi="", msisdn=""), "^subscriber_salt is set but imsi is empty"),
        (replace(NOTIFIED, imsi="\ud800"), "^imsi '\\\\ud800' is not encodable"),
        (replace(NOTIFIED, msisdn="1" * 65_536), "^msisdn is 65536 UTF-8 bytes"),
        (replace(NOTIFIED, subscriber_salt="0" * 16), "^subscriber_salt must be bytes"),  # type: ignore[arg-type]
        (replace(NOTIFIED, device_imei_keys=(0,) * 17), "^device_imei_keys holds 17 keys"),
        (replace(NOTIFIED, device_imei_keys=(0, 10**14)), r"^device_imei_keys\[1\] is "),
        (replace(NOTIFIED, actor="x" * 65_536), "^actor is 65536 UTF-8 bytes"),
        (replace(NOTIFIED, reason="\udfff"), "^reason '"),
        (replace(NOTIFIED, sequence=0), "^sequence "),
        (
            replace(NOTIFIED, leaf_version=3),
            r"^leaf_version 3 is not one this encoder knows \(1, 2\)",
        ),
    ],
)
def test_unencodable_changes_are_refused_naming_the_field(change: Change, message: str) -> None:
    with pytest.raises(LeafEncodingError, match=message):
        encode_change(change)


def test_sixteen_slot_keys_fit() -> None:
    change = replace(NOTIFIED, device_imei_keys=tuple(range(16)))
    assert decode_leaf(encode_change(change)).device_imei_keys == tuple(range(16))


@pytest.mark.parametrize(
    ("leaf", "message"),
    [
        (replace(leaf_view(NOTIFIED), imsi="510101234567890"), "^imsi is set, but leaf version 2"),
        (replace(leaf_view(NOTIFIED), msisdn="1"), "^msisdn is set, but leaf version 2"),
        (replace(leaf_view(NOTIFIED), subscriber_commitment=bytes(31)), "32 bytes or empty"),
        (replace(leaf_view(NOTIFIED), leaf_version=0), "^leaf_version 0 is not one"),
    ],
)
def test_a_leaf_that_its_version_cannot_hold_is_refused(leaf: Leaf, message: str) -> None:
    with pytest.raises(LeafEncodingError, match=message):
        encode_leaf(leaf)


def _with(offset: int, value: bytes, data: bytes | None = None) -> bytes:
    raw = bytearray(encode_change(NOTIFIED) if data is None else data)
    raw[offset : offset + len(value)] = value
    return bytes(raw)


TWO_SLOTS = encode_change(replace(NOTIFIED, device_imei_keys=(1, 2)))
NO_SUBSCRIBER = encode_change(replace(NOTIFIED, imsi="", msisdn="", subscriber_salt=b""))
NON_CANONICAL = [
    (encode_change(NOTIFIED)[:104], "104 bytes, shorter than the 105-byte fixed part of version 2"),
    (_with(71, b"\x02"), "presence byte at offset 71 is 2"),
    (_with(103, b"\x01", NO_SUBSCRIBER), "absent value after offset 71 has non-zero bytes"),
    (_with(104, b"\x11"), "device slot count 17 at offset 104 is more than 16"),
    (TWO_SLOTS[:115], "leaf ends at offset 115 inside its 2 device slot keys"),
    (_with(113, struct.pack(">Q", 10**14), TWO_SLOTS), "imei key 100000000000000 at offset 113"),
    (_with(105, b"\xff\xff"), "actor at offset 107 claims 65535 bytes, only 31 remain"),
    (encode_change(NOTIFIED) + b"\x00", "1 trailing bytes at offset 138"),
    (encode_change(NOTIFIED)[:-1], "ends at offset 137 before the length of policy.updated_by"),
    (_with(50, b"\x01"), "absent value after offset 49 has non-zero bytes"),
    (_with(0, b"\x01"), "imsi at offset 73 claims"),  # read as version 1
]


@pytest.mark.parametrize(
    ("data", "message"), NON_CANONICAL, ids=[message for _, message in NON_CANONICAL]
)
def test_non_canonical_bytes_are_refused_with_the_offset(data: bytes, message: str) -> None:
    with pytest.raises(LeafEncodingError, match=re.escape(message)):
        decode_leaf(data)


def test_the_version_1_example_is_a_different_leaf_in_version_2() -> None:
    as_v2 = replace(EXAMPLE, leaf_version=2)
    assert encode_change(as_v2) != encode_change(EXAMPLE)
    assert decode_leaf(encode_change(as_v2)).actor == "telkomsel"
    assert decode_leaf(encode_change(EXAMPLE)).actor == ""

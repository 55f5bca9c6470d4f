"""The node's own leaf encoding reproduces docs/trust.md byte for byte.

This is the interop check of the spec: ``operators_sim.leaf`` was written
from the page, not from the server's encoder, and must give the page's
worked examples of both encodings (bytes, leaf hashes, roots, the subscriber
commitment), from the clear view and from the commitment-only view, and
agree with the signed example checkpoint and with the server's encoder.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import replace
from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given, settings
from hypothesis import strategies as st

from ceir.api import convert
from ceir.audit.checkpoint import open_checkpoint
from ceir.audit.leaf import encode_change
from ceir.audit.merkle import Frontier
from ceir.audit.note import Verifier
from ceir.domain.model import Change, ChangeKind
from ceir.v1 import types_pb2 as pb
from operators_sim.leaf import LeafError, encode_leaf, leaf_hash, subscriber_commitment

from ..test_convert_change import changes

TRUST = (Path(__file__).parents[2] / "docs" / "trust.md").read_text(encoding="utf-8")
EXAMPLE_KEY = "ceir.example/changes+ccca3833+AVMzy7x5ruhgtYJsVvEMs4cMVAGUoiV12Hl/37osWgGv"


def _stamp(micros: int) -> Timestamp:
    return Timestamp(seconds=micros // 1_000_000, nanos=micros % 1_000_000 * 1_000)


def _example_changes() -> list[pb.ListChange]:
    first = pb.ListChange(
        sequence=1,
        kind=pb.CHANGE_KIND_WHITELIST_ADDED,
        imei_key="35209900176148",
        commit_time=_stamp(1587168000123456),
        source=pb.REGISTRATION_SOURCE_TOURIST,
        valid_until=_stamp(1594944000000000),
        device_id="dev-7",
    )
    second = pb.ListChange(
        sequence=2,
        kind=pb.CHANGE_KIND_BLACKLIST_BLOCKED,
        imei_key="35209900176148",
        commit_time=_stamp(1587254400000000),
        blacklist_cause=pb.BLACKLIST_CAUSE_STOLEN,
    )
    return [first, second]


SALT = bytes(range(16))
COMMITMENT = "d1bc772a707d137d721ca116d114fd2efcb43149b2a64c29c94b0d2e12828d46"


def _notified(view: str) -> pb.ListChange:
    """Change 3 of the version 2 example, as a receiver in ``view`` gets it:
    "clear" (the subscriber's operator: numbers, salt and commitment),
    "salt" (numbers and salt, no commitment), "commitment" (everyone else)."""
    change = pb.ListChange(
        sequence=3,
        kind=pb.CHANGE_KIND_NOTIFICATION_NEW,
        imei_key="35693803564380",
        commit_time=_stamp(1614586530250000),
        block_date=_stamp(1617178530250000),
        operator_mcc_mnc="510-10",
        leaf_version=2,
        actor="telkomsel",
    )
    if view in ("clear", "salt"):
        change.imsi, change.msisdn, change.subscriber_salt = (
            "510101234567890",
            "6281234567890",
            SALT,
        )
    if view in ("clear", "commitment"):
        change.subscriber_commitment = bytes.fromhex(COMMITMENT)
    return change


def _registered() -> pb.ListChange:
    """Change 4 of the version 2 example: a dual-SIM device registered."""
    return pb.ListChange(
        sequence=4,
        kind=pb.CHANGE_KIND_WHITELIST_ADDED,
        imei_key="35693803564380",
        commit_time=_stamp(1614679200000000),
        source=pb.REGISTRATION_SOURCE_TPP_IMPORT,
        device_id="dev-42",
        leaf_version=2,
        actor="kemenperin",
        reference="TPP-IMP/2021/000417",
        brand="Contoh",
        model="C2 Duo",
        device_imei_keys=["35693803564380", "35693803564398"],
    )


def _documented(label: str) -> str:
    """The hex string of a worked example line of docs/trust.md."""
    found = re.search(rf"{label}\s+([0-9a-f]{{64}})", TRUST)
    assert found, label
    return found.group(1)


def test_the_worked_example_encodes_byte_for_byte() -> None:
    blocks = re.findall(r"```\n(01[0-9a-f]{100,})\n```", TRUST)
    assert len(blocks) == 2
    first, second = _example_changes()
    assert encode_leaf(first).hex() == blocks[0]
    assert len(encode_leaf(first)) == 86
    assert encode_leaf(second).hex() == blocks[1]


def test_the_worked_example_hashes_to_the_documented_root() -> None:
    first, second = _example_changes()
    assert leaf_hash(first).hex() == _documented("leaf hash of change 1")
    assert leaf_hash(second).hex() == _documented("leaf hash of change 2")
    frontier = Frontier()
    frontier.extend([leaf_hash(first), leaf_hash(second)])
    assert frontier.root().hex() == _documented("root of size 2")


def test_the_documented_checkpoint_verifies_and_commits_to_the_example() -> None:
    found = re.search(r"```\n(ceir\.example/changes\n2\n.*?)```", TRUST, re.S)
    assert found
    checkpoint = open_checkpoint(
        found.group(1), [Verifier.from_vkey(EXAMPLE_KEY)], "ceir.example/changes"
    )
    frontier = Frontier()
    frontier.extend(leaf_hash(c) for c in _example_changes())
    assert checkpoint.root_hash == frontier.root()
    assert base64.b64encode(checkpoint.root_hash).decode() in TRUST


def test_version_0_from_an_older_server_and_version_1_give_the_same_bytes() -> None:
    first, _ = _example_changes()
    explicit = pb.ListChange()
    explicit.CopyFrom(first)
    explicit.leaf_version = 1
    assert encode_leaf(explicit) == encode_leaf(first)


@pytest.mark.parametrize("view", ["clear", "salt", "commitment"])
def test_the_version_2_example_encodes_byte_for_byte_in_every_view(view: str) -> None:
    blocks = re.findall(r"```\n(02[0-9a-f]{100,})\n```", TRUST)
    assert len(blocks) == 3  # changes 3 and 4, then the custody leaf
    notified = _notified(view)
    assert encode_leaf(notified).hex() == blocks[0]
    assert len(encode_leaf(notified)) == 138
    assert encode_leaf(_registered()).hex() == blocks[1]
    assert leaf_hash(notified).hex() == _documented("leaf hash of change 3")
    assert leaf_hash(_registered()).hex() == _documented("leaf hash of change 4")


def test_the_custody_example_encodes_byte_for_byte() -> None:
    blocks = re.findall(r"```\n(02[0-9a-f]{100,})\n```", TRUST)
    announced = pb.ListChange(
        sequence=5,
        kind=pb.CHANGE_KIND_CUSTODY_CHANGED,
        imei_key="00000000000000",
        commit_time=_stamp(1622505600000000),
        leaf_version=2,
        actor="kominfo",
        reason="ANNOUNCED 1",
        reference=hashlib.sha256(b"ceir docs example policy: not a real one").hexdigest(),
    )
    assert encode_leaf(announced).hex() == blocks[2]
    odd = pb.ListChange()
    odd.CopyFrom(announced)
    odd.reason = "OPERATING 1"
    with pytest.raises(LeafError, match="custody reason"):
        encode_leaf(odd)
    odd.CopyFrom(announced)
    odd.leaf_version = 1
    with pytest.raises(LeafError, match="version 2 only"):
        encode_leaf(odd)


def test_the_documented_commitment_is_reproduced() -> None:
    found = re.search(r"The hashed bytes, 67 of them:\n\n```\n([0-9a-f]+)\n```", TRUST)
    assert found
    commitment = subscriber_commitment(SALT, "510101234567890", "6281234567890")
    assert hashlib.sha256(bytes.fromhex(found.group(1))).digest() == commitment
    assert commitment.hex() == COMMITMENT == _documented("commitment")


def test_the_mixed_example_log_hashes_to_the_documented_root() -> None:
    frontier = Frontier()
    changes = [*_example_changes(), _notified("commitment"), _registered()]
    frontier.extend(leaf_hash(change) for change in changes)
    assert frontier.root().hex() == _documented("root of size 4")


def _refused(change: pb.ListChange, message: str) -> None:
    with pytest.raises(LeafError, match=message):
        encode_leaf(change)


def test_an_imsi_without_commitment_or_salt_is_refused() -> None:
    change = _notified("clear")
    change.ClearField("subscriber_commitment")
    change.ClearField("subscriber_salt")
    _refused(change, "neither a subscriber_commitment nor a subscriber_salt")


def test_a_commitment_that_does_not_match_the_numbers_is_refused() -> None:
    change = _notified("clear")
    change.msisdn = "6281234567891"
    _refused(change, "does not match")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("leaf_version", 3, r"leaf_version 3 is not one this node knows \(1, 2\)"),
        ("subscriber_salt", bytes(15), "subscriber_salt is 15 bytes, expected 16"),
        ("subscriber_commitment", bytes(31), "subscriber_commitment is 31 bytes"),
        ("imsi", "", "an msisdn without an imsi"),
    ],
)
def test_unencodable_version_2_changes_are_refused(field: str, value: object, message: str) -> None:
    change = _notified("clear")
    if field == "subscriber_salt":
        change.ClearField("subscriber_commitment")
    setattr(change, field, value)
    _refused(change, message)


def test_more_than_16_slot_keys_are_refused() -> None:
    change = _registered()
    change.device_imei_keys.extend(["35693803564398"] * 15)
    _refused(change, "17 device_imei_keys, at most 16")


def test_a_policy_change_writes_its_fields_and_updated_by() -> None:
    change = pb.ListChange(
        sequence=3,
        kind=pb.CHANGE_KIND_POLICY_CHANGED,
        commit_time=_stamp(1_000_000),
        policy=pb.Policy(
            phase=pb.PHASE_ENFORCE,
            grace_days=7,
            clone_threshold=3,
            clone_window_seconds=86_400,
            update_time=_stamp(1_000_000),
            updated_by="kominfo",
        ),
    )
    data = encode_leaf(change)
    assert data[49] == 1 and data[50] == pb.PHASE_ENFORCE
    assert int.from_bytes(data[51:55], "big") == 7
    assert int.from_bytes(data[63:71], "big") == 1_000_000
    assert data.endswith(b"\x00\x07kominfo")


@pytest.mark.parametrize("key", ["3520990017614", "35209900176148x", "abcdefghijklmn"])
def test_a_key_that_is_not_14_digits_is_refused(key: str) -> None:
    with pytest.raises(LeafError, match="14 digits"):
        encode_leaf(pb.ListChange(sequence=1, kind=pb.CHANGE_KIND_WHITELIST_ADDED, imei_key=key))


@settings(max_examples=100)
@given(changes(), st.sampled_from([1, 2]))
def test_the_node_and_the_register_encode_every_change_alike(value: Change, version: int) -> None:
    if value.kind is ChangeKind.CUSTODY_CHANGED:
        version = 2  # a custody change has no version 1 leaf
    value = replace(value, leaf_version=version)
    if version == 1:
        value = replace(value, subscriber_salt=b"")
    expected = encode_change(value)
    assert encode_leaf(convert.change(value)) == expected
    assert encode_leaf(convert.change(value, clear=False)) == expected

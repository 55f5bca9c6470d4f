"""The node's own leaf encoding reproduces docs/trust.md byte for byte.

This is the interop check of the spec: ``operators_sim.leaf`` was written
from the page, not from the server's encoder, and must give the page's
worked example (bytes, leaf hashes, root) and agree with the signed example
checkpoint.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from ceir.audit.checkpoint import open_checkpoint
from ceir.audit.merkle import Frontier
from ceir.audit.note import Verifier
from ceir.v1 import types_pb2 as pb
from operators_sim.leaf import LeafError, encode_leaf, leaf_hash

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

"""The leaf of a change, rebuilt from the public ``ceir.v1.ListChange``.

``docs/trust.md`` ("The leaf: one change, canonical bytes") fixes the bytes;
this module follows it field by field, as an integration team writing its
own EIR would, instead of borrowing the server's encoder (which works on the
server's internal change type). ``tests/operators_sim/test_sim_leaf.py``
reproduces the page's worked example byte for byte: the interop check of
the spec.
"""

from __future__ import annotations

import hashlib
import struct

from google.protobuf.timestamp_pb2 import Timestamp

from ceir.v1 import types_pb2 as pb

LEAF_VERSION = 1
IMEI_KEY_LIMIT = 10**14

# version, kind, sequence, commit time, then (presence, value) for the imei
# key, source, valid-until, blacklist cause, block date, then the policy:
# presence, phase, grace days, clone threshold, clone window, update time.
_FIXED = struct.Struct(">BBQqBQBBBqBBBqBBIIIq")
_EMPTY_STRING = b"\x00\x00"


class LeafError(ValueError):
    """A change cannot be encoded (an IMEI key that is not 14 digits, a string
    longer than 65,535 bytes): the node refuses it."""


def _micros(stamp: Timestamp) -> int:
    return stamp.seconds * 1_000_000 + stamp.nanos // 1_000


def _string(text: str, what: str, sequence: int) -> bytes:
    if not text:
        return _EMPTY_STRING
    data = text.encode("utf-8")
    if len(data) > 0xFFFF:
        raise LeafError(f"change {sequence}: {what} is {len(data)} bytes, at most 65,535")
    return len(data).to_bytes(2, "big") + data


def encode_leaf(change: pb.ListChange) -> bytes:
    """The canonical bytes of a change (encoding version 1)."""
    sequence = change.sequence
    key_text = change.imei_key
    if key_text:
        if len(key_text) != 14 or not key_text.isdigit():
            raise LeafError(f"change {sequence}: imei_key {key_text!r} is not 14 digits")
        key = int(key_text)
    else:
        key = 0
    has_valid = change.HasField("valid_until")
    has_block = change.HasField("block_date")
    has_policy = change.HasField("policy")
    policy = change.policy
    fixed = _FIXED.pack(
        LEAF_VERSION,
        change.kind,
        sequence,
        _micros(change.commit_time),
        1 if key_text else 0,
        key,
        1 if change.source else 0,
        change.source,
        1 if has_valid else 0,
        _micros(change.valid_until) if has_valid else 0,
        1 if change.blacklist_cause else 0,
        change.blacklist_cause,
        1 if has_block else 0,
        _micros(change.block_date) if has_block else 0,
        1 if has_policy else 0,
        policy.phase if has_policy else 0,
        policy.grace_days if has_policy else 0,
        policy.clone_threshold if has_policy else 0,
        policy.clone_window_seconds if has_policy else 0,
        _micros(policy.update_time) if has_policy and policy.HasField("update_time") else 0,
    )
    return b"".join(
        (
            fixed,
            _string(change.imsi, "imsi", sequence),
            _string(change.msisdn, "msisdn", sequence),
            _string(change.device_id, "device_id", sequence),
            _string(change.operator_mcc_mnc, "operator_mcc_mnc", sequence),
            _string(policy.updated_by if has_policy else "", "policy.updated_by", sequence),
        )
    )


def leaf_hash(change: pb.ListChange) -> bytes:
    """RFC 6962 leaf hash of the change: SHA-256(0x00 || leaf bytes)."""
    return hashlib.sha256(b"\x00" + encode_leaf(change)).digest()

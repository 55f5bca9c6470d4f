"""The leaf of a change, rebuilt from the public ``ceir.v1.ListChange``.

``docs/trust.md`` ("The leaf: one change, canonical bytes" and "Subscriber
commitments") fixes the bytes; this module follows it field by field, as an
integration team writing its own EIR would, instead of borrowing the
server's encoder (which works on the server's internal change type).
``tests/operators_sim/test_sim_leaf.py`` reproduces the page's worked
examples byte for byte: the interop check of the spec.

A change's ``leaf_version`` names its encoding: 0 (a server from before
version 2 never sets it) and 1 are version 1, 2 is version 2. A version 2
leaf holds the ``subscriber_commitment`` the message carries; a node that
was given the IMSI, MSISDN and salt instead can compute it (and checks a
given commitment against them), and a node given only the commitment needs
nothing else.
"""

from __future__ import annotations

import hashlib
import re
import struct

from google.protobuf.timestamp_pb2 import Timestamp

from ceir.v1 import types_pb2 as pb

LEAF_VERSIONS = (1, 2)
IMEI_KEY_LIMIT = 10**14
MAX_SLOT_KEYS = 16
SALT_BYTES = 16
COMMITMENT_BYTES = 32
COMMITMENT_DOMAIN = b"ceir/subscriber/v1\x00"

# Offsets 0 to 70, the same in both versions: version, kind, sequence,
# commit time, then (presence, value) for the imei key, source, valid-until,
# blacklist cause, block date, then the policy: presence, phase, grace days,
# clone threshold, clone window, update time.
_COMMON = ">BBQqBQBBBqBBBqBBIIIq"
_FIXED_V1 = struct.Struct(_COMMON)
# Version 2 goes on with the commitment (presence, 32 bytes) and the number
# of device slot keys.
_FIXED_V2 = struct.Struct(_COMMON + "B32sB")
_EMPTY_STRING = b"\x00\x00"
# A custody leaf (docs/trust.md, "Custody leaves"): reason "<step> <policy
# version>", reference a lowercase hex SHA-256 or empty, IMEI key 0.
_CUSTODY_STEPS = ("ANNOUNCED", "READY", "FROZEN", "ABORTED", "ACTIVE", "RETIRED")
_CUSTODY_REASON = re.compile(r"([A-Z]+) (0|[1-9][0-9]{0,18})")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_CUSTODY_UNUSED = (
    "imsi",
    "msisdn",
    "device_id",
    "operator_mcc_mnc",
    "brand",
    "model",
    "police_report",
    "subscriber_commitment",
    "subscriber_salt",
    "source",
    "blacklist_cause",
    "device_imei_keys",
)


class LeafError(ValueError):
    """A change cannot be encoded (an IMEI key that is not 14 digits, a string
    longer than 65,535 bytes, an unknown leaf version, a subscriber without a
    commitment or salt): the node refuses it."""


def _micros(stamp: Timestamp) -> int:
    return stamp.seconds * 1_000_000 + stamp.nanos // 1_000


def _string(text: str, what: str, sequence: int) -> bytes:
    if not text:
        return _EMPTY_STRING
    data = text.encode("utf-8")
    if len(data) > 0xFFFF:
        raise LeafError(f"change {sequence}: {what} is {len(data)} bytes, at most 65,535")
    return len(data).to_bytes(2, "big") + data


def _key(text: str, what: str, sequence: int) -> int:
    if len(text) != 14 or not text.isdigit() or not text.isascii():
        raise LeafError(f"change {sequence}: {what} {text!r} is not 14 digits")
    return int(text)


def encode_leaf(change: pb.ListChange) -> bytes:
    """The canonical bytes of a change, in the encoding its ``leaf_version`` names."""
    version = change.leaf_version or 1
    if change.kind == pb.CHANGE_KIND_CUSTODY_CHANGED:
        _check_custody(change, version)
    if version == 1:
        return _encode_v1(change)
    if version == 2:
        return _encode_v2(change)
    raise LeafError(
        f"change {change.sequence}: leaf_version {version} is not one this node knows (1, 2)"
    )


def _check_custody(change: pb.ListChange, version: int) -> None:
    """Refuse a custody change in any shape but the one docs/trust.md gives."""
    sequence = change.sequence
    if version != 2:
        raise LeafError(f"change {sequence}: a custody change has leaf version 2 only")
    if change.imei_key != "0" * 14:
        raise LeafError(f"change {sequence}: a custody change has imei_key 00000000000000")
    unused = [name for name in _CUSTODY_UNUSED if getattr(change, name)]
    unused += [name for name in ("valid_until", "block_date", "policy") if change.HasField(name)]
    if unused:
        raise LeafError(f"change {sequence}: a custody change does not carry {unused[0]}")
    match = _CUSTODY_REASON.fullmatch(change.reason)
    if match is None or match[1] not in _CUSTODY_STEPS or int(match[2]) >= 2**63:
        raise LeafError(f"change {sequence}: custody reason {change.reason!r} is malformed")
    if change.reference and not _SHA256_HEX.fullmatch(change.reference):
        raise LeafError(f"change {sequence}: custody reference is not a hex SHA-256")
    if not change.actor:
        raise LeafError(f"change {sequence}: a custody change names its actor")


def _common(change: pb.ListChange, version: int) -> tuple[int, ...]:
    """Offsets 0 to 70."""
    sequence = change.sequence
    key = _key(change.imei_key, "imei_key", sequence) if change.imei_key else 0
    has_valid = change.HasField("valid_until")
    has_block = change.HasField("block_date")
    has_policy = change.HasField("policy")
    policy = change.policy
    return (
        version,
        change.kind,
        sequence,
        _micros(change.commit_time),
        1 if change.imei_key else 0,
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


def _updated_by(change: pb.ListChange) -> str:
    return change.policy.updated_by if change.HasField("policy") else ""


def _encode_v1(change: pb.ListChange) -> bytes:
    """Version 1: the fixed part, then imsi, msisdn, device id, MCC-MNC, updated-by."""
    sequence = change.sequence
    return b"".join(
        (
            _FIXED_V1.pack(*_common(change, 1)),
            _string(change.imsi, "imsi", sequence),
            _string(change.msisdn, "msisdn", sequence),
            _string(change.device_id, "device_id", sequence),
            _string(change.operator_mcc_mnc, "operator_mcc_mnc", sequence),
            _string(_updated_by(change), "policy.updated_by", sequence),
        )
    )


def _encode_v2(change: pb.ListChange) -> bytes:
    """Version 2: the fixed part with the commitment and slot count, the slot
    keys, then nine strings."""
    sequence = change.sequence
    commitment = leaf_commitment(change)
    slots = [_key(text, "device_imei_keys", sequence) for text in change.device_imei_keys]
    if len(slots) > MAX_SLOT_KEYS:
        raise LeafError(
            f"change {sequence}: {len(slots)} device_imei_keys, at most {MAX_SLOT_KEYS}"
        )
    texts = (
        ("actor", change.actor),
        ("device_id", change.device_id),
        ("operator_mcc_mnc", change.operator_mcc_mnc),
        ("reference", change.reference),
        ("brand", change.brand),
        ("model", change.model),
        ("police_report", change.police_report),
        ("reason", change.reason),
        ("policy.updated_by", _updated_by(change)),
    )
    return b"".join(
        (
            _FIXED_V2.pack(
                *_common(change, 2), 1 if commitment else 0, commitment or bytes(32), len(slots)
            ),
            b"".join(key.to_bytes(8, "big") for key in slots),
            *(_string(text, what, sequence) for what, text in texts),
        )
    )


def subscriber_commitment(salt: bytes, imsi: str, msisdn: str) -> bytes:
    """SHA-256 of the domain, the salt, and the IMSI and MSISDN each with a u16 length."""
    data = [COMMITMENT_DOMAIN, salt]
    for text in (imsi, msisdn):
        raw = text.encode("utf-8")
        data.append(len(raw).to_bytes(2, "big") + raw)
    return hashlib.sha256(b"".join(data)).digest()


def leaf_commitment(change: pb.ListChange) -> bytes:
    """The subscriber commitment a version 2 leaf of ``change`` holds (empty: none).

    The given ``subscriber_commitment`` when there is one (checked against
    the IMSI, MSISDN and salt if those were given too), else computed from
    them. Raises ``LeafError`` for an IMSI with neither, an MSISDN without
    an IMSI, a commitment that is not 32 bytes or a salt that is not 16.
    """
    sequence = change.sequence
    given, salt = change.subscriber_commitment, change.subscriber_salt
    if given and len(given) != COMMITMENT_BYTES:
        raise LeafError(
            f"change {sequence}: subscriber_commitment is {len(given)} bytes, "
            f"expected {COMMITMENT_BYTES}"
        )
    if not change.imsi:
        if change.msisdn:
            raise LeafError(f"change {sequence}: an msisdn without an imsi")
        return given
    if not salt:
        if not given:
            raise LeafError(
                f"change {sequence}: an imsi with neither a subscriber_commitment nor a "
                "subscriber_salt, so its leaf cannot be rebuilt"
            )
        return given
    if len(salt) != SALT_BYTES:
        raise LeafError(
            f"change {sequence}: subscriber_salt is {len(salt)} bytes, expected {SALT_BYTES}"
        )
    computed = subscriber_commitment(salt, change.imsi, change.msisdn)
    if given and given != computed:
        raise LeafError(
            f"change {sequence}: subscriber_commitment does not match the imsi, msisdn "
            "and salt given with it"
        )
    return computed


def leaf_hash(change: pb.ListChange) -> bytes:
    """RFC 6962 leaf hash of the change: SHA-256(0x00 || leaf bytes)."""
    return hashlib.sha256(b"\x00" + encode_leaf(change)).digest()

"""Leaf encoding version 1: the clear IMSI and MSISDN, no provenance.

Every change written before version 2 existed has this leaf; the log is
append-only, so these bytes never change (``docs/trust.md``, "Version 1").
"""

from __future__ import annotations

import struct
from dataclasses import replace

from ceir.domain.model import Change, ChangeKind

from ._leaf_fields import (
    COMMON_FORMAT,
    Leaf,
    common_fields,
    plain_common,
    plain_strings,
    read_common,
    read_strings,
    refuse_set,
    strings,
)
from .errors import LeafEncodingError

VERSION = 1
FIXED = struct.Struct(COMMON_FORMAT)  # 71 bytes
STRING_FIELDS = ("imsi", "msisdn", "device_id", "operator_mcc_mnc", "policy.updated_by")
NOT_RECORDED = (
    "actor",
    "reference",
    "brand",
    "model",
    "device_imei_keys",
    "police_report",
    "reason",
    "subscriber_commitment",
)


def view(change: Change) -> Leaf:
    """What a version 1 leaf records of ``change``: no actor, no provenance, no salt."""
    return Leaf(
        leaf_version=VERSION,
        kind=change.kind,
        sequence=change.sequence,
        committed_at_us=change.committed_at_us,
        imei_key=change.imei_key,
        source=change.source,
        valid_until_us=change.valid_until_us,
        blacklist_cause=change.blacklist_cause,
        block_date_us=change.block_date_us,
        policy=change.policy,
        device_id=change.device_id,
        operator_mcc_mnc=change.operator_mcc_mnc,
        imsi=change.imsi,
        msisdn=change.msisdn,
    )


def encode(leaf: Leaf) -> bytes:
    """The version 1 bytes of ``leaf``, each field checked."""
    _refuse_custody(leaf)
    refuse_set(VERSION, leaf, NOT_RECORDED)
    updated_by = "" if leaf.policy is None else leaf.policy.updated_by
    return FIXED.pack(VERSION, *common_fields(leaf)) + strings(
        STRING_FIELDS,
        (leaf.imsi, leaf.msisdn, leaf.device_id, leaf.operator_mcc_mnc, updated_by),
    )


def decode(data: bytes) -> Leaf:
    """The leaf that version 1 bytes record; refuses any other bytes."""
    if len(data) < FIXED.size:
        raise LeafEncodingError(
            f"leaf is {len(data)} bytes, shorter than the {FIXED.size}-byte fixed part of version 1"
        )
    fields = FIXED.unpack_from(data)
    values, end = read_strings(data, FIXED.size, STRING_FIELDS)
    if end != len(data):
        raise LeafEncodingError(f"leaf has {len(data) - end} trailing bytes at offset {end}")
    imsi, msisdn, device_id, operator_mcc_mnc, updated_by = values
    leaf = read_common(VERSION, fields, updated_by)
    _refuse_custody(leaf)
    return replace(
        leaf, imsi=imsi, msisdn=msisdn, device_id=device_id, operator_mcc_mnc=operator_mcc_mnc
    )


def _refuse_custody(leaf: Leaf) -> None:
    # Custody steps came after version 2: no version 1 leaf records one.
    if leaf.kind is ChangeKind.CUSTODY_CHANGED:
        raise LeafEncodingError(
            f"change {leaf.sequence}: CUSTODY_CHANGED has leaf version 2 only, not version 1"
        )


def encode_plain(change: Change) -> bytes | None:
    """The version 1 leaf of a plain change without the per-field checks
    (``plain_common``); None: take the checked path."""
    common = plain_common(change)
    if common is None:
        return None
    text = plain_strings(
        (change.imsi, change.msisdn, change.device_id, change.operator_mcc_mnc, "")
    )
    if text is None:
        return None
    try:
        fixed = FIXED.pack(VERSION, *common)
    except struct.error:  # a time outside 64 bits: let the checked path say which
        return None
    return fixed + text

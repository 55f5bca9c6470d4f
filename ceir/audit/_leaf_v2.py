"""Leaf encoding version 2: provenance in the leaf, the subscriber as a commitment.

Adds the actor and the registration, report and reason fields of a change,
and replaces the clear IMSI and MSISDN with the 32-byte salted commitment
of ``commitment.subscriber_commitment``, so that every node can rebuild the
leaf while only the subscriber's own operator and regulators learn the
numbers (``docs/trust.md``, "Version 2" and "Subscriber commitments").
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import replace

from ceir.domain.model import Change, ChangeKind, RegistrationSource

from ._leaf_fields import (
    COMMON_FORMAT,
    EMPTY_STRING,
    IMEI_KEY_LIMIT,
    LENGTH,
    Leaf,
    check_custody,
    common_fields,
    plain_common,
    plain_strings,
    ranged,
    read_common,
    read_imei_key,
    read_presence,
    read_strings,
    refuse_set,
    strings,
)
from .commitment import SALT_BYTES, subscriber_commitment
from .errors import LeafEncodingError

VERSION = 2
COMMITMENT_BYTES = 32
MAX_SLOTS = 16
# the common part, then commitment presence and bytes, then the slot count
FIXED = struct.Struct(COMMON_FORMAT + "B32sB")  # 105 bytes
SLOTS = tuple(struct.Struct(f">{count}Q") for count in range(MAX_SLOTS + 1))
# The fixed part and the slot keys in one pack, for the fast path.
WITH_SLOTS = tuple(
    struct.Struct(COMMON_FORMAT + f"B32sB{count}Q") for count in range(MAX_SLOTS + 1)
)
STRING_FIELDS = (
    "actor",
    "device_id",
    "operator_mcc_mnc",
    "reference",
    "brand",
    "model",
    "police_report",
    "reason",
    "policy.updated_by",
)
NOT_RECORDED = ("imsi", "msisdn")


def view(change: Change) -> Leaf:
    """What a version 2 leaf records of ``change``: the subscriber as its commitment.

    Raises ``LeafEncodingError`` when the subscriber fields cannot be
    committed to: an IMSI without a 16-byte salt, an MSISDN or a salt
    without an IMSI.
    """
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
        actor=change.actor,
        reference=change.reference,
        brand=change.brand,
        model=change.model,
        device_imei_keys=tuple(change.device_imei_keys),
        police_report=change.police_report,
        reason=change.reason,
        subscriber_commitment=commitment_of(change),
    )


def commitment_of(change: Change) -> bytes:
    """The change's subscriber commitment, empty when it has no IMSI."""
    imsi, msisdn, salt = change.imsi, change.msisdn, change.subscriber_salt
    if not isinstance(imsi, str) or not isinstance(msisdn, str):
        raise LeafEncodingError(f"imsi and msisdn must be strings, got {imsi!r} and {msisdn!r}")
    if not isinstance(salt, bytes):
        raise LeafEncodingError(f"subscriber_salt must be bytes, got {salt!r}")
    if not imsi:
        if msisdn:
            raise LeafEncodingError(
                "msisdn is set but imsi is empty: a version 2 leaf commits to a subscriber "
                "by IMSI and MSISDN together, never to an MSISDN alone"
            )
        if salt:
            raise LeafEncodingError(
                "subscriber_salt is set but imsi is empty: a salt belongs to a subscriber"
            )
        return b""
    if len(salt) != SALT_BYTES:
        raise LeafEncodingError(
            f"subscriber_salt is {len(salt)} bytes, expected {SALT_BYTES}: a change with an "
            "IMSI needs the salt of its list row for its version 2 leaf"
        )
    return subscriber_commitment(salt, imsi, msisdn)


def encode(leaf: Leaf) -> bytes:
    """The version 2 bytes of ``leaf``, each field checked."""
    refuse_set(VERSION, leaf, NOT_RECORDED)
    check_custody(leaf, f"change {leaf.sequence}")
    commitment = leaf.subscriber_commitment
    if not isinstance(commitment, bytes) or len(commitment) not in (0, COMMITMENT_BYTES):
        raise LeafEncodingError(
            f"subscriber_commitment must be {COMMITMENT_BYTES} bytes or empty, got {commitment!r}"
        )
    keys = leaf.device_imei_keys
    if len(keys) > MAX_SLOTS:
        raise LeafEncodingError(
            f"device_imei_keys holds {len(keys)} keys, at most {MAX_SLOTS} fit a leaf"
        )
    for index, key in enumerate(keys):
        ranged(f"device_imei_keys[{index}]", key, 0, IMEI_KEY_LIMIT - 1)
    updated_by = "" if leaf.policy is None else leaf.policy.updated_by
    texts = (
        leaf.actor,
        leaf.device_id,
        leaf.operator_mcc_mnc,
        leaf.reference,
        leaf.brand,
        leaf.model,
        leaf.police_report,
        leaf.reason,
        updated_by,
    )
    fixed = FIXED.pack(VERSION, *common_fields(leaf), 1 if commitment else 0, commitment, len(keys))
    return fixed + SLOTS[len(keys)].pack(*keys) + strings(STRING_FIELDS, texts)


def decode(data: bytes) -> Leaf:
    """The leaf that version 2 bytes record; refuses any other bytes."""
    if len(data) < FIXED.size:
        raise LeafEncodingError(
            f"leaf is {len(data)} bytes, shorter than the {FIXED.size}-byte fixed part of version 2"
        )
    fields = FIXED.unpack_from(data)
    has_commitment, commitment, count = fields[-3:]
    if count > MAX_SLOTS:
        raise LeafEncodingError(f"device slot count {count} at offset 104 is more than {MAX_SLOTS}")
    slots = SLOTS[count]
    if FIXED.size + slots.size > len(data):
        raise LeafEncodingError(
            f"leaf ends at offset {len(data)} inside its {count} device slot keys"
        )
    keys = tuple(
        read_imei_key(FIXED.size + 8 * index, key)
        for index, key in enumerate(slots.unpack_from(data, FIXED.size))
    )
    values, end = read_strings(data, FIXED.size + slots.size, STRING_FIELDS)
    if end != len(data):
        raise LeafEncodingError(f"leaf has {len(data) - end} trailing bytes at offset {end}")
    actor, device_id, mcc_mnc, reference, brand, model, report, reason, updated_by = values
    leaf = read_common(VERSION, fields[:-3], updated_by)
    present = read_presence(71, has_commitment, *commitment)
    decoded = replace(
        leaf,
        device_id=device_id,
        operator_mcc_mnc=mcc_mnc,
        actor=actor,
        reference=reference,
        brand=brand,
        model=model,
        device_imei_keys=keys,
        police_report=report,
        reason=reason,
        subscriber_commitment=commitment if present else b"",
    )
    check_custody(decoded, f"custody leaf at sequence {decoded.sequence}")
    return decoded


def encode_plain(change: Change) -> bytes | None:
    """The version 2 leaf of a plain change, without the per-field checks
    (``plain_common``); None: take the checked path, which gives the same
    bytes or names the bad field."""
    common = plain_common(change)
    if common is None:
        return None
    imsi, msisdn, salt = change.imsi, change.msisdn, change.subscriber_salt
    if not imsi:
        if msisdn or salt:
            return None
        commitment = b""
    elif type(imsi) is str and type(msisdn) is str and type(salt) is bytes and len(salt) == 16:
        try:
            commitment = subscriber_commitment(salt, imsi, msisdn)
        except LeafEncodingError:
            return None
    else:
        return None
    keys = change.device_imei_keys
    if type(keys) is not tuple or len(keys) > MAX_SLOTS:
        return None
    for key in keys:
        if type(key) is not int or not 0 <= key < IMEI_KEY_LIMIT:
            return None
    text = plain_strings(
        (
            change.actor,
            change.device_id,
            change.operator_mcc_mnc,
            change.reference,
            change.brand,
            change.model,
            change.police_report,
            change.reason,
            "",
        )
    )
    if text is None:
        return None
    try:
        head = WITH_SLOTS[len(keys)].pack(
            VERSION, *common, 1 if commitment else 0, commitment, len(keys), *keys
        )
    except struct.error:  # a time outside 64 bits: let the checked path say which
        return None
    return head + text


# The leaf of a plain WHITELIST_ADDED change of one slot: every field but
# the kind, sequence, time, key, source and expiry is zero, then the slot,
# then the nine strings, of which only the first six can be set.
_ONE_SLOT = WITH_SLOTS[1]
_ADDED_TAIL = EMPTY_STRING * 3  # police report, reason, policy updated-by
_MEMO_LIMIT = 4_096  # distinct texts kept encoded per call (brands, models, references)
_SHORT = 256  # device ids shorter than this many bytes, the length prefix from a table
_SHORT_LENGTHS = tuple(LENGTH.pack(size) for size in range(_SHORT))


def encode_registrations(changes: Sequence[Change]) -> list[bytes | None]:
    """The version 2 leaves of plain one-slot WHITELIST_ADDED changes (what an
    import writes), in bulk; None for every other change (and any value
    outside the plain shape), which ``encode_change`` then encodes. Repeated
    texts (brands, models, references, the actor) are encoded once."""
    memo: dict[object, bytes] = {"": EMPTY_STRING}
    leaves: list[bytes | None] = []
    added = ChangeKind.WHITELIST_ADDED
    pack = _ONE_SLOT.pack
    for change in changes:
        fields = change.__dict__
        key = fields["imei_key"]
        valid_until = fields["valid_until_us"]
        source = fields["source"]
        sequence = fields["sequence"]
        time_us = fields["committed_at_us"]
        device_id = fields["device_id"]
        if (
            fields["kind"] is not added
            or fields["device_imei_keys"] != (key,)
            or type(key) is not int
            or not 0 <= key < IMEI_KEY_LIMIT
            or type(source) is not RegistrationSource
            or (valid_until is not None and type(valid_until) is not int)
            or type(sequence) is not int
            or type(time_us) is not int
            or type(device_id) is not str
            or fields["imsi"]
            or fields["msisdn"]
            or fields["subscriber_salt"]
            or fields["operator_mcc_mnc"]
            or fields["police_report"]
            or fields["reason"]
            or fields["policy"] is not None
            or fields["blacklist_cause"] is not None
            or fields["block_date_us"] is not None
            or fields["leaf_version"] != VERSION
        ):
            leaves.append(None)
            continue
        try:
            # b"": not encoded yet (every encoded text has its length prefix)
            texts = [memo.get(text, b"") for text in _texts(fields)]
            device = device_id.encode("utf-8")
            head = pack(
                VERSION, added, sequence, time_us, 1, key, 1, source,
                valid_until is not None, valid_until or 0,
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b"", 1, key,
            )  # fmt: skip
        except (TypeError, UnicodeEncodeError, struct.error):
            leaves.append(None)  # the checked path names what is wrong
            continue
        known = texts if all(texts) else _remember(memo, _texts(fields))
        if known is None or len(device) >= _SHORT:
            leaves.append(None)
            continue
        actor, reference, brand, model = known
        prefix = _SHORT_LENGTHS[len(device)]
        leaves.append(
            b"".join(
                [head, actor, prefix, device, EMPTY_STRING, reference, brand, model, _ADDED_TAIL]
            )
        )
    return leaves


def _texts(fields: dict[str, object]) -> tuple[object, ...]:
    return (fields["actor"], fields["reference"], fields["brand"], fields["model"])


def _remember(memo: dict[object, bytes], texts: tuple[object, ...]) -> list[bytes] | None:
    """The texts as length-prefixed strings, kept in ``memo`` (up to its
    limit); None when one is not a plain string (``plain_strings`` refuses
    it, and the checked path names it)."""
    found: list[bytes] = []
    for text in texts:
        encoded = plain_strings((text,))
        if encoded is None:
            return None
        if len(memo) < _MEMO_LIMIT:
            memo[text] = encoded
        found.append(encoded)
    return found

"""The canonical byte encoding of one change: the leaf of the Merkle log.

Protobuf bytes are not canonical (field order, default values and unknown
fields may vary between encoders), so a leaf has its own encoding, specified
byte by byte in ``docs/trust.md``. Any implementation can rebuild it from the
fields of a public ``ceir.v1.ListChange``; that is why it holds exactly what
the public message carries, no more:

- ``actor`` (who made the change) is *not* in the leaf. ``ListChange`` does
  not carry it, so an operator could not recompute a leaf that held it.
- Timestamps are whole microseconds since the Unix epoch, the precision at
  which the register stores them and publishes them in ``Timestamp`` fields.
- The IMEI key is the integer value of the 14-digit ``imei_key`` string.

Layout (version 1): a fixed part of 71 bytes, then five strings.

=======  ======  =============================================================
offset   length  field
=======  ======  =============================================================
0        1       encoding version, 0x01
1        1       kind (``ChangeKind``, 1 to 10)
2        8       sequence, u64 (1 for the first change)
10       8       commit time, i64 microseconds
18       1+8     imei key: presence, u64 (0 to 10^14 - 1)
27       1+1     registration source: presence, u8
29       1+8     valid until: presence, i64 microseconds
38       1+1     blacklist cause: presence, u8
40       1+8     block date: presence, i64 microseconds
49       1+1     policy: presence, phase u8
51       4       policy grace days, u32
55       4       policy clone threshold, u32
59       4       policy clone window seconds, u32
63       8       policy update time, i64 microseconds (0 when unset)
71       2+n     imsi, then msisdn, device id, operator MCC-MNC and
                 policy updated-by: each a u16 byte length and UTF-8 bytes
=======  ======  =============================================================

Integers are big-endian, fixed width, signed ones two's complement. A
presence byte is 0 or 1; an absent value (and an absent policy's fields and
updated-by) is all zero bytes. Every field is always written, so each change
has exactly one encoding, and ``decode_change`` refuses any other bytes.
"""

from __future__ import annotations

import struct
from dataclasses import replace
from enum import IntEnum
from typing import TypeVar

from ceir.domain.model import BlacklistCause, Change, ChangeKind, Phase, Policy, RegistrationSource

from .errors import LeafEncodingError

__all__ = ["LEAF_VERSION", "decode_change", "encode_change", "leaf_view"]

LEAF_VERSION = 1

IMEI_KEY_LIMIT = 10**14  # keys are 14 decimal digits
STRING_LIMIT = 0xFFFF  # bytes, the largest length a u16 prefix can state
_U32 = 0xFFFF_FFFF
_U64 = 0xFFFF_FFFF_FFFF_FFFF
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1

# version, kind, sequence, commit time,
# imei key, source, valid until, blacklist cause, block date (presence, value),
# policy presence, phase, grace days, clone threshold, clone window, update time
_FIXED = struct.Struct(">BBQq" + "BQ" + "BB" + "Bq" + "BB" + "Bq" + "BBIIIq")
_STRING_FIELDS = ("imsi", "msisdn", "device_id", "operator_mcc_mnc", "policy.updated_by")
_LENGTH = struct.Struct(">H")

E = TypeVar("E", bound=IntEnum)


def leaf_view(change: Change) -> Change:
    """The change as its leaf records it: ``actor`` dropped.

    ``decode_change(encode_change(c)) == leaf_view(c)`` for every encodable ``c``.
    """
    return replace(change, actor="")


def encode_change(change: Change) -> bytes:
    """The canonical leaf bytes of a numbered change.

    Raises ``LeafEncodingError`` naming the field when a value cannot be
    encoded: a sequence below 1, an integer out of its field's range, an IMEI
    key that is not 14 digits, a string that is not valid Unicode or longer
    than 65,535 UTF-8 bytes.
    """
    fast = _encode_plain(change)
    return fast if fast is not None else _encode_checked(change)


def _encode_checked(change: Change) -> bytes:
    """The leaf, each field checked (names the field that cannot be encoded)."""
    policy = change.policy
    fixed = _FIXED.pack(
        LEAF_VERSION,
        _enum("kind", change.kind, ChangeKind),
        _ranged("sequence", change.sequence, 1, _U64),
        _ranged("committed_at_us", change.committed_at_us, _I64_MIN, _I64_MAX),
        *_optional_int("imei_key", change.imei_key, 0, IMEI_KEY_LIMIT - 1),
        *_optional_enum("source", change.source, RegistrationSource),
        *_optional_int("valid_until_us", change.valid_until_us, _I64_MIN, _I64_MAX),
        *_optional_enum("blacklist_cause", change.blacklist_cause, BlacklistCause),
        *_optional_int("block_date_us", change.block_date_us, _I64_MIN, _I64_MAX),
        *_policy_fields(policy),
    )
    updated_by = "" if policy is None else policy.updated_by
    strings = (change.imsi, change.msisdn, change.device_id, change.operator_mcc_mnc, updated_by)
    return fixed + b"".join(
        _string(name, value) for name, value in zip(_STRING_FIELDS, strings, strict=True)
    )


def decode_change(data: bytes) -> Change:
    """The change that ``data`` encodes, with ``actor`` empty.

    Refuses (``LeafEncodingError``, with the offset) anything that
    ``encode_change`` would not have produced: another version, unknown enum
    values, presence bytes other than 0 and 1, non-zero bytes under an absent
    value, invalid UTF-8, truncated or trailing bytes.
    """
    if len(data) < _FIXED.size:
        raise LeafEncodingError(
            f"leaf is {len(data)} bytes, shorter than the {_FIXED.size}-byte fixed part"
        )
    if data[0] != LEAF_VERSION:
        raise LeafEncodingError(
            f"leaf encoding version is {data[0]} at offset 0, expected {LEAF_VERSION}"
        )
    (
        _version,
        kind,
        sequence,
        committed_at_us,
        has_imei,
        imei_key,
        has_source,
        source,
        has_valid_until,
        valid_until_us,
        has_cause,
        cause,
        has_block_date,
        block_date_us,
        has_policy,
        phase,
        grace_days,
        clone_threshold,
        clone_window_seconds,
        policy_updated_at_us,
    ) = _FIXED.unpack_from(data)
    strings, end = _read_strings(data, _FIXED.size)
    if end != len(data):
        raise LeafEncodingError(f"leaf has {len(data) - end} trailing bytes at offset {end}")
    if sequence < 1:
        raise LeafEncodingError("sequence at offset 2 is 0, expected 1 or more")
    imsi, msisdn, device_id, operator_mcc_mnc, updated_by = strings
    key = _read_optional(18, has_imei, imei_key)
    if key is not None and key >= IMEI_KEY_LIMIT:
        raise LeafEncodingError(f"imei key {key} at offset 19 has more than 14 digits")
    return Change(
        kind=_read_enum(1, ChangeKind, kind),
        sequence=sequence,
        committed_at_us=committed_at_us,
        imei_key=key,
        source=_read_optional_enum(27, RegistrationSource, has_source, source),
        valid_until_us=_read_optional(29, has_valid_until, valid_until_us),
        blacklist_cause=_read_optional_enum(38, BlacklistCause, has_cause, cause),
        block_date_us=_read_optional(40, has_block_date, block_date_us),
        policy=_read_policy(
            has_policy,
            phase,
            grace_days,
            clone_threshold,
            clone_window_seconds,
            policy_updated_at_us,
            updated_by,
        ),
        imsi=imsi,
        msisdn=msisdn,
        device_id=device_id,
        operator_mcc_mnc=operator_mcc_mnc,
    )


def _encode_plain(change: Change) -> bytes | None:
    """The leaf of a change without a policy whose values are plainly in
    range, without the per-field checks (the import path encodes one leaf per
    registered IMEI); None sends anything else through the checked path,
    which gives the same bytes or names the bad field."""
    key, source, cause = change.imei_key, change.source, change.blacklist_cause
    valid_until, block_date = change.valid_until_us, change.block_date_us
    if (
        change.policy is not None
        or type(change.kind) is not ChangeKind
        or not 1 <= change.sequence <= _U64
        or (key is not None and (type(key) is not int or not 0 <= key < IMEI_KEY_LIMIT))
        or (source is not None and type(source) is not RegistrationSource)
        or (cause is not None and type(cause) is not BlacklistCause)
        or type(change.committed_at_us) is not int
        or (valid_until is not None and type(valid_until) is not int)
        or (block_date is not None and type(block_date) is not int)
    ):
        return None
    try:
        fixed = _FIXED.pack(
            LEAF_VERSION,
            change.kind,
            change.sequence,
            change.committed_at_us,
            key is not None,
            key or 0,
            source is not None,
            source or 0,
            valid_until is not None,
            valid_until or 0,
            cause is not None,
            cause or 0,
            block_date is not None,
            block_date or 0,
            0,
            0,
            0,
            0,
            0,
            0,
        )
    except struct.error:  # a time outside 64 bits: let the checked path say which
        return None
    strings = (change.imsi, change.msisdn, change.device_id, change.operator_mcc_mnc, "")
    if not all(type(value) is str for value in strings):
        return None
    return fixed + b"".join(
        _string(name, value) for name, value in zip(_STRING_FIELDS, strings, strict=True)
    )


def _ranged(name: str, value: int, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise LeafEncodingError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise LeafEncodingError(f"{name} is {value}, outside {low} to {high}")
    return value


def _enum(name: str, value: object, kind: type[IntEnum]) -> int:
    if not isinstance(value, kind):
        raise LeafEncodingError(f"{name} must be a {kind.__name__}, got {value!r}")
    return int(value)


def _optional_int(name: str, value: int | None, low: int, high: int) -> tuple[int, int]:
    return (0, 0) if value is None else (1, _ranged(name, value, low, high))


def _optional_enum(name: str, value: object, kind: type[IntEnum]) -> tuple[int, int]:
    return (0, 0) if value is None else (1, _enum(name, value, kind))


def _policy_fields(policy: Policy | None) -> tuple[int, int, int, int, int, int]:
    if policy is None:
        return (0, 0, 0, 0, 0, 0)
    return (
        1,
        _enum("policy.phase", policy.phase, Phase),
        _ranged("policy.grace_days", policy.grace_days, 0, _U32),
        _ranged("policy.clone_threshold", policy.clone_threshold, 0, _U32),
        _ranged("policy.clone_window_seconds", policy.clone_window_seconds, 0, _U32),
        _ranged("policy.updated_at_us", policy.updated_at_us, _I64_MIN, _I64_MAX),
    )


def _string(name: str, value: str) -> bytes:
    if value == "":  # most strings of most changes: skip the encoding work
        return _EMPTY_STRING
    if not isinstance(value, str):
        raise LeafEncodingError(f"{name} must be a string, got {value!r}")
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise LeafEncodingError(
            f"{name} {value!r} is not encodable as UTF-8 (character {error.start})"
        ) from None
    if len(raw) > STRING_LIMIT:
        raise LeafEncodingError(f"{name} is {len(raw)} UTF-8 bytes, more than {STRING_LIMIT}")
    return _LENGTH.pack(len(raw)) + raw


_EMPTY_STRING = _LENGTH.pack(0)


def _read_strings(data: bytes, offset: int) -> tuple[list[str], int]:
    values = []
    for name in _STRING_FIELDS:
        if offset + _LENGTH.size > len(data):
            raise LeafEncodingError(f"leaf ends at offset {len(data)} before the length of {name}")
        (length,) = _LENGTH.unpack_from(data, offset)
        start, offset = offset + _LENGTH.size, offset + _LENGTH.size + length
        if offset > len(data):
            raise LeafEncodingError(
                f"{name} at offset {start} claims {length} bytes, only {len(data) - start} remain"
            )
        try:
            values.append(data[start:offset].decode("utf-8"))
        except UnicodeDecodeError as error:
            raise LeafEncodingError(
                f"{name} at offset {start} is not valid UTF-8 (byte {start + error.start})"
            ) from None
    return values, offset


def _read_presence(offset: int, flag: int, *values: int) -> bool:
    if flag not in (0, 1):
        raise LeafEncodingError(f"presence byte at offset {offset} is {flag}, expected 0 or 1")
    if flag == 0 and any(values):
        raise LeafEncodingError(f"absent value after offset {offset} has non-zero bytes")
    return flag == 1


def _read_optional(offset: int, flag: int, value: int) -> int | None:
    return value if _read_presence(offset, flag, value) else None


def _read_enum(offset: int, kind: type[E], value: int) -> E:
    try:
        return kind(value)
    except ValueError:
        raise LeafEncodingError(f"{value} at offset {offset} is not a {kind.__name__}") from None


def _read_optional_enum(offset: int, kind: type[E], flag: int, value: int) -> E | None:
    return _read_enum(offset + 1, kind, value) if _read_presence(offset, flag, value) else None


def _read_policy(
    flag: int,
    phase: int,
    grace_days: int,
    clone_threshold: int,
    clone_window_seconds: int,
    updated_at_us: int,
    updated_by: str,
) -> Policy | None:
    numbers = (phase, grace_days, clone_threshold, clone_window_seconds, updated_at_us)
    if not _read_presence(49, flag, *numbers, len(updated_by)):
        return None
    return Policy(
        phase=_read_enum(50, Phase, phase),
        grace_days=grace_days,
        clone_threshold=clone_threshold,
        clone_window_seconds=clone_window_seconds,
        updated_at_us=updated_at_us,
        updated_by=updated_by,
    )

"""What a leaf records (``Leaf``) and the checked field writers and readers
that both leaf encodings share (``leaf`` is the public module)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import TypeVar

from ceir.domain.custody_steps import custody_problem
from ceir.domain.model import BlacklistCause, Change, ChangeKind, Phase, Policy, RegistrationSource

from .errors import LeafEncodingError

IMEI_KEY_LIMIT = 10**14  # keys are 14 decimal digits
STRING_LIMIT = 0xFFFF  # bytes, the largest length a u16 prefix can state
U32 = 0xFFFF_FFFF
U64 = 0xFFFF_FFFF_FFFF_FFFF
I64_MIN, I64_MAX = -(2**63), 2**63 - 1

LENGTH = struct.Struct(">H")
EMPTY_STRING = LENGTH.pack(0)

E = TypeVar("E", bound=IntEnum)


@dataclass(frozen=True)
class Leaf:
    """What the leaf of one change records, read back from its bytes.

    The fields are the ``Change`` fields of the same name that the leaf's
    encoding version holds; the others are at their defaults. Version 1 holds
    the IMSI and MSISDN in clear and none of the provenance; version 2 holds
    the provenance (``actor`` to ``reason``) and, instead of the numbers,
    ``subscriber_commitment`` (32 bytes when the change has an IMSI, else empty).
    """

    leaf_version: int
    kind: ChangeKind
    sequence: int
    committed_at_us: int
    imei_key: int | None = None
    source: RegistrationSource | None = None
    valid_until_us: int | None = None
    blacklist_cause: BlacklistCause | None = None
    block_date_us: int | None = None
    policy: Policy | None = None
    device_id: str = ""
    operator_mcc_mnc: str = ""
    # --- version 1 only ---
    imsi: str = ""
    msisdn: str = ""
    # --- version 2 only ---
    actor: str = ""
    reference: str = ""
    brand: str = ""
    model: str = ""
    device_imei_keys: tuple[int, ...] = ()
    police_report: str = ""
    reason: str = ""
    subscriber_commitment: bytes = b""


# --- writing, each value checked ------------------------------------------------------------


def ranged(name: str, value: int, low: int, high: int) -> int:
    """``value`` if it is an integer from ``low`` to ``high``, else an error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise LeafEncodingError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise LeafEncodingError(f"{name} is {value}, outside {low} to {high}")
    return value


def enum_number(name: str, value: object, kind: type[IntEnum]) -> int:
    """The number of ``value``, which must be a member of ``kind``."""
    if not isinstance(value, kind):
        raise LeafEncodingError(f"{name} must be a {kind.__name__}, got {value!r}")
    return int(value)


def optional_int(name: str, value: int | None, low: int, high: int) -> tuple[int, int]:
    """(presence, value) of an optional integer."""
    return (0, 0) if value is None else (1, ranged(name, value, low, high))


def optional_enum(name: str, value: object, kind: type[IntEnum]) -> tuple[int, int]:
    """(presence, number) of an optional enum value."""
    return (0, 0) if value is None else (1, enum_number(name, value, kind))


def common_fields(leaf: Leaf) -> tuple[int, ...]:
    """Offsets 1 to 70, the same in every version: kind to policy update time."""
    return (
        enum_number("kind", leaf.kind, ChangeKind),
        ranged("sequence", leaf.sequence, 1, U64),
        ranged("committed_at_us", leaf.committed_at_us, I64_MIN, I64_MAX),
        *optional_int("imei_key", leaf.imei_key, 0, IMEI_KEY_LIMIT - 1),
        *optional_enum("source", leaf.source, RegistrationSource),
        *optional_int("valid_until_us", leaf.valid_until_us, I64_MIN, I64_MAX),
        *optional_enum("blacklist_cause", leaf.blacklist_cause, BlacklistCause),
        *optional_int("block_date_us", leaf.block_date_us, I64_MIN, I64_MAX),
        *policy_fields(leaf.policy),
    )


def policy_fields(policy: Policy | None) -> tuple[int, int, int, int, int, int]:
    """Presence, phase, grace days, clone threshold, clone window, update time."""
    if policy is None:
        return (0, 0, 0, 0, 0, 0)
    return (
        1,
        enum_number("policy.phase", policy.phase, Phase),
        ranged("policy.grace_days", policy.grace_days, 0, U32),
        ranged("policy.clone_threshold", policy.clone_threshold, 0, U32),
        ranged("policy.clone_window_seconds", policy.clone_window_seconds, 0, U32),
        ranged("policy.updated_at_us", policy.updated_at_us, I64_MIN, I64_MAX),
    )


def string(name: str, value: str) -> bytes:
    """A u16 byte length and the UTF-8 bytes of ``value``."""
    if value == "":  # most strings of most changes: skip the encoding work
        return EMPTY_STRING
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
    return LENGTH.pack(len(raw)) + raw


def strings(names: tuple[str, ...], values: tuple[str, ...]) -> bytes:
    """The strings of a leaf, in order."""
    return b"".join(string(name, value) for name, value in zip(names, values, strict=True))


def check_custody(leaf: Leaf, where: str) -> None:
    """Raise unless a custody leaf has the one shape ``custody_steps`` gives
    it (version 2 only, IMEI key 0, reason ``<step> <policy version>``,
    reference a hex SHA-256 or empty, an actor, nothing else)."""
    if leaf.kind is ChangeKind.CUSTODY_CHANGED:
        problem = custody_problem(leaf)
        if problem:
            raise LeafEncodingError(f"{where}: {problem}")


def refuse_set(version: int, leaf: Leaf, names: tuple[str, ...]) -> None:
    """Raise if a field that ``version`` does not record is set on ``leaf``."""
    for name in names:
        if getattr(leaf, name):
            raise LeafEncodingError(f"{name} is set, but leaf version {version} does not record it")


# --- reading, refusing anything the writer would not have written ---------------------------


def read_strings(data: bytes, offset: int, names: tuple[str, ...]) -> tuple[list[str], int]:
    """The strings ``names`` from ``offset`` on, and the offset after them."""
    values = []
    for name in names:
        if offset + LENGTH.size > len(data):
            raise LeafEncodingError(f"leaf ends at offset {len(data)} before the length of {name}")
        (length,) = LENGTH.unpack_from(data, offset)
        start, offset = offset + LENGTH.size, offset + LENGTH.size + length
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


def read_presence(offset: int, flag: int, *values: int) -> bool:
    """A presence byte, 0 or 1; an absent value's bytes must all be zero."""
    if flag not in (0, 1):
        raise LeafEncodingError(f"presence byte at offset {offset} is {flag}, expected 0 or 1")
    if flag == 0 and any(values):
        raise LeafEncodingError(f"absent value after offset {offset} has non-zero bytes")
    return flag == 1


def read_optional(offset: int, flag: int, value: int) -> int | None:
    """An optional integer whose presence byte is at ``offset``."""
    return value if read_presence(offset, flag, value) else None


def read_enum(offset: int, kind: type[E], value: int) -> E:
    """The member of ``kind`` numbered ``value``."""
    try:
        return kind(value)
    except ValueError:
        raise LeafEncodingError(f"{value} at offset {offset} is not a {kind.__name__}") from None


def read_optional_enum(offset: int, kind: type[E], flag: int, value: int) -> E | None:
    """An optional enum value whose presence byte is at ``offset``."""
    return read_enum(offset + 1, kind, value) if read_presence(offset, flag, value) else None


def read_imei_key(offset: int, value: int) -> int:
    """An IMEI key at ``offset``, below 10^14."""
    if value >= IMEI_KEY_LIMIT:
        raise LeafEncodingError(f"imei key {value} at offset {offset} has more than 14 digits")
    return value


def read_common(version: int, fields: tuple[int, ...], updated_by: str) -> Leaf:
    """The leaf's fields at offsets 1 to 70 (``fields`` unpacked from offset 0 on)."""
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
    ) = fields
    if sequence < 1:
        raise LeafEncodingError("sequence at offset 2 is 0, expected 1 or more")
    key = read_optional(18, has_imei, imei_key)
    numbers = (phase, grace_days, clone_threshold, clone_window_seconds, policy_updated_at_us)
    policy = None
    if read_presence(49, has_policy, *numbers, len(updated_by)):
        policy = Policy(
            phase=read_enum(50, Phase, phase),
            grace_days=grace_days,
            clone_threshold=clone_threshold,
            clone_window_seconds=clone_window_seconds,
            updated_at_us=policy_updated_at_us,
            updated_by=updated_by,
        )
    return Leaf(
        leaf_version=version,
        kind=read_enum(1, ChangeKind, kind),
        sequence=sequence,
        committed_at_us=committed_at_us,
        imei_key=None if key is None else read_imei_key(19, key),
        source=read_optional_enum(27, RegistrationSource, has_source, source),
        valid_until_us=read_optional(29, has_valid_until, valid_until_us),
        blacklist_cause=read_optional_enum(38, BlacklistCause, has_cause, cause),
        block_date_us=read_optional(40, has_block_date, block_date_us),
        policy=policy,
    )


# version, kind, sequence, commit time,
# imei key, source, valid until, blacklist cause, block date (presence, value),
# policy presence, phase, grace days, clone threshold, clone window, update time:
# offsets 0 to 70 of every version
COMMON_FORMAT = ">BBQq" + "BQ" + "BB" + "Bq" + "BB" + "Bq" + "BBIIIq"


def plain_common(change: Change) -> tuple[int, ...] | None:
    """Offsets 1 to 70 of a change without a policy whose values are plainly
    in range, without the per-field checks (imports encode one leaf per
    IMEI); None sends the change through the checked path, which gives the
    same bytes or names the bad field. A time outside 64 bits still passes:
    packing it fails, and the caller then takes the checked path."""
    key, source, cause = change.imei_key, change.source, change.blacklist_cause
    valid_until, block_date = change.valid_until_us, change.block_date_us
    if (
        change.policy is not None
        or type(change.kind) is not ChangeKind
        or change.kind is ChangeKind.CUSTODY_CHANGED  # its shape is checked
        or type(change.sequence) is not int
        or not 1 <= change.sequence <= U64
        or (key is not None and (type(key) is not int or not 0 <= key < IMEI_KEY_LIMIT))
        or (source is not None and type(source) is not RegistrationSource)
        or (cause is not None and type(cause) is not BlacklistCause)
        or type(change.committed_at_us) is not int
        or (valid_until is not None and type(valid_until) is not int)
        or (block_date is not None and type(block_date) is not int)
    ):
        return None
    return (
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


def plain_strings(texts: tuple[object, ...]) -> bytes | None:
    """The strings of a leaf without naming checks: None when one is not a
    string, is not encodable or is too long (the checked path names it)."""
    parts: list[bytes] = []
    append = parts.append
    try:
        for text in texts:
            if type(text) is not str:
                return None
            if not text:
                append(EMPTY_STRING)
                continue
            raw = text.encode("utf-8")
            size = len(raw)
            if size < _SHORT:
                append(_SHORT_LENGTHS[size])
            elif size > STRING_LIMIT:
                return None
            else:
                append(LENGTH.pack(size))
            append(raw)
    except UnicodeEncodeError:
        return None
    return b"".join(parts)


# The length prefixes of short strings, made once (nearly every string of a
# leaf is short): one list index instead of a pack per string.
_SHORT = 256
_SHORT_LENGTHS = tuple(LENGTH.pack(size) for size in range(_SHORT))

"""Turning request fields into domain values, with every violation named.

Each function gathers all of a request's violations before raising, so a
caller fixes its request in one go.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .errors import FieldViolation, InvalidArgument
from .identifiers import describe_malformed_imei, imei_key
from .model import DAY_MICROS, DeviceRegistration, Phase, RegistrationSource

MAX_SLOTS = 8
MAX_TOURIST_DAYS = 90
# What a google.protobuf.Timestamp may hold: 0001-01-01T00:00:00Z to
# 9999-12-31T23:59:59.999999999Z, nanos within one second.
TIMESTAMP_MIN_SECONDS = -62_135_596_800
TIMESTAMP_MAX_SECONDS = 253_402_300_799
MAX_NANOS = 999_999_999
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_SOURCES = frozenset(RegistrationSource)


def check_request_id(request_id: str) -> None:
    """AIP-155 request ids are optional; when given they must be sane."""
    if request_id and not _REQUEST_ID.fullmatch(request_id):
        raise InvalidArgument.field(
            "request_id", "1 to 128 characters of A-Z a-z 0-9 . _ : -", reason="BAD_REQUEST_ID"
        )


def timestamp_micros(
    seconds: int, nanos: int, field: str, violations: list[FieldViolation]
) -> int | None:
    """Microseconds of a timestamp given as seconds and nanos (a protobuf
    Timestamp's fields), or None with a violation naming ``field.seconds``
    or ``field.nanos`` when it is outside what a Timestamp may hold."""
    before = len(violations)
    if not TIMESTAMP_MIN_SECONDS <= seconds <= TIMESTAMP_MAX_SECONDS:
        violations.append(
            FieldViolation(
                f"{field}.seconds",
                f"must be {TIMESTAMP_MIN_SECONDS:,} to {TIMESTAMP_MAX_SECONDS:,} "
                f"(0001-01-01 to 9999-12-31), got {seconds:,}",
            )
        )
    if not 0 <= nanos <= MAX_NANOS:
        violations.append(
            FieldViolation(f"{field}.nanos", f"must be 0 to {MAX_NANOS:,}, got {nanos:,}")
        )
    if len(violations) > before:
        return None
    return seconds * 1_000_000 + nanos // 1_000


def check_text(
    value: str, field: str, limit: int, violations: list[FieldViolation], *, required: bool = False
) -> str:
    """Free text: printable, at most ``limit`` characters."""
    if required and not value.strip():
        violations.append(FieldViolation(field, "is required"))
    elif len(value) > limit:
        violations.append(FieldViolation(field, f"at most {limit} characters, got {len(value)}"))
    elif not value.isprintable():
        violations.append(FieldViolation(field, "must not contain control characters"))
    return value.strip()


def imei_keys(
    values: list[str], field: str, violations: list[FieldViolation], *, limit: int
) -> list[int]:
    """Keys of a list of IMEIs; every malformed one is a violation."""
    if not values:
        violations.append(FieldViolation(field, "at least one IMEI is required"))
    elif len(values) > limit:
        violations.append(FieldViolation(field, f"at most {limit} IMEIs, got {len(values)}"))
        return []
    keys: list[int] = []
    for index, value in enumerate(values):
        key = imei_key(value)
        if key is None:
            shown = value[:40] if value else ""
            violations.append(
                FieldViolation(
                    f"{field}[{index}]", f"{describe_malformed_imei(value)} (got {shown!r})"
                )
            )
        elif key in keys:
            violations.append(FieldViolation(f"{field}[{index}]", f"IMEI {value} is listed twice"))
        else:
            keys.append(key)
    return keys


def device_registration(
    *,
    imeis: list[str],
    source: int,
    reference: str,
    valid_until_us: int | None,
    brand: str,
    model: str,
    now_us: int,
    prefix: str = "device",
    found: Sequence[FieldViolation] = (),
) -> DeviceRegistration:
    """Validate one device; raise InvalidArgument naming every wrong field.

    ``found`` are violations the caller met while converting the request (a
    ``valid_until`` outside a Timestamp's range); they are reported with the
    others, and ``valid_until_us`` is then None.
    """
    violations: list[FieldViolation] = list(found)
    keys = _check_device(
        imeis=imeis,
        source=source,
        reference=reference,
        valid_until_us=valid_until_us,
        brand=brand,
        model=model,
        now_us=now_us,
        prefix=prefix,
        violations=violations,
    )
    if violations:
        raise InvalidArgument(
            "; ".join(f"{v.field}: {v.description}" for v in violations),
            reason="INVALID_REGISTRATION",
            violations=violations,
        )
    return DeviceRegistration(
        imei_keys=tuple(keys),  # without violations, one key per IMEI, in order
        source=RegistrationSource(source),
        reference=reference.strip(),
        valid_until_us=_whole_seconds(valid_until_us),
        brand=brand.strip(),
        model=model.strip(),
    )


def device_violations(
    *,
    imeis: list[str],
    source: int,
    reference: str,
    valid_until_us: int | None,
    brand: str,
    model: str,
    now_us: int,
    prefix: str = "device",
    found: Sequence[FieldViolation] = (),
) -> list[FieldViolation]:
    """Everything wrong with one device registration (empty if nothing)."""
    violations: list[FieldViolation] = list(found)
    _check_device(
        imeis=imeis,
        source=source,
        reference=reference,
        valid_until_us=valid_until_us,
        brand=brand,
        model=model,
        now_us=now_us,
        prefix=prefix,
        violations=violations,
    )
    return violations


def _check_device(
    *,
    imeis: list[str],
    source: int,
    reference: str,
    valid_until_us: int | None,
    brand: str,
    model: str,
    now_us: int,
    prefix: str,
    violations: list[FieldViolation],
) -> list[int]:
    """Add the device's violations; return the keys of its well-formed IMEIs."""
    keys = imei_keys(imeis, f"{prefix}.imeis", violations, limit=MAX_SLOTS)
    if source not in _SOURCES:
        violations.append(
            FieldViolation(f"{prefix}.source", f"unknown registration source {source}")
        )
    check_text(reference, f"{prefix}.reference", 128, violations)
    check_text(brand, f"{prefix}.brand", 64, violations)
    check_text(model, f"{prefix}.model", 64, violations)
    if any(v.field.startswith(f"{prefix}.valid_until.") for v in violations):
        pass  # a timestamp out of range, already named
    elif source == RegistrationSource.TOURIST:
        if valid_until_us is None:
            violations.append(FieldViolation(f"{prefix}.valid_until", "required for tourists"))
        elif valid_until_us <= now_us:
            violations.append(FieldViolation(f"{prefix}.valid_until", "must be in the future"))
        elif valid_until_us > now_us + MAX_TOURIST_DAYS * DAY_MICROS:
            violations.append(
                FieldViolation(
                    f"{prefix}.valid_until",
                    f"a tourist registration lasts at most {MAX_TOURIST_DAYS} days",
                )
            )
    elif valid_until_us is not None:
        violations.append(
            FieldViolation(f"{prefix}.valid_until", "only tourist registrations expire")
        )
    return keys


def plain_device(
    keys: tuple[int, ...], source: RegistrationSource, reference: str, brand: str, model: str
) -> DeviceRegistration:
    """A device already checked (in columns, ``ceir.api.commands.import_chunk``),
    with no expiry and its texts stripped, built without the dataclass's
    per-field ``__init__`` (an import builds one per row)."""
    device = object.__new__(DeviceRegistration)
    object.__setattr__(
        device,
        "__dict__",
        {
            "imei_keys": keys,
            "source": source,
            "reference": reference,
            "valid_until_us": None,
            "brand": brand,
            "model": model,
        },
    )
    return device


def raise_if(violations: list[FieldViolation], reason: str = "INVALID_ARGUMENT") -> None:
    """Raise InvalidArgument carrying all violations, if there are any."""
    if violations:
        raise InvalidArgument(
            "; ".join(f"{v.field}: {v.description}" for v in violations),
            reason=reason,
            violations=violations,
        )


def _whole_seconds(micros: int | None) -> int | None:
    return None if micros is None else micros // 1_000_000 * 1_000_000


# The policy fields UpdatePolicy may change, and the range of each number.
POLICY_FIELDS = ("phase", "grace_days", "clone_threshold", "clone_window_seconds")
POLICY_LIMITS = {
    "grace_days": (0, 365),
    "clone_threshold": (1, 1_000),
    "clone_window_seconds": (60, 2_592_000),
}


def policy_violations(values: dict[str, int]) -> list[FieldViolation]:
    """What is wrong with the policy fields to change (empty if nothing)."""
    violations: list[FieldViolation] = []
    if not values:
        violations.append(FieldViolation("update_mask", "name at least one field to change"))
    for name, value in values.items():
        if name not in POLICY_FIELDS:
            violations.append(
                FieldViolation(
                    "update_mask", f"unknown field {name!r}; expected one of {POLICY_FIELDS}"
                )
            )
        elif name == "phase":
            if value not in (Phase.NOTIFY, Phase.ENFORCE):
                violations.append(FieldViolation("policy.phase", "must be NOTIFY or ENFORCE"))
        elif not POLICY_LIMITS[name][0] <= value <= POLICY_LIMITS[name][1]:
            low, high = POLICY_LIMITS[name]
            violations.append(FieldViolation(f"policy.{name}", f"must be {low} to {high}"))
    return violations

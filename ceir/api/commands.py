"""Requests to commands: one converter per mutating RPC.

Each converter takes the decoded request and the time (the request is
judged against the register's clock: a tourist's expiry must lie ahead),
checks every field, and returns the domain command, or raises one
InvalidArgument that names every wrong field by its path in the request
(AIP-193 field violations), so a caller fixes its request in one go.
Nothing here looks at the lists: whether an IMEI is taken is the handler's
question (``ceir.service.handlers``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ceir.domain import columns
from ceir.domain.commands import (
    AddException,
    ImportChunk,
    ImportRow,
    RegisterDevice,
    RemoveException,
    ReportRecovered,
    ReportStolen,
    RevokeRegistration,
    UpdatePolicy,
)
from ceir.domain.errors import FieldViolation, InvalidArgument
from ceir.domain.identifiers import parse_imei, validate_imsi
from ceir.domain.model import DeviceRegistration, ImportRejection, Phase, RegistrationSource
from ceir.domain.validation import (
    POLICY_FIELDS,
    check_text,
    device_registration,
    imei_keys,
    plain_device,
    policy_violations,
    raise_if,
)
from ceir.v1 import policy_pb2 as policy_pb
from ceir.v1 import registry_pb2 as registry_pb

from . import convert

__all__ = [
    "MAX_CHUNK_ROWS",
    "add_exception",
    "import_chunk",
    "register_device",
    "remove_exception",
    "report_recovered",
    "report_stolen",
    "revoke_registration",
    "update_policy",
]

MAX_CHUNK_ROWS = 10_000  # rows in one ImportRegistrations message
T = TypeVar("T")


def register_device(request: registry_pb.RegisterDeviceRequest, now_us: int) -> RegisterDevice:
    if not request.HasField("device"):
        raise InvalidArgument.field("device", "a device is required")
    return RegisterDevice(_device(request.device, now_us))


def _device(device: registry_pb.DeviceRegistration, now_us: int) -> DeviceRegistration:
    """The device of a request or an import row (INVALID_REGISTRATION if wrong)."""
    found: list[FieldViolation] = []
    return device_registration(
        imeis=list(device.imeis),
        source=device.source,
        reference=device.reference,
        valid_until_us=convert.request_micros(
            device.valid_until, device.HasField("valid_until"), "device.valid_until", found
        ),
        brand=device.brand,
        model=device.model,
        now_us=now_us,
        found=found,
    )


def revoke_registration(
    request: registry_pb.RevokeRegistrationRequest, now_us: int
) -> RevokeRegistration:
    violations: list[FieldViolation] = []
    keys = imei_keys(list(request.imeis), "imeis", violations, limit=1_000)
    reason = check_text(request.reason, "reason", 256, violations, required=True)
    raise_if(violations)
    return RevokeRegistration(tuple(keys), reason)


def report_stolen(request: registry_pb.ReportStolenRequest, now_us: int) -> ReportStolen:
    violations: list[FieldViolation] = []
    keys = imei_keys(list(request.imeis), "imeis", violations, limit=8)
    report = check_text(request.police_report, "police_report", 128, violations, required=True)
    subscriber = request.subscriber_imsi
    if not subscriber:
        violations.append(
            FieldViolation(
                "subscriber_imsi", "is required: the IMSI of the subscriber whose device it is"
            )
        )
    else:
        _collect(violations, lambda: validate_imsi(subscriber, "subscriber_imsi"))
    raise_if(violations)
    return ReportStolen(tuple(keys), report, subscriber)


def report_recovered(request: registry_pb.ReportRecoveredRequest, now_us: int) -> ReportRecovered:
    violations: list[FieldViolation] = []
    keys = imei_keys(list(request.imeis), "imeis", violations, limit=8)
    report = check_text(request.police_report, "police_report", 128, violations, required=True)
    raise_if(violations)
    return ReportRecovered(tuple(keys), report)


def add_exception(request: registry_pb.AddExceptionRequest, now_us: int) -> AddException:
    violations: list[FieldViolation] = []
    key = _pair(request.imei, request.imsi, violations)
    reason = check_text(request.reason, "reason", 256, violations)
    raise_if(violations)
    return AddException(key, request.imsi, reason)


def remove_exception(request: registry_pb.RemoveExceptionRequest, now_us: int) -> RemoveException:
    violations: list[FieldViolation] = []
    key = _pair(request.imei, request.imsi, violations)
    raise_if(violations)
    return RemoveException(key, request.imsi)


def update_policy(request: policy_pb.UpdatePolicyRequest, now_us: int) -> UpdatePolicy:
    """The fields named by the update mask, and their new values."""
    values: dict[str, int] = {}
    unknown: list[FieldViolation] = []
    for path in request.update_mask.paths:
        if path in POLICY_FIELDS:
            values[path] = int(getattr(request.policy, path))
        else:
            unknown.append(
                FieldViolation(
                    "update_mask", f"cannot change {path!r}; one of {', '.join(POLICY_FIELDS)}"
                )
            )
    if unknown:
        raise InvalidArgument(unknown[0].description, violations=unknown)
    raise_if(policy_violations(values), "INVALID_POLICY")
    phase = values.get("phase")
    return UpdatePolicy(
        phase=None if phase is None else Phase(phase),
        grace_days=values.get("grace_days"),
        clone_threshold=values.get("clone_threshold"),
        clone_window_seconds=values.get("clone_window_seconds"),
    )


def import_chunk(
    request: registry_pb.ImportRegistrationsRequest, number: int, now_us: int
) -> ImportChunk:
    """Chunk ``number`` (from 0) of an import. A wrong row is not an error
    but a rejection naming its first wrong field; a chunk of too many rows is.

    The plain rows (one IMEI, no expiry, a known source that does not
    expire, short printable texts) are checked in columns: their IMEIs at
    once (``ceir.domain.columns``). Every other row, and a plain row whose
    IMEI fails, goes through the one-device converter, which names what is
    wrong exactly as ``RegisterDevice`` would.
    """
    if len(request.rows) > MAX_CHUNK_ROWS:
        raise InvalidArgument.field(
            "rows", f"at most {MAX_CHUNK_ROWS} rows per message, got {len(request.rows)}"
        )
    messages = list(request.rows)
    plain: list[int] = []  # positions of the plain rows
    imeis: list[str] = []
    fields: list[tuple[RegistrationSource, str, str, str]] = []
    for position, row in enumerate(messages):
        device = row.device
        found = device.imeis
        source = _PLAIN_SOURCES.get(device.source)
        if len(found) != 1 or source is None or device.HasField("valid_until"):
            continue
        reference, brand, model = device.reference, device.brand, device.model
        if (
            len(reference) > 128
            or len(brand) > 64
            or len(model) > 64
            or not (reference + brand + model).isprintable()
        ):
            continue
        plain.append(position)
        imeis.append(found[0])
        fields.append((source, reference.strip(), brand.strip(), model.strip()))
    keys = columns.imei_keys(imeis).tolist()
    devices: list[DeviceRegistration | None] = [None] * len(messages)
    for position, key, (plain_source, reference, brand, model) in zip(
        plain, keys, fields, strict=True
    ):
        if key != columns.MALFORMED:
            devices[position] = plain_device((key,), plain_source, reference, brand, model)
    rows: list[ImportRow] = []
    rejected: list[ImportRejection] = []
    for position, row in enumerate(messages):
        checked = devices[position]
        if checked is not None:
            rows.append(ImportRow(row.row, checked))
            continue
        try:
            rows.append(ImportRow(row.row, _device(row.device, now_us)))
        except InvalidArgument as error:
            first = error.violations[0]
            rejected.append(ImportRejection(row.row, first.field, first.description))
    return ImportChunk(number, tuple(rows), tuple(rejected), request.confirm_ranges)


# Sources whose registrations do not expire (a tourist's must, so its row
# takes the one-device path, which checks its expiry).
_PLAIN_SOURCES: dict[int, RegistrationSource] = {
    int(s): s for s in RegistrationSource if s is not RegistrationSource.TOURIST
}


def _pair(imei: str, imsi: str, violations: list[FieldViolation]) -> int:
    """The IMEI's key (0 if wrong); violations for a wrong IMEI or IMSI."""
    key = _collect(violations, lambda: parse_imei(imei, "imei"))
    _collect(violations, lambda: validate_imsi(imsi, "imsi"))
    return 0 if key is None else key


def _collect(violations: list[FieldViolation], check: Callable[[], T]) -> T | None:
    """The check's value, or None with its violations added to ``violations``."""
    try:
        return check()
    except InvalidArgument as error:
        violations.extend(error.violations)
        return None

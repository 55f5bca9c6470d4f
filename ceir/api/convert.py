"""Conversions between ceir.v1 messages and domain values: the only place
where protobuf types meet the domain."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from google.protobuf.timestamp_pb2 import Timestamp

from ceir.audit.commitment import subscriber_commitment
from ceir.audit.leaf import Leaf, leaf_view
from ceir.domain import model
from ceir.domain.errors import FieldViolation
from ceir.domain.identifiers import format_imei_key
from ceir.domain.validation import timestamp_micros
from ceir.v1 import types_pb2 as pb
from ceir.v1.equipment_check_pb2 import CheckEquipmentResponse
from ceir.v1.registry_pb2 import (
    BlacklistEntry,
    ExceptionEntry,
    GetImeiRecordResponse,
    Notification,
    Registration,
)


def timestamp(micros: int | None) -> Timestamp | None:
    if micros is None:
        return None
    stamp = Timestamp()
    stamp.FromMicroseconds(micros)
    return stamp


def request_micros(
    stamp: Timestamp, present: bool, field: str, violations: list[FieldViolation]
) -> int | None:
    """Microseconds of a request's Timestamp field, or None when the field is
    unset or out of range (then a violation names ``field.seconds`` or
    ``field.nanos``, to be reported with the request's other violations)."""
    if not present:
        return None
    return timestamp_micros(stamp.seconds, stamp.nanos, field, violations)


def micros(stamp: Timestamp, present: bool) -> int | None:
    """Microseconds of a Timestamp field of a message the register sent, or
    None when the field is unset.

    Plain arithmetic rather than ``ToMicroseconds``, which raises for a
    Timestamp outside years 1 to 9999: a client recomputes a change's leaf
    from exactly the fields it received. Requests go through
    ``request_micros``, which refuses such values.
    """
    return stamp.seconds * 1_000_000 + stamp.nanos // 1_000 if present else None


def decision(value: model.Decision) -> CheckEquipmentResponse:
    key = value.imei_key
    response = CheckEquipmentResponse(
        status=value.status,  # type: ignore[arg-type]
        reasons=value.reasons,  # type: ignore[arg-type]
        imei_key="" if key is None else f"{key:014d}",
        sequence=value.sequence,
    )
    if value.block_date_us is not None:
        response.block_date.FromMicroseconds(value.block_date_us)
    return response


def fill_decision(response: CheckEquipmentResponse, value: model.Decision) -> None:
    """Write a decision into a response message (of a stream's answer)."""
    response.status = value.status  # type: ignore[assignment]
    response.reasons.extend(value.reasons)  # type: ignore[arg-type]
    if value.imei_key is not None:
        response.imei_key = f"{value.imei_key:014d}"
    response.sequence = value.sequence
    if value.block_date_us is not None:
        response.block_date.FromMicroseconds(value.block_date_us)


def fill_decisions(
    results: RepeatedCompositeFieldContainer[CheckEquipmentResponse],
    decisions: Iterable[model.Decision],
) -> None:
    """Append a response per decision (on the hot path of batches: one
    ``add`` with every field at once costs about half of setting them one by one)."""
    add = results.add
    for value in decisions:
        key = value.imei_key
        response = add(
            status=value.status,
            reasons=value.reasons,
            imei_key="" if key is None else f"{key:014d}",
            sequence=value.sequence,
        )
        if value.block_date_us is not None:
            response.block_date.FromMicroseconds(value.block_date_us)


def policy(value: model.Policy) -> pb.Policy:
    message = pb.Policy(
        phase=value.phase.value,  # type: ignore[arg-type]
        grace_days=value.grace_days,
        clone_threshold=value.clone_threshold,
        clone_window_seconds=value.clone_window_seconds,
        updated_by=value.updated_by,
    )
    if value.updated_at_us:
        message.update_time.FromMicroseconds(value.updated_at_us)
    return message


def change(value: model.Change, *, clear: bool = True) -> pb.ListChange:
    """The ``ListChange`` of a domain change, with every field its leaf needs.

    ``clear`` (the default) is the full view, for the subscriber's own
    operator and regulators: the IMSI, MSISDN and salt of a version 2 change
    beside their commitment. ``clear=False`` leaves those three empty and the
    commitment only, from which any receiver still rebuilds the leaf. A
    version 1 change has no commitment: its leaf holds the numbers
    themselves, so its message carries them in either view.
    """
    message = pb.ListChange(
        sequence=value.sequence,
        kind=value.kind.value,  # type: ignore[arg-type]
        imei_key="" if value.imei_key is None else format_imei_key(value.imei_key),
        device_id=value.device_id,
        operator_mcc_mnc=value.operator_mcc_mnc,
        leaf_version=value.leaf_version,
        actor=value.actor,
        reference=value.reference,
        brand=value.brand,
        model=value.model,
        device_imei_keys=[format_imei_key(key) for key in value.device_imei_keys],
        police_report=value.police_report,
        reason=value.reason,
    )
    message.commit_time.FromMicroseconds(value.committed_at_us)
    if value.source is not None:
        message.source = value.source.value  # type: ignore[assignment]
    if value.valid_until_us is not None:
        message.valid_until.FromMicroseconds(value.valid_until_us)
    if value.blacklist_cause is not None:
        message.blacklist_cause = value.blacklist_cause.value  # type: ignore[assignment]
    if value.block_date_us is not None:
        message.block_date.FromMicroseconds(value.block_date_us)
    if value.policy is not None:
        message.policy.CopyFrom(policy(value.policy))
    _fill_subscriber(message, value, clear)
    return message


def _fill_subscriber(message: pb.ListChange, value: model.Change, clear: bool) -> None:
    """The subscriber fields of a change's message, in the view ``clear`` names."""
    if value.leaf_version == 1:
        message.imsi, message.msisdn = value.imsi, value.msisdn
        return
    if value.imsi and value.subscriber_salt:
        message.subscriber_commitment = subscriber_commitment(
            value.subscriber_salt, value.imsi, value.msisdn
        )
    if clear:
        message.imsi, message.msisdn = value.imsi, value.msisdn
        message.subscriber_salt = value.subscriber_salt


def change_from_pb(message: pb.ListChange) -> model.Change:
    """The domain change a ``ListChange`` states, clear subscriber numbers included.

    ``leaf_version`` 0 (from a server older than version 2) reads as 1. A
    message with a commitment but no IMSI and salt (another operator's
    subscriber) gives a change without a subscriber, which does not rebuild
    the leaf: use ``leaf_from_pb`` to hash it. Raises ValueError for an enum
    number the domain does not know.
    """
    policy_value = None
    if message.HasField("policy"):
        given = message.policy
        policy_value = model.Policy(
            phase=model.Phase(given.phase),
            grace_days=given.grace_days,
            clone_threshold=given.clone_threshold,
            clone_window_seconds=given.clone_window_seconds,
            updated_at_us=micros(given.update_time, given.HasField("update_time")) or 0,
            updated_by=given.updated_by,
        )
    return model.Change(
        kind=model.ChangeKind(message.kind),
        imei_key=int(message.imei_key) if message.imei_key else None,
        imsi=message.imsi,
        msisdn=message.msisdn,
        source=model.RegistrationSource(message.source) if message.source else None,
        valid_until_us=micros(message.valid_until, message.HasField("valid_until")),
        device_id=message.device_id,
        blacklist_cause=model.BlacklistCause(message.blacklist_cause)
        if message.blacklist_cause
        else None,
        block_date_us=micros(message.block_date, message.HasField("block_date")),
        operator_mcc_mnc=message.operator_mcc_mnc,
        policy=policy_value,
        sequence=message.sequence,
        committed_at_us=micros(message.commit_time, True) or 0,
        actor=message.actor,
        reference=message.reference,
        brand=message.brand,
        model=message.model,
        device_imei_keys=tuple(int(key) for key in message.device_imei_keys),
        police_report=message.police_report,
        reason=message.reason,
        subscriber_salt=message.subscriber_salt,
        leaf_version=message.leaf_version or 1,
    )


def leaf_from_pb(message: pb.ListChange) -> Leaf:
    """What the leaf of a received ``ListChange`` records, for any receiver.

    A version 2 message's ``subscriber_commitment`` stands for the subscriber
    (a receiver given only the commitment rebuilds the leaf with it); without
    one, the commitment is computed from the IMSI, MSISDN and salt. Raises
    ``LeafEncodingError`` (an IMSI without a commitment or a salt) and
    ValueError as ``change_from_pb``.
    """
    value = change_from_pb(message)
    if value.leaf_version == 1 or not message.subscriber_commitment:
        return leaf_view(value)
    without_subscriber = replace(value, imsi="", msisdn="", subscriber_salt=b"")
    return replace(
        leaf_view(without_subscriber), subscriber_commitment=message.subscriber_commitment
    )


def registration(value: model.Registration) -> Registration:
    message = Registration(
        device_id=value.device_id,
        imei_keys=[format_imei_key(key) for key in value.imei_keys],
        source=value.source.value,  # type: ignore[arg-type]
        reference=value.reference,
        brand=value.brand,
        model=value.model,
        registered_by=value.registered_by,
    )
    message.register_time.FromMicroseconds(value.registered_at_us)
    if value.valid_until_us is not None:
        message.valid_until.FromMicroseconds(value.valid_until_us)
    return message


def notification(value: model.Notification) -> Notification:
    message = Notification(
        imei_key=format_imei_key(value.imei_key),
        imsi=value.imsi,
        msisdn=value.msisdn,
        operator_mcc_mnc=value.operator_mcc_mnc,
    )
    message.first_seen_time.FromMicroseconds(value.first_seen_us)
    message.block_date.FromMicroseconds(value.block_date_us)
    return message


def imei_record(value: model.ImeiRecord) -> GetImeiRecordResponse:
    message = GetImeiRecordResponse(
        imei_key=format_imei_key(value.imei_key),
        notifications=[notification(n) for n in value.notifications],
        exceptions=[
            ExceptionEntry(
                imei_key=format_imei_key(e.imei_key),
                imsi=e.imsi,
                reason=e.reason,
                added_by=e.added_by,
            )
            for e in value.exceptions
        ],
        history=[change(c) for c in value.history],
        next_page_token=value.next_page_token,
        notifications_truncated=value.notifications_truncated,
        exceptions_truncated=value.exceptions_truncated,
    )
    if value.registration is not None:
        message.registration.CopyFrom(registration(value.registration))
    if value.blacklist is not None:
        entry = value.blacklist
        message.blacklist.CopyFrom(
            BlacklistEntry(
                imei_key=format_imei_key(entry.imei_key),
                cause=entry.cause.value,  # type: ignore[arg-type]
                police_report=entry.police_report,
                blocked_by=entry.blocked_by,
                subscriber_imsi=entry.subscriber_imsi,
            )
        )
        message.blacklist.block_time.FromMicroseconds(entry.blocked_at_us)
    return message


def change_for(value: model.Change, prefixes: tuple[str, ...] | None) -> pb.ListChange:
    """The change as a receiver sees it: ``prefixes`` are how the IMSIs start
    whose subscribers it may read (None: every one). Another subscriber's
    IMSI, MSISDN and salt are left out; the commitment, which is what the
    leaf holds, stays, so the receiver still rebuilds the leaf."""
    hidden = prefixes is not None and not value.imsi.startswith(prefixes)
    return change(value, clear=not (value.imsi and hidden))

"""Complaint requests to domain values, and complaints and diagnoses to
messages (the complaints desk's part of ``commands`` and ``convert``).

Every converter checks every field and raises one InvalidArgument naming
each wrong one by its path in the request.
"""

from __future__ import annotations

from typing import Any

from ceir.domain.commands import AddException, Command, ReportRecovered, WhitelistSibling
from ceir.domain.complaints import (
    Category,
    Complaint,
    ResolutionAction,
    State,
    format_tracking_id,
    parse_tracking_id,
)
from ceir.domain.errors import FieldViolation, InvalidArgument
from ceir.domain.identifiers import format_imei_key, parse_imei, validate_imsi, validate_msisdn
from ceir.domain.validation import check_text, imei_keys, raise_if
from ceir.service.complaints import Filing, Resolution
from ceir.service.diagnosis import Diagnosis
from ceir.v1 import complaints_pb2 as pb
from ceir.v1 import registry_pb2

from . import commands, convert

MAX_TEXT = 1_000
MAX_BOX_REFERENCE = 100
_UPDATE_TARGETS = frozenset(
    {State.INVESTIGATING, State.WAITING_FOR_SUBSCRIBER, State.RESOLVED, State.REJECTED}
)

_STATE_VALUES = frozenset(int(s) for s in State)

__all__ = ["complaint", "diagnosis", "filing", "resolution", "update_target"]


def filing(request: pb.FileComplaintRequest) -> Filing:
    violations: list[FieldViolation] = []
    keys = imei_keys(list(request.imeis), "imeis", violations, limit=8)
    imsi, msisdn = request.imsi, request.msisdn
    if imsi:
        _collect(violations, lambda: validate_imsi(imsi, "imsi"))
    if msisdn:
        msisdn = _collect(violations, lambda: validate_msisdn(request.msisdn, "msisdn")) or ""
    category = _category(request.category, violations)
    description = check_text(request.description, "description", MAX_TEXT, violations)
    raise_if(violations)
    assert category is not None
    return Filing(tuple(keys), imsi, msisdn, category, description)


def _category(value: int, violations: list[FieldViolation]) -> Category | None:
    names = ", ".join(f"COMPLAINT_CATEGORY_{c.name}" for c in Category)
    if value == 0:
        violations.append(FieldViolation("category", f"is required: one of {names}"))
        return None
    try:
        return Category(value)
    except ValueError:
        violations.append(FieldViolation("category", f"unknown category {value}; one of {names}"))
        return None


def tracking_number(value: str) -> int:
    return parse_tracking_id(value, "tracking_id")


def update_target(request: pb.UpdateComplaintRequest) -> tuple[int, State, str]:
    violations: list[FieldViolation] = []
    number = _collect(violations, lambda: parse_tracking_id(request.tracking_id))
    allowed = ", ".join(f"COMPLAINT_STATE_{s.name}" for s in sorted(_UPDATE_TARGETS))
    target = State(request.state) if int(request.state) in _STATE_VALUES else None
    if target not in _UPDATE_TARGETS:
        violations.append(FieldViolation("state", f"one of {allowed}, not {request.state}"))
    note = check_text(request.note, "note", MAX_TEXT, violations)
    raise_if(violations)
    assert number is not None and target is not None
    return number, target, note


def state_filter(value: int) -> State | None:
    """ListComplaints' state: unspecified for any."""
    if value == 0:
        return None
    try:
        return State(value)
    except ValueError:
        raise InvalidArgument.field("state", f"unknown state {value}") from None


def resolution(request: pb.ResolveComplaintRequest, now_us: int) -> Resolution:
    violations: list[FieldViolation] = []
    number = _collect(violations, lambda: parse_tracking_id(request.tracking_id))
    note = check_text(request.note, "note", MAX_TEXT, violations, required=True)
    which = request.WhichOneof("action")
    tracking = format_tracking_id(number) if number is not None else ""
    action: ResolutionAction | None = None
    command: Command[Any] | None = None
    if which is None:
        names = ", ".join(a.value for a in ResolutionAction)
        violations.append(FieldViolation("action", f"is required: one of {names}"))
    else:
        action = ResolutionAction(which)
        command = _command(request, action, tracking, now_us, violations)
    raise_if(violations)
    assert number is not None and action is not None
    return Resolution(number, note, action, command)


def _command(
    request: pb.ResolveComplaintRequest,
    action: ResolutionAction,
    tracking: str,
    now_us: int,
    violations: list[FieldViolation],
) -> Command[Any] | None:
    """The audited operation that carries the action out (None: no change)."""
    reason = f"complaint {tracking}"
    if action is ResolutionAction.WHITELIST_SIBLING:
        sibling = request.whitelist_sibling
        key = _collect(violations, lambda: parse_imei(sibling.imei, "whitelist_sibling.imei"))
        registered = _collect(
            violations,
            lambda: parse_imei(sibling.registered_imei, "whitelist_sibling.registered_imei"),
        )
        box = check_text(
            sibling.box_reference,
            "whitelist_sibling.box_reference",
            MAX_BOX_REFERENCE,
            violations,
            required=True,
        )
        if key is None or registered is None:
            return None
        return WhitelistSibling(key, registered, f"{reason}, box {box}")
    if action is ResolutionAction.PAIR_SIM:
        pair = request.pair_sim
        key = _collect(violations, lambda: parse_imei(pair.imei, "pair_sim.imei"))
        _collect(violations, lambda: validate_imsi(pair.imsi, "pair_sim.imsi"))
        return None if key is None else AddException(key, pair.imsi, reason)
    if action is ResolutionAction.UNBLOCK:
        key = _collect(violations, lambda: parse_imei(request.unblock.imei, "unblock.imei"))
        return None if key is None else ReportRecovered((key,), reason)
    if action is ResolutionAction.REGISTER_DEVICE:
        wrapper = request.register_device
        if not wrapper.HasField("device"):
            violations.append(FieldViolation("register_device.device", "a device is required"))
            return None
        try:
            return commands.register_device(
                registry_pb2.RegisterDeviceRequest(device=wrapper.device), now_us
            )
        except InvalidArgument as error:
            violations.extend(
                FieldViolation(f"register_device.{v.field}", v.description)
                for v in error.violations
            )
            return None
    return None


def _collect(violations: list[FieldViolation], check: Any) -> Any:
    try:
        return check()
    except InvalidArgument as error:
        violations.extend(error.violations)
        return None


# --- to messages ---------------------------------------------------------------------------


def complaint(value: Complaint) -> pb.Complaint:
    message = pb.Complaint(
        tracking_id=value.tracking_id,
        category=int(value.category),  # type: ignore[arg-type]
        state=int(value.state),  # type: ignore[arg-type]
        imei_keys=[format_imei_key(k) for k in value.imei_keys],
        imsi=value.imsi,
        msisdn=value.msisdn,
        description=value.description,
        filed_by=value.filed_by,
        owner=value.owner,
        deadline_missed=value.deadline_missed,
        escalated_to=value.escalated_to,
    )
    message.file_time.FromMicroseconds(value.filed_at_us)
    message.deadline.FromMicroseconds(value.deadline_us)
    if value.closed_at_us is not None:
        message.close_time.FromMicroseconds(value.closed_at_us)
    for step in value.history:
        added = message.history.add(
            number=step.number,
            kind=int(step.kind),
            actor=step.actor,
            from_state=0 if step.from_state is None else int(step.from_state),
            to_state=int(step.to_state),
            note=step.note,
            action=step.action,
            change_sequences=list(step.change_sequences),
        )
        added.step_time.FromMicroseconds(step.at_us)
    return message


def diagnosis(value: Diagnosis) -> pb.DiagnoseImeiResponse:
    decision = value.explanation.decision
    key = decision.imei_key
    response = pb.DiagnoseImeiResponse(
        imei_key="" if key is None else format_imei_key(key),
        status=decision.status,  # type: ignore[arg-type]
        reasons=decision.reasons,  # type: ignore[arg-type]
        rules=[
            pb.RuleStep(
                number=step.number,
                rule=step.rule,
                outcome=int(step.outcome),  # type: ignore[arg-type]
                detail=step.detail,
            )
            for step in value.explanation.steps
        ],
        registration_valid=value.registration_valid,
    )
    if decision.block_date_us is not None:
        response.block_date.FromMicroseconds(decision.block_date_us)
    if value.record is not None:
        record = convert.imei_record(value.record)
        if record.HasField("registration"):
            response.registration.CopyFrom(record.registration)
        if record.HasField("blacklist"):
            response.blacklist.CopyFrom(record.blacklist)
        response.exceptions.extend(record.exceptions)
        response.notifications.extend(record.notifications)
        response.changes.extend(record.history)
        response.next_page_token = record.next_page_token
    return response

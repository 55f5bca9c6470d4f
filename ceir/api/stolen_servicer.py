"""The StolenCaseService servicer: requests to domain values and back.

Validation of the request's fields lives here (as in ``commands``); the
rules of cases live in ``ceir.domain.stolen`` and ``ceir.service.stolen_cases``.
"""

from __future__ import annotations

import grpc

from ceir.domain.errors import FieldViolation
from ceir.domain.identifiers import format_imei_key, validate_imsi, validate_msisdn
from ceir.domain.permissions import Action, require
from ceir.domain.stolen import CaseState, StolenCase, TheftAlert
from ceir.domain.validation import check_text, imei_keys, raise_if
from ceir.service.register import Replayed
from ceir.service.stolen_cases import CaseFiling, Idempotency, StolenCaseService
from ceir.service.theft_alerts_reader import TheftAlertReader
from ceir.v1 import stolen_pb2 as pb

from .calls import current_caller
from .commands import _collect
from .servicers import fingerprint_of

MAX_IMEIS = 8  # one per SIM slot, as ReportStolen


def case_message(case: StolenCase) -> pb.StolenCase:
    message = pb.StolenCase(
        case_id=case.case_id,
        state=pb.StolenCaseState.ValueType(case.state),  # the enum's values are the proto's
        imei_keys=[format_imei_key(k) for k in case.imei_keys],
        imsi=case.imsi,
        msisdn=case.msisdn,
        police_report=case.police_report,
        reporter=case.reporter,
    )
    message.filed_time.FromMicroseconds(case.filed_at_us)
    message.update_time.FromMicroseconds(case.updated_at_us)
    for step in case.history:
        item = message.history.add(
            state=pb.StolenCaseState.ValueType(step.state),
            actor=step.actor,
            note=step.note,
            sequence=step.sequence,
        )
        item.time.FromMicroseconds(step.at_us)
    return message


def alert_message(alert: TheftAlert) -> pb.TheftAlert:
    message = pb.TheftAlert(
        alert_id=alert.alert_id,
        case_id=alert.case_id,
        imei_key=format_imei_key(alert.imei_key),
        imsi=alert.imsi,
        msisdn=alert.msisdn,
        seen_by=alert.seen_by,
    )
    message.seen_time.FromMicroseconds(alert.seen_at_us)
    return message


def filing(request: pb.FileStolenCaseRequest) -> CaseFiling:
    violations: list[FieldViolation] = []
    keys = imei_keys(list(request.imeis), "imeis", violations, limit=MAX_IMEIS)
    if len(set(keys)) != len(keys):
        violations.append(FieldViolation("imeis", "an IMEI is given twice"))
    report = check_text(request.police_report, "police_report", 128, violations, required=True)
    imsi = request.imsi
    if not imsi:
        violations.append(
            FieldViolation("imsi", "is required: the IMSI of the subscriber whose phone it is")
        )
    else:
        _collect(violations, lambda: validate_imsi(imsi, "imsi"))
    msisdn = ""
    if request.msisdn:
        msisdn = _collect(violations, lambda: validate_msisdn(request.msisdn, "msisdn")) or ""
    raise_if(violations)
    return CaseFiling(tuple(keys), imsi, msisdn, report)


def target_state(request: pb.UpdateStolenCaseRequest) -> tuple[CaseState, str]:
    violations: list[FieldViolation] = []
    if not request.case_id:
        violations.append(FieldViolation("case_id", "is required"))
    elif len(request.case_id) > 32:
        violations.append(FieldViolation("case_id", "at most 32 characters"))
    state: CaseState | None = None
    try:
        state = CaseState(request.state)
    except ValueError:
        violations.append(FieldViolation("state", "BLOCKED, RECOVERED or PENDING, not unspecified"))
    note = check_text(request.note, "note", 256, violations)
    raise_if(violations)
    assert state is not None
    return state, note


class StolenCaseServicer:
    def __init__(self, cases: StolenCaseService, alerts: TheftAlertReader) -> None:
        self.cases = cases
        self.alerts = alerts

    def FileStolenCase(
        self, request: pb.FileStolenCaseRequest, context: grpc.ServicerContext
    ) -> pb.FileStolenCaseResponse:
        caller = current_caller()
        require(caller, Action.STOLEN_CASES)  # who may never file is told so first
        ask = Idempotency(
            request.request_id,
            fingerprint_of(request),
            lambda case, _sequence: _filed(case).SerializeToString(deterministic=True),
        )
        outcome = self.cases.file(caller, filing(request), ask)
        if isinstance(outcome, Replayed):
            return pb.FileStolenCaseResponse.FromString(outcome.response)
        return _filed(outcome)

    def UpdateStolenCase(
        self, request: pb.UpdateStolenCaseRequest, context: grpc.ServicerContext
    ) -> pb.UpdateStolenCaseResponse:
        caller = current_caller()
        require(caller, Action.STOLEN_CASES)
        state, note = target_state(request)
        ask = Idempotency(
            request.request_id,
            fingerprint_of(request),
            lambda case, sequence: _updated(case, sequence).SerializeToString(deterministic=True),
        )
        outcome = self.cases.update(caller, request.case_id, state, note, ask)
        if isinstance(outcome, Replayed):
            return pb.UpdateStolenCaseResponse.FromString(outcome.response)
        return _updated(outcome.value, outcome.sequence)

    def GetStolenCase(
        self, request: pb.GetStolenCaseRequest, context: grpc.ServicerContext
    ) -> pb.GetStolenCaseResponse:
        case = self.cases.get(current_caller(), request.case_id)
        return pb.GetStolenCaseResponse(stolen_case=case_message(case))

    def ListStolenCases(
        self, request: pb.ListStolenCasesRequest, context: grpc.ServicerContext
    ) -> pb.ListStolenCasesResponse:
        cases, token = self.cases.page(current_caller(), request.page_size, request.page_token)
        return pb.ListStolenCasesResponse(
            stolen_cases=[case_message(c) for c in cases], next_page_token=token
        )

    def ListTheftAlerts(
        self, request: pb.ListTheftAlertsRequest, context: grpc.ServicerContext
    ) -> pb.ListTheftAlertsResponse:
        alerts, token = self.alerts.page(current_caller(), request.page_size, request.page_token)
        return pb.ListTheftAlertsResponse(
            alerts=[alert_message(a) for a in alerts], next_page_token=token
        )


def _filed(case: StolenCase) -> pb.FileStolenCaseResponse:
    return pb.FileStolenCaseResponse(stolen_case=case_message(case))


def _updated(case: StolenCase, sequence: int) -> pb.UpdateStolenCaseResponse:
    return pb.UpdateStolenCaseResponse(stolen_case=case_message(case), sequence=sequence)

"""The thin servicer of ``ceir.v1.OversightService`` and its conversions.

The reads call ``ceir.service.oversight``; the bulk revocation is a
``Mutation`` like every write: its converter builds the page's command,
``Register.execute`` runs it and stores the page's answer (AIP-155).
"""

from __future__ import annotations

import grpc

from ceir.domain.commands import RevokeRegistrationsBy
from ceir.domain.errors import FieldViolation
from ceir.domain.identifiers import format_imei_key
from ceir.domain.oversight import (
    HISTORY_HOURS,
    WINDOW_US,
    AccountAlert,
    AlertRule,
    RegistrationRow,
    RevocationPage,
)
from ceir.service.oversight import OversightService, next_revoke_token, revoke_command
from ceir.service.register import Committed
from ceir.v1 import oversight_pb2 as pb

from . import convert
from .calls import current_caller
from .servicers import Mutation, Mutations

__all__ = ["OversightServicer"]


def _revoke_command(request: pb.RevokeRegistrationsByRequest, now_us: int) -> RevokeRegistrationsBy:
    violations: list[FieldViolation] = []
    return revoke_command(
        request.organisation,
        convert.request_micros(
            request.start_time, request.HasField("start_time"), "start_time", violations
        ),
        convert.request_micros(
            request.end_time, request.HasField("end_time"), "end_time", violations
        ),
        request.reason,
        request.page_size,
        request.page_token,
        request.request_id,
        violations,
    )


def _revoked(done: Committed[RevocationPage]) -> pb.RevokeRegistrationsByResponse:
    page = done.value
    return pb.RevokeRegistrationsByResponse(
        next_page_token=next_revoke_token(page),
        rows=[
            pb.RevocationRow(
                imei_key=format_imei_key(row.imei_key),
                registration_sequence=row.registration_sequence,
                outcome=int(row.outcome),  # type: ignore[arg-type]  # numbered as the proto's
                revocation_sequence=row.revocation_sequence,
            )
            for row in page.rows
        ],
        sequence=done.sequence,
        set_sequence=page.upper,
        revoked=page.revoked,
    )


REVOKE_REGISTRATIONS_BY = Mutation(
    RevokeRegistrationsBy, _revoke_command, _revoked, pb.RevokeRegistrationsByResponse
)


def alert(value: AccountAlert) -> pb.AccountAlert:
    message = pb.AccountAlert(
        alert_id=value.alert_id,
        organisation=value.organisation,
        registrations=value.registrations,
        registrations_at_alert=value.registrations_at_alert,
        baseline=value.baseline,
        threshold=value.threshold,
        factor=value.factor,
        sequence=value.sequence,
    )
    message.window_start_time.FromMicroseconds(value.window_start_us)
    message.window_end_time.FromMicroseconds(value.window_end_us)
    message.raise_time.FromMicroseconds(value.raised_at_us)
    return message


def settings(rule: AlertRule) -> pb.AccountAlertSettings:
    return pb.AccountAlertSettings(
        factor=rule.factor,
        floor=rule.floor,
        history_hours=HISTORY_HOURS,
        window_seconds=WINDOW_US // 1_000_000,
    )


def registration(row: RegistrationRow) -> pb.AccountRegistration:
    message = pb.AccountRegistration(
        imei_key=format_imei_key(row.imei_key),
        device_id=row.device_id,
        source=row.source,  # type: ignore[arg-type]  # RegistrationSource's numbers
        reference=row.reference,
        sequence=row.sequence,
        on_whitelist=row.on_whitelist,
    )
    message.register_time.FromMicroseconds(row.registered_at_us)
    return message


class OversightServicer:
    def __init__(self, oversight: OversightService, mutations: Mutations) -> None:
        self.oversight = oversight
        self.mutations = mutations

    def ListAccountAlerts(
        self, request: pb.ListAccountAlertsRequest, context: grpc.ServicerContext
    ) -> pb.ListAccountAlertsResponse:
        alerts, token = self.oversight.list_alerts(
            current_caller(), request.page_size, request.page_token
        )
        return pb.ListAccountAlertsResponse(
            alerts=[alert(a) for a in alerts],
            next_page_token=token,
            settings=settings(self.oversight.rule),
        )

    def ListRegistrationsBy(
        self, request: pb.ListRegistrationsByRequest, context: grpc.ServicerContext
    ) -> pb.ListRegistrationsByResponse:
        violations: list[FieldViolation] = []
        page = self.oversight.list_registrations(
            current_caller(),
            request.organisation,
            convert.request_micros(
                request.start_time, request.HasField("start_time"), "start_time", violations
            ),
            convert.request_micros(
                request.end_time, request.HasField("end_time"), "end_time", violations
            ),
            request.page_size,
            request.page_token,
            violations,
        )
        return pb.ListRegistrationsByResponse(
            registrations=[registration(row) for row in page.rows],
            next_page_token=page.next_page_token,
            set_sequence=page.upper,
        )

    def RevokeRegistrationsBy(
        self, request: pb.RevokeRegistrationsByRequest, context: grpc.ServicerContext
    ) -> pb.RevokeRegistrationsByResponse:
        return self.mutations.run(REVOKE_REGISTRATIONS_BY, request)

"""Shared pieces of the account-oversight tests: a server with a low alert
threshold, an insider account, and small clients of the API."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from ceir.api.server import RunningServer, ServerConfig, create_server
from ceir.domain.oversight import WINDOW_US
from ceir.service.clock import ManualClock
from ceir.service.orgs import add_organisation
from ceir.storage.database import Database
from ceir.v1 import (
    equipment_check_pb2_grpc,
    oversight_pb2,
    oversight_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    types_pb2,
)

from .helpers import imei

FACTOR, FLOOR = 5.0, 2.0  # a new account alerts above 10 registrations an hour
INSIDER = "kemenperin-insider"  # a Kemenperin account, the one abused


def start_server(db_url: str, clock: ManualClock) -> RunningServer:
    return create_server(
        ServerConfig(
            db=db_url,
            address="127.0.0.1:0",
            clock=clock,
            access_log=False,
            follow_interval=0.2,
            insecure=True,
            ephemeral_signing_key=True,
            metrics_port=None,
            account_alert_factor=FACTOR,
            account_alert_floor=FLOOR,
        )
    )


def start_of_next_hour(clock: ManualClock) -> int:
    """Move the clock to one minute past the next hour (so that a test's
    writes, a few seconds long, fall in one hour); that hour's start."""
    now = clock.now_us()
    hour = now - now % WINDOW_US + WINDOW_US
    clock.advance((hour + 60_000_000 - now) / 1_000_000)
    return hour


@pytest.fixture
def insider_token(db_url: str, tokens: dict[str, str]) -> str:
    db = Database(db_url)
    try:
        return add_organisation(db, INSIDER, "kemenperin", [])
    finally:
        db.dispose()


@pytest.fixture
def watched(
    db_url: str, tokens: dict[str, str], insider_token: str, clock: ManualClock
) -> Iterator[RunningServer]:
    running = start_server(db_url, clock)
    yield running
    running.stop(grace=1)
    gc.collect()


@dataclass
class Caller:
    """One organisation's stubs."""

    channel: grpc.Channel
    token: str

    def __post_init__(self) -> None:
        self.metadata = (("authorization", f"Bearer {self.token}"),)
        self.oversight = oversight_pb2_grpc.OversightServiceStub(self.channel)
        self.registry = registry_pb2_grpc.RegistryServiceStub(self.channel)
        self.registry_check = equipment_check_pb2_grpc.EquipmentCheckServiceStub(
            self.channel
        ).CheckEquipment

    def call(self, method: Any, request: Any) -> Any:
        return method(request, metadata=self.metadata, timeout=60)

    def register(self, value: str) -> int:
        """Register one TPP device (one write); the sequence after."""
        device = registry_pb2.DeviceRegistration(
            imeis=[value], source=types_pb2.REGISTRATION_SOURCE_TPP_IMPORT, reference="TPP-1"
        )
        answer = self.call(
            self.registry.RegisterDevice, registry_pb2.RegisterDeviceRequest(device=device)
        )
        return int(answer.sequence)

    def import_keys(
        self,
        serials: range | list[int],
        source: int = types_pb2.REGISTRATION_SOURCE_TPP_IMPORT,
        tac: int = 35_777_000,
        chunk: int = 10_000,
    ) -> int:
        """Register one device per serial in chunks (one write each); the sequence after."""
        serials = list(serials)
        requests = [
            registry_pb2.ImportRegistrationsRequest(
                rows=[
                    registry_pb2.ImportRow(
                        row=start + i + 1,
                        device=registry_pb2.DeviceRegistration(
                            imeis=[imei(s, tac)],
                            source=source,  # type: ignore[arg-type]
                            reference="TPP-X",
                        ),
                    )
                    for i, s in enumerate(serials[start : start + chunk])
                ]
            )
            for start in range(0, len(serials), chunk)
        ]
        answer = self.registry.ImportRegistrations(
            iter(requests), metadata=self.metadata, timeout=120
        )
        assert answer.rows_accepted == len(serials), answer
        return int(answer.sequence)

    def alerts(self) -> list[oversight_pb2.AccountAlert]:
        return list(
            self.call(
                self.oversight.ListAccountAlerts, oversight_pb2.ListAccountAlertsRequest()
            ).alerts
        )

    def registrations_by(
        self, organisation: str, start_us: int, end_us: int | None = None, page_size: int = 0
    ) -> list[oversight_pb2.AccountRegistration]:
        rows: list[oversight_pb2.AccountRegistration] = []
        token = ""
        while True:
            page = self.call(
                self.oversight.ListRegistrationsBy,
                oversight_pb2.ListRegistrationsByRequest(
                    organisation=organisation,
                    start_time=stamp(start_us),
                    end_time=stamp(end_us) if end_us is not None else None,
                    page_size=page_size,
                    page_token=token,
                ),
            )
            rows.extend(page.registrations)
            token = page.next_page_token
            if not token:
                return rows

    def revoke_page(
        self,
        organisation: str,
        start_us: int,
        end_us: int | None,
        request_id: str,
        token: str = "",
        page_size: int = 0,
        reason: str = "insider abuse, case 2022-10",
    ) -> oversight_pb2.RevokeRegistrationsByResponse:
        answer: oversight_pb2.RevokeRegistrationsByResponse = self.call(
            self.oversight.RevokeRegistrationsBy,
            oversight_pb2.RevokeRegistrationsByRequest(
                request_id=request_id,
                organisation=organisation,
                start_time=stamp(start_us),
                end_time=stamp(end_us) if end_us is not None else None,
                reason=reason,
                page_size=page_size,
                page_token=token,
            ),
        )
        return answer

    def revoke_all(
        self,
        organisation: str,
        start_us: int,
        end_us: int | None,
        request_id: str,
        page_size: int = 0,
    ) -> list[oversight_pb2.RevokeRegistrationsByResponse]:
        pages = [self.revoke_page(organisation, start_us, end_us, request_id, "", page_size)]
        while pages[-1].next_page_token:
            pages.append(
                self.revoke_page(
                    organisation,
                    start_us,
                    end_us,
                    request_id,
                    pages[-1].next_page_token,
                    page_size,
                )
            )
        return pages


def stamp(micros: int) -> Timestamp:
    value = Timestamp()
    value.FromMicroseconds(micros)
    return value


def alerts_counted(running: RunningServer, organisation: str) -> float:
    """ceir_account_alerts_total{organisation} of the server's metrics."""
    value = running.metrics.registry.get_sample_value(
        "ceir_account_alerts_total", {"organisation": organisation}
    )
    return value or 0.0

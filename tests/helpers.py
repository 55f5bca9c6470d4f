"""A test client of the public API: one stub set per organisation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from ceir.domain.identifiers import full_imei
from ceir.v1 import (
    complaints_pb2_grpc,
    custody_pb2_grpc,
    equipment_check_pb2,
    equipment_check_pb2_grpc,
    list_sync_pb2_grpc,
    policy_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    transparency_pb2_grpc,
    types_pb2,
)

R = TypeVar("R")

ORGS: dict[str, tuple[str, list[str]]] = {
    "telkomsel": ("operator", ["510-10"]),
    "indosat": ("operator", ["510-01", "510-21"]),
    "xl": ("operator", ["510-11"]),
    "kemenperin": ("kemenperin", []),
    "customs": ("customs", []),
    "kemlu": ("kemlu", []),
    "kominfo": ("kominfo", []),
}

TELKOMSEL_IMSI = "510101234567890"
INDOSAT_IMSI = "510011234567890"
ROAMER_IMSI = "525011234567890"  # Singapore


def imei(serial: int, tac: int = 35209900) -> str:
    """A Luhn-valid 15-digit IMEI."""
    return full_imei(tac * 1_000_000 + serial)


@dataclass
class Client:
    """Stubs bound to one organisation's token."""

    channel: grpc.Channel
    token: str

    def __post_init__(self) -> None:
        self.metadata = (("authorization", f"Bearer {self.token}"),)
        self.check = equipment_check_pb2_grpc.EquipmentCheckServiceStub(self.channel)
        self.registry = registry_pb2_grpc.RegistryServiceStub(self.channel)
        self.sync = list_sync_pb2_grpc.ListSyncServiceStub(self.channel)
        self.policy = policy_pb2_grpc.PolicyServiceStub(self.channel)
        self.log = transparency_pb2_grpc.TransparencyServiceStub(self.channel)
        self.custody = custody_pb2_grpc.CustodyServiceStub(self.channel)
        self.complaints = complaints_pb2_grpc.ComplaintServiceStub(self.channel)

    def call(self, stub_method: Callable[..., R], request: Any, **kwargs: Any) -> R:
        return stub_method(request, metadata=self.metadata, timeout=30, **kwargs)

    def check_imei(
        self, value: str, imsi: str = TELKOMSEL_IMSI, msisdn: str = ""
    ) -> equipment_check_pb2.CheckEquipmentResponse:
        return self.call(
            self.check.CheckEquipment,
            equipment_check_pb2.CheckEquipmentRequest(imei=value, imsi=imsi, msisdn=msisdn),
        )

    def register(
        self,
        *imeis: str,
        source: types_pb2.RegistrationSource.ValueType = types_pb2.REGISTRATION_SOURCE_TPP_IMPORT,
        request_id: str = "",
        **fields: Any,
    ) -> registry_pb2.RegisterDeviceResponse:
        device = registry_pb2.DeviceRegistration(
            imeis=list(imeis),
            source=source,
            **fields,
        )
        return self.call(
            self.registry.RegisterDevice,
            registry_pb2.RegisterDeviceRequest(request_id=request_id, device=device),
        )


def status_names(response: equipment_check_pb2.CheckEquipmentResponse) -> tuple[str, list[str]]:
    """(status, reasons) by name, for readable assertions."""
    return (
        types_pb2.EquipmentStatus.Name(response.status),
        [types_pb2.Reason.Name(r) for r in response.reasons],
    )


def violations(error: grpc.RpcError) -> list[tuple[str, str]]:
    """The BadRequest field violations of a failed call."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    found: list[tuple[str, str]] = []
    if status is None:
        return found
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.extend((v.field, v.description) for v in bad.field_violations)
    return found


def error_reason(error: grpc.RpcError) -> str:
    """The ErrorInfo reason of a failed call."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is None:
        return ""
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    return ""

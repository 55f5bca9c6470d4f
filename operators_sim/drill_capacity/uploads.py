"""Registrations through the public API, and what became of each.

Imports go one chunk (10,000 rows) per ``ImportRegistrations`` call, each
under its own request id, so the drill knows which chunk the register took
and which it refused (a refused chunk fails the call; chunks before it in
a stream would stay). The range importer fills the register to its last
slot (a refused chunk is tried again in halves). Late registrations are one ``RegisterDevice`` each,
under a request id of their own: a refused one is sent again, with the same
id, once there is room (the replay), and counts as lost unless it is then
on the whitelist.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import numpy as np

from ceir.v1 import registry_pb2 as registry_pb
from ceir.v1 import registry_pb2_grpc as registry_grpc
from ceir.v1 import types_pb2 as pb

from ..codec import full_imei
from ..drill.errors import refusal
from .register import DrillRegister

__all__ = ["Event", "Uploads"]

CHUNK = 10_000
KEMENPERIN = "kemenperin"


@dataclass(frozen=True)
class Event:
    """One write: ``kind`` import or registration; ``outcome`` acknowledged or
    the refusal's reason (REGISTER_FULL, DENSE_RANGE...)."""

    at: float
    kind: str
    outcome: str
    imeis: int
    label: str = ""


def _row(number: int, key: int, reference: str) -> registry_pb.ImportRow:
    return registry_pb.ImportRow(
        row=number,
        device=registry_pb.DeviceRegistration(
            imeis=[full_imei(key)],
            source=pb.REGISTRATION_SOURCE_TPP_IMPORT,
            reference=reference,
            brand="Drill",
            model=reference,
        ),
    )


@dataclass
class Uploads:
    register: DrillRegister
    now: Callable[[], float]
    run_id: str
    events: list[Event] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)  # late key -> request id
    replayed: dict[int, int] = field(default_factory=dict)  # late key -> sequence
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _stub(self) -> registry_grpc.RegistryServiceStub:
        return registry_grpc.RegistryServiceStub(self.register.channel(KEMENPERIN))

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        return self.register.credentials[KEMENPERIN].metadata

    def _record(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def import_keys(
        self,
        keys: np.ndarray,
        reference: str,
        label: str,
        confirm: bool = False,
        fill: bool = False,
    ) -> tuple[int, str]:
        """Import ``keys`` chunk by chunk until one is refused; (IMEIs
        acknowledged, the refusal's reason or ""). ``fill``: a chunk refused
        as REGISTER_FULL is tried again in halves, down to one row, so the
        upload takes the register's last free slots (as the importers'
        uploads did in September 2020)."""
        accepted = 0
        values = keys.tolist()
        start, size, number = 0, CHUNK, 0
        while start < len(values):
            part = values[start : start + size]
            request = registry_pb.ImportRegistrationsRequest(
                request_id=f"{self.run_id}-{label}-{number}-{len(part)}",
                rows=[_row(start + i + 1, key, reference) for i, key in enumerate(part)],
                confirm_ranges=confirm,
            )
            number += 1
            try:
                answer = self._stub().ImportRegistrations(
                    iter([request]), metadata=self._metadata(), timeout=300
                )
            except grpc.RpcError as error:
                reason = refusal(error).reason
                self._record(Event(self.now(), "import", reason, len(part), label))
                if fill and reason == "REGISTER_FULL" and len(part) > 1:
                    size = len(part) // 2
                    continue
                return accepted, reason
            accepted += int(answer.rows_accepted)
            self._record(Event(self.now(), "import", "acknowledged", len(part), label))
            start += len(part)
        return accepted, ""

    def register_late(self, key: int) -> bool:
        """A new phone registered by itself; True if acknowledged."""
        request_id = f"{self.run_id}-late-{key}"
        try:
            self._register(key, request_id)
        except grpc.RpcError as error:
            reason = refusal(error).reason
            self._record(Event(self.now(), "registration", reason, 1))
            if reason != "REGISTER_FULL":
                raise
            self.refused[key] = request_id
            return False
        self._record(Event(self.now(), "registration", "acknowledged", 1))
        return True

    def _register(self, key: int, request_id: str) -> int:
        request = registry_pb.RegisterDeviceRequest(
            request_id=request_id,
            device=registry_pb.DeviceRegistration(
                imeis=[full_imei(key)],
                source=pb.REGISTRATION_SOURCE_TPP_PRODUCTION,
                reference=f"TPP-new-{key % 1_000_000}",
                brand="Drill",
                model="New phone",
            ),
        )
        answer = self._stub().RegisterDevice(request, metadata=self._metadata(), timeout=60)
        return int(answer.sequence)

    def replay(self) -> None:
        """Send every refused registration again, with its own request id."""
        for key, request_id in sorted(self.refused.items()):
            self.replayed[key] = self._register(key, request_id)
            self._record(Event(self.now(), "replay", "acknowledged", 1))

    def present(self, keys: list[int]) -> list[int]:
        """Which of ``keys`` have a registration now (as Kemenperin reads them)."""
        found = []
        for key in keys:
            record = self._stub().GetImeiRecord(
                registry_pb.GetImeiRecordRequest(imei=full_imei(key)),
                metadata=self._metadata(),
                timeout=30,
            )
            if record.HasField("registration"):
                found.append(key)
        return found

"""A steady stream of list writes that follows the custodian, and what was acknowledged.

Kemenperin registers one new device per write (a late TPP registration),
each with an IMEI no other write or device uses, under its own AIP-155
request id. A write the register cannot take now is sent again with the
same request id, so that it is applied once wherever it lands:

- ``REGISTER_FROZEN``: wait the RetryInfo's delay (1 s when it gives none)
  and send it again to the same register;
- ``REGISTER_MOVED`` or ``NOT_CUSTODIAN`` with an ``endpoint``: connect
  there and send it again;
- the register unreachable: wait a little and send it again.

Every acknowledged write is kept (request id, IMEI key, sequence,
endpoint): the verdict counts each one's ``WHITELIST_ADDED`` change in the
final log, so a lost write (none) or one applied twice (two) shows.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import grpc

from ceir.v1 import registry_pb2 as registry_pb
from ceir.v1 import registry_pb2_grpc as registry_grpc
from ceir.v1 import types_pb2 as pb

from ..codec import full_imei
from ..transport import Credentials, open_channel
from .errors import refusal
from .timeline import Timeline

log = logging.getLogger("operators_sim.drill.writer")

WRITER_TAC = 1_999_000  # a TAC no model of the population's catalogue has
FOLLOW = ("REGISTER_MOVED", "NOT_CUSTODIAN")
DOWN_RETRY = 0.2  # seconds between attempts while the register is unreachable
CALL_TIMEOUT = 10.0


@dataclass(frozen=True)
class Acknowledged:
    """A write the register acknowledged: it promised the change is in its log."""

    request_id: str
    imei_key: int
    sequence: int
    endpoint: str
    at: float


class ListWriter:
    """Writes at ``rate`` per second from its own thread, one write at a time."""

    def __init__(
        self,
        endpoint: str,
        credentials: Credentials,
        timeline: Timeline,
        *,
        rate: float = 5.0,
        run_id: str = "drill",
        first_serial: int = 0,
    ) -> None:
        self.endpoint = endpoint
        self.credentials = credentials
        self.timeline = timeline
        self.rate = rate
        self.run_id = run_id
        self.acknowledged: list[Acknowledged] = []
        self.failed: list[tuple[str, str]] = []  # request id, reason
        self._serial = first_serial
        self._channels: dict[str, grpc.Channel] = {}
        self._stop = threading.Event()
        self._give_up = threading.Event()
        self._thread = threading.Thread(target=self._run, name="list-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> bool:
        """Write no more; let the write under way land (or give up after
        ``timeout``). True when it landed or there was none."""
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._give_up.set()
            self._thread.join(CALL_TIMEOUT + 1)
            return False
        return True

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()

    def _stub(self, endpoint: str) -> registry_grpc.RegistryServiceStub:
        channel = self._channels.get(endpoint)
        if channel is None:
            channel = self._channels[endpoint] = open_channel(endpoint, self.credentials.tls)
        return registry_grpc.RegistryServiceStub(channel)

    def _run(self) -> None:
        interval = 1.0 / self.rate if self.rate > 0 else 0.0
        next_at = time.monotonic()
        while not self._stop.is_set():
            self._write_one()
            next_at += interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _write_one(self) -> None:
        self._serial += 1
        key = WRITER_TAC * 1_000_000 + self._serial
        request_id = f"{self.run_id}-write-{self._serial}"
        request = registry_pb.RegisterDeviceRequest(
            request_id=request_id,
            device=registry_pb.DeviceRegistration(
                imeis=[full_imei(key)],
                source=pb.REGISTRATION_SOURCE_TPP_IMPORT,
                reference=f"TPP-drill-{self._serial}",
                brand="Drill",
                model="Handover",
            ),
        )
        attempt = 0
        while not self._give_up.is_set():
            if attempt:
                self.timeline.write("retried", endpoint=self.endpoint)
            attempt += 1
            endpoint = self.endpoint
            try:
                response = self._stub(endpoint).RegisterDevice(
                    request, metadata=self.credentials.metadata, timeout=CALL_TIMEOUT
                )
            except grpc.RpcError as error:
                if not self._follow(error, request_id):
                    return
                continue
            sequence = int(response.sequence)
            self.acknowledged.append(
                Acknowledged(request_id, key, sequence, endpoint, self.timeline.now())
            )
            self.timeline.write("acknowledged", endpoint=endpoint)
            return

    def _follow(self, error: grpc.RpcError, request_id: str) -> bool:
        """Act on a refusal; False when the write is given up."""
        refused = refusal(error)
        if refused.reason == "REGISTER_FROZEN":
            self.timeline.write("refused", refused.reason, self.endpoint)
            self._give_up.wait(refused.retry_after or 1.0)
            return True
        if refused.reason in FOLLOW and refused.metadata.get("endpoint"):
            self.timeline.write("refused", refused.reason, self.endpoint)
            moved_to = refused.metadata["endpoint"]
            if moved_to == self.endpoint:  # a register that names itself: wait, do not spin
                self._give_up.wait(1.0)
            self.endpoint = moved_to
            return True
        if refused.down:
            self.timeline.write("refused", "UNAVAILABLE", self.endpoint)
            self._give_up.wait(DOWN_RETRY)
            return True
        log.warning("write %s failed: %s %s", request_id, refused.reason, refused.message)
        self.failed.append((request_id, refused.reason))
        self.timeline.write("failed", refused.reason, self.endpoint)
        return False

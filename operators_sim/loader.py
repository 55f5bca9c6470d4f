"""Loading a population into the CEIR through its public API, as each
organisation would: Kemenperin imports TPP registrations, Bea Cukai personal
imports, Kemlu diplomats' devices, each operator its tourists and its
pre-cut-off dump (first slot only); operators report stolen devices and pair
IMEIs with their subscribers' IMSIs; Kominfo sets the policy.

Expired tourists: the register accepts a tourist registration only while it
is valid (in the future, at most 90 days). The loader registers those
tourists first, valid for a few seconds, and waits until they have expired
before it returns, so traffic finds them expired without touching any clock.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import field_mask_pb2

from ceir.organisations import BRIEF_ORGANISATIONS
from ceir.v1 import policy_pb2 as policy_pb
from ceir.v1 import policy_pb2_grpc as policy_grpc
from ceir.v1 import registry_pb2 as registry_pb
from ceir.v1 import registry_pb2_grpc as registry_grpc
from ceir.v1 import types_pb2 as pb

from .codec import imsi_text
from .node import OPERATORS
from .population import CATALOGUE, Category, Population
from .transport import Credentials, Tls, error_details, open_channel, token_credentials
from .writes import (
    DEFAULT_RETRY_FOR,
    REGISTER_FROZEN,
    REGISTER_MOVED,
    AckedWrite,
    WriteLedger,
)

log = logging.getLogger("operators_sim.loader")

IMPORT_CHUNK = 10_000
EXPIRED_TOURIST_SECONDS = 4
KEMENPERIN, CUSTOMS, KEMLU, KOMINFO = "kemenperin", "bea-cukai", "kemlu", "kominfo"
REQUIRED_ORGS = tuple(org.name for org in BRIEF_ORGANISATIONS)  # the brief's, in its order


class MissingToken(Exception):
    """Credentials lack an organisation the simulation needs."""


def check_tokens(tokens: dict[str, str]) -> None:
    missing = [name for name in REQUIRED_ORGS if not tokens.get(name)]
    if missing:
        raise MissingToken(
            f"no token for {', '.join(missing)}; the token file maps each of "
            f"{', '.join(REQUIRED_ORGS)} to its bearer token"
        )


def check_credentials(credentials: dict[str, Credentials]) -> None:
    missing = [
        name
        for name in REQUIRED_ORGS
        if name not in credentials
        or not (credentials[name].token or (credentials[name].tls or _NO_TLS).mutual)
    ]
    if missing:
        raise MissingToken(
            f"no token or client certificate for {', '.join(missing)}; the simulation acts "
            f"for each of {', '.join(REQUIRED_ORGS)}"
        )


_NO_TLS = Tls(b"")


@dataclass
class LoadResult:
    rows_accepted: int = 0
    rows_rejected: int = 0
    stolen_reported: int = 0
    exceptions_added: int = 0
    sequence: int = 0
    seconds: float = 0.0
    rejections: list[str] = field(default_factory=list)


class Admin:
    """Registry and policy stubs for each organisation: one channel per
    transport (organisations with tokens over the same transport share one;
    over mutual TLS each has its own, with its client certificate).

    ``Admin(target, tokens, tls)`` acts with bearer tokens;
    ``Admin(target, credentials=...)`` with any ``Credentials``.

    ``send`` makes a write through a custody handover (``operators_sim.writes``):
    REGISTER_FROZEN is retried after its RetryInfo delay, REGISTER_MOVED
    followed to the endpoint it names (through ``endpoints``, a policy
    endpoint -> the address to dial), both with the same request id, for up
    to ``retry_for`` seconds; ``ledger`` keeps every acknowledged write.
    """

    def __init__(
        self,
        target: str,
        tokens: dict[str, str] | None = None,
        tls: Tls | None = None,
        *,
        credentials: dict[str, Credentials] | None = None,
        endpoints: Mapping[str, str] | None = None,
        retry_for: float = DEFAULT_RETRY_FOR,
    ) -> None:
        if credentials is None:
            if tokens is None:
                raise ValueError("Admin needs tokens or credentials")
            check_tokens(tokens)
            credentials = token_credentials(tokens, tls)
        check_credentials(credentials)
        self.credentials = credentials
        self.endpoints = dict(endpoints or {})
        self.retry_for = retry_for
        self.ledger = WriteLedger()
        self._interrupted = threading.Event()
        self._target_lock = threading.Lock()
        self._connect(target)
        self.run_id = uuid.uuid4().hex[:10]

    def _connect(self, target: str) -> None:
        """Channels and stubs to ``target`` for every organisation."""
        credentials = self.credentials
        self.target = target
        self._channels: dict[Tls | None, grpc.Channel] = {}
        self._registries: dict[str, registry_grpc.RegistryServiceStub] = {}
        self._policies: dict[str, policy_grpc.PolicyServiceStub] = {}
        for org, credential in credentials.items():
            channel = self._channels.get(credential.tls)
            if channel is None:
                channel = self._channels[credential.tls] = open_channel(
                    target, credential.tls, [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
                )
            self._registries[org] = registry_grpc.RegistryServiceStub(channel)
            self._policies[org] = policy_grpc.PolicyServiceStub(channel)
        # Kominfo's stubs, for callers that pass metadata themselves (tokens).
        self.channel = self._channels[credentials[KOMINFO].tls]
        self.registry = self._registries[KOMINFO]
        self.policy = self._policies[KOMINFO]

    def registry_for(self, org: str) -> registry_grpc.RegistryServiceStub:
        """The registry stub on ``org``'s channel (use with ``metadata(org)``)."""
        return self._registries[org]

    def channel_for(self, org: str) -> grpc.Channel:
        """``org``'s channel to the register now (for services other than the
        registry's, such as the complaints desk; use with ``metadata(org)``)."""
        return self._channels[self.credentials[org].tls]

    def metadata(self, org: str) -> tuple[tuple[str, str], ...]:
        return self.credentials[org].metadata

    def close(self) -> None:
        self._interrupted.set()
        for channel in self._channels.values():
            channel.close()

    def interrupt(self) -> None:
        """Stop retrying: a write waiting for a frozen register gives up (the run ends)."""
        self._interrupted.set()

    def follow(self, endpoint: str, seen_at: str) -> bool:
        """Reconnect to the custodian's ``endpoint`` (a REGISTER_MOVED from
        ``seen_at``); False when there is nowhere new to go."""
        target = self.endpoints.get(endpoint, endpoint)
        with self._target_lock:
            if self.target != seen_at:
                return True  # another writer already followed it
            if not target or target == self.target:
                return False
            old = list(self._channels.values())
            self._connect(target)
        for channel in old:
            channel.close()
        self.ledger.count("moved")
        log.warning("writes follow the register to %s (%s)", endpoint, target)
        return True

    def send(self, org: str, method: str, request: Any, what: str, timeout: float = 30.0) -> Any:
        """Call the registry's ``method`` as ``org``; retried through a freeze or a move."""
        deadline = time.monotonic() + self.retry_for
        sent = False
        while True:
            target = self.target
            if sent:
                self.ledger.count("retried")
            sent = True
            try:
                call = getattr(self._registries[org], method)
                response = call(request, metadata=self.metadata(org), timeout=timeout)
            except grpc.RpcError as error:
                reason, metadata, delay = error_details(error)
                if reason == REGISTER_FROZEN:
                    self.ledger.count("refused_frozen")
                elif reason == REGISTER_MOVED:
                    self.ledger.count("refused_moved")
                if reason not in (REGISTER_FROZEN, REGISTER_MOVED) or (
                    time.monotonic() >= deadline or self._interrupted.is_set()
                ):
                    self.ledger.count("failed")
                    raise
                moved = reason == REGISTER_MOVED and self.follow(
                    metadata.get("endpoint", ""), target
                )
                if not moved:
                    self._interrupted.wait(delay if delay is not None else 1.0)
                continue
            self.ledger.acknowledged(
                AckedWrite(request.request_id, method, what, org, int(response.sequence), target)
            )
            return response

    def set_policy(self, **values: int) -> pb.Policy:
        """Kominfo changes the named policy fields."""
        request = policy_pb.UpdatePolicyRequest(
            request_id=f"sim-{self.run_id}-policy-{time.monotonic_ns()}",
            policy=pb.Policy(**values),  # type: ignore[arg-type]
            update_mask=field_mask_pb2.FieldMask(paths=sorted(values)),
        )
        response = self._policies[KOMINFO].UpdatePolicy(
            request, metadata=self.metadata(KOMINFO), timeout=30
        )
        return response.policy

    def get_policy(self) -> pb.Policy:
        response = self._policies[KOMINFO].GetPolicy(
            policy_pb.GetPolicyRequest(), metadata=self.metadata(KOMINFO), timeout=30
        )
        return response.policy

    def import_rows(
        self, org: str, rows: list[registry_pb.ImportRow], label: str
    ) -> registry_pb.ImportRegistrationsResponse:
        request_id = f"sim-{self.run_id}-{label}"

        def chunks() -> Iterator[registry_pb.ImportRegistrationsRequest]:
            for start in range(0, len(rows), IMPORT_CHUNK):
                yield registry_pb.ImportRegistrationsRequest(
                    request_id=request_id, rows=rows[start : start + IMPORT_CHUNK]
                )

        return self._registries[org].ImportRegistrations(
            chunks(), metadata=self.metadata(org), timeout=600
        )


def _device(
    population: Population, device: int, source: int, reference: str, valid_until: float | None
) -> registry_pb.DeviceRegistration:
    model = CATALOGUE[int(population.model[device])]
    registration = registry_pb.DeviceRegistration(
        imeis=[population.full_imei(device, s) for s in population.registered_slots(device)],
        source=source,  # type: ignore[arg-type]
        reference=reference,
        brand=model.brand,
        model=model.name,
    )
    if valid_until is not None:
        registration.valid_until.FromSeconds(int(valid_until))
    return registration


def owner_operator(population: Population, device: int) -> str:
    return OPERATORS[int(population.sim_operator[int(population.sim[device])])].name


def load(admin: Admin, population: Population, workers: int = 8) -> LoadResult:
    """Register the population, report its stolen devices, add its pairs."""
    started = time.monotonic()
    result = LoadResult()
    now = time.time()
    per_org: dict[str, list[registry_pb.ImportRow]] = {}

    def add(org: str, device: int, source: int, reference: str, until: float | None = None) -> None:
        rows = per_org.setdefault(org, [])
        rows.append(
            registry_pb.ImportRow(
                row=device, device=_device(population, device, source, reference, until)
            )
        )

    # Expired tourists go first: their few seconds of validity run out while
    # the rest loads.
    for device in population.of(Category.TOURIST_EXPIRED).tolist():
        add(
            owner_operator(population, device),
            device,
            pb.REGISTRATION_SOURCE_TOURIST,
            f"passport-X{device}",
            now + EXPIRED_TOURIST_SECONDS,
        )
    expired_rows = per_org
    _run_imports(admin, expired_rows, "expired", result, workers)
    expired_after = now + EXPIRED_TOURIST_SECONDS + 1
    per_org = {}
    tpp = (Category.TPP, Category.STOLEN, Category.CLONED)
    for category in tpp:
        for device in population.of(category).tolist():
            source = (
                pb.REGISTRATION_SOURCE_TPP_IMPORT
                if device % 3
                else pb.REGISTRATION_SOURCE_TPP_PRODUCTION
            )
            add(KEMENPERIN, device, source, f"TPP-{device % 997:04d}")
    for device in population.of(Category.CUSTOMS).tolist():
        add(CUSTOMS, device, pb.REGISTRATION_SOURCE_CUSTOMS, f"BC-{device}")
    for device in population.of(Category.DIPLOMAT).tolist():
        add(KEMLU, device, pb.REGISTRATION_SOURCE_DIPLOMAT, f"KEMLU-{device}")
    for device in population.of(Category.TOURIST).tolist():
        until = now + (60 + device % 29) * 86_400
        add(
            owner_operator(population, device),
            device,
            pb.REGISTRATION_SOURCE_TOURIST,
            f"passport-{device}",
            until,
        )
    for device in population.of(Category.GRANDFATHERED).tolist():
        add(
            owner_operator(population, device),
            device,
            pb.REGISTRATION_SOURCE_GRANDFATHERED,
            "dump-2020-04-17",
        )
    _run_imports(admin, per_org, "main", result, workers)
    with ThreadPoolExecutor(workers) as pool:
        stolen = list(
            pool.map(
                lambda d: report_stolen(admin, population, d, f"LP/{d}/2020"),
                population.of(Category.STOLEN).tolist(),
            )
        )
        result.stolen_reported = len(stolen)
        result.sequence = max([result.sequence, *stolen])
        paired = list(
            pool.map(
                lambda d: add_pair(admin, population, d), population.of(Category.PAIRED).tolist()
            )
        )
        result.exceptions_added = len(paired)
        result.sequence = max([result.sequence, *paired])
    wait = expired_after - time.time()
    if wait > 0:
        time.sleep(wait)
    result.seconds = time.monotonic() - started
    return result


def _run_imports(
    admin: Admin,
    per_org: dict[str, list[registry_pb.ImportRow]],
    label: str,
    result: LoadResult,
    workers: int,
) -> None:
    with ThreadPoolExecutor(min(workers, max(len(per_org), 1))) as pool:
        answers = list(
            pool.map(
                lambda item: admin.import_rows(item[0], item[1], f"{label}-{item[0]}"),
                per_org.items(),
            )
        )
    for (org, _rows), answer in zip(per_org.items(), answers, strict=True):
        result.rows_accepted += answer.rows_accepted
        result.rows_rejected += answer.rows_rejected
        result.sequence = max(result.sequence, answer.sequence)
        result.rejections.extend(
            f"{org} row {r.row}: {r.field}: {r.description}" for r in answer.rejections[:10]
        )


def report_stolen(admin: Admin, population: Population, device: int, report: str) -> int:
    """The owner's operator reports every slot of a device stolen; the sequence."""
    operator = owner_operator(population, device)
    slots = range(int(population.slots[device]))
    response = admin.send(
        operator,
        "ReportStolen",
        registry_pb.ReportStolenRequest(
            request_id=f"sim-{admin.run_id}-stolen-{device}-{report.replace('/', '.')}",
            imeis=[population.full_imei(device, s) for s in slots],
            police_report=report,
            subscriber_imsi=imsi_text(int(population.sim_imsi[int(population.sim[device])])),
        ),
        f"stolen device {device} ({report})",
    )
    return int(response.sequence)


def report_recovered(admin: Admin, population: Population, device: int, report: str) -> int:
    operator = owner_operator(population, device)
    slots = range(int(population.slots[device]))
    response = admin.send(
        operator,
        "ReportRecovered",
        registry_pb.ReportRecoveredRequest(
            request_id=f"sim-{admin.run_id}-recovered-{device}-{report.replace('/', '.')}",
            imeis=[population.full_imei(device, s) for s in slots],
            police_report=report,
        ),
        f"recovered device {device} ({report})",
    )
    return int(response.sequence)


def register_now(admin: Admin, population: Population, device: int) -> int:
    """Kemenperin registers every slot of a device (a late TPP registration)."""
    model = CATALOGUE[int(population.model[device])]
    response = admin.send(
        KEMENPERIN,
        "RegisterDevice",
        registry_pb.RegisterDeviceRequest(
            request_id=f"sim-{admin.run_id}-register-{device}",
            device=registry_pb.DeviceRegistration(
                imeis=[
                    population.full_imei(device, s) for s in range(int(population.slots[device]))
                ],
                source=pb.REGISTRATION_SOURCE_TPP_IMPORT,
                reference=f"TPP-late-{device}",
                brand=model.brand,
                model=model.name,
            ),
        ),
        f"registered device {device}",
    )
    return int(response.sequence)


def add_pair(admin: Admin, population: Population, device: int) -> int:
    """The owner's operator pairs the device's first IMEI with the owner's IMSI."""
    operator = owner_operator(population, device)
    response = admin.send(
        operator,
        "AddException",
        registry_pb.AddExceptionRequest(
            request_id=f"sim-{admin.run_id}-pair-{device}",
            imei=population.full_imei(device, 0),
            imsi=imsi_text(int(population.sim_imsi[int(population.sim[device])])),
            reason=f"aduan-{device}",
        ),
        f"paired device {device}",
    )
    return int(response.sequence)

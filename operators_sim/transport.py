"""The link from an operator EIR node to the CEIR: a small interface, a real
gRPC implementation, and the errors a node acts on.

Exceptions::

    LinkError              a call failed for a reason retrying will not fix
    └── LinkDown           the CEIR is unreachable (or timed out): degrade, retry

A node only ever talks to the register through a ``CeirLink``; tests use
``operators_sim.fake.FakeLink`` to feed it crafted streams.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from ceir.v1 import custody_pb2 as custody_pb
from ceir.v1 import custody_pb2_grpc as custody_grpc
from ceir.v1 import equipment_check_pb2 as check_pb
from ceir.v1 import equipment_check_pb2_grpc as check_grpc
from ceir.v1 import list_sync_pb2 as sync_pb
from ceir.v1 import list_sync_pb2_grpc as sync_grpc
from ceir.v1 import policy_pb2 as policy_pb
from ceir.v1 import policy_pb2_grpc as policy_grpc
from ceir.v1 import transparency_pb2 as log_pb
from ceir.v1 import transparency_pb2_grpc as log_grpc
from ceir.v1 import types_pb2 as pb

MAX_BATCH = 1_000  # CheckEquipmentBatch's limit
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    # reconnect quickly once the CEIR is back (gRPC's default waits up to 2 minutes)
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1_000),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.enable_retries", 0),
]
_DOWN = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNKNOWN,  # a server killed mid-stream can end it this way
)


@dataclass(frozen=True)
class Tls:
    """Connect with TLS: the CA that signed the CEIR's certificate, the
    name to expect in it when it is not the host dialled, and for mutual TLS
    the client certificate (chain) and its private key, PEM."""

    ca_cert: bytes
    server_name: str | None = None
    client_cert: bytes | None = None
    client_key: bytes | None = None

    @property
    def mutual(self) -> bool:
        return self.client_cert is not None


@dataclass(frozen=True)
class Credentials:
    """How one organisation reaches the CEIR: its bearer token, its TLS
    settings (with a client certificate: mutual TLS, no token needed), or both."""

    token: str | None = None
    tls: Tls | None = None

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The call metadata: the token, when there is one."""
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()


def token_credentials(tokens: dict[str, str], tls: Tls | None = None) -> dict[str, Credentials]:
    """Organisation -> credentials for bearer tokens over one transport."""
    return {org: Credentials(token, tls) for org, token in tokens.items()}


def describe_transport(credentials: Iterable[Credentials]) -> str:
    """How a set of organisations connects, in words (for the report)."""
    every = list(credentials)
    if every and all(c.tls is not None and c.tls.mutual for c in every):
        return "mutual TLS (a client certificate per organisation)"
    if every and all(c.tls is not None for c in every):
        return "TLS with bearer tokens"
    if any(c.tls is not None for c in every):
        return "mixed (TLS for some organisations)"
    return "plain text with bearer tokens"


class MissingCertificate(Exception):
    """A client certificate directory lacks a file the simulation needs."""


def client_certificates(
    directory: Path,
    organisations: Iterable[str],
    ca_cert: bytes | None = None,
    server_name: str | None = None,
) -> dict[str, Credentials]:
    """Mutual TLS credentials from a directory laid out as ``ceir pki init``
    writes it: ``<org>.pem`` and ``<org>.key`` per organisation, and
    ``ca.pem`` (the CA that signed the CEIR's certificate) unless ``ca_cert``
    is given."""
    wanted = list(organisations)
    needed = [directory / f"{org}{suffix}" for org in wanted for suffix in (".pem", ".key")]
    if ca_cert is None:
        needed.insert(0, directory / "ca.pem")
    missing = [path.name for path in needed if not path.is_file()]
    if missing:
        raise MissingCertificate(
            f"{directory} lacks {', '.join(missing)} (it needs <org>.pem and <org>.key "
            f"for each of {', '.join(wanted)}, and ca.pem)"
        )
    root = ca_cert if ca_cert is not None else (directory / "ca.pem").read_bytes()
    return {
        org: Credentials(
            tls=Tls(
                root,
                server_name,
                client_cert=(directory / f"{org}.pem").read_bytes(),
                client_key=(directory / f"{org}.key").read_bytes(),
            )
        )
        for org in wanted
    }


def open_channel(
    target: str, tls: Tls | None = None, options: Sequence[tuple[str, object]] = ()
) -> grpc.Channel:
    """A channel to the CEIR: TLS when ``tls`` is given (mutual with its
    client certificate), else plain text."""
    if tls is None:
        return grpc.insecure_channel(target, options=list(options))
    extra = [("grpc.ssl_target_name_override", tls.server_name)] if tls.server_name else []
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls.ca_cert,
        private_key=tls.client_key,
        certificate_chain=tls.client_cert,
    )
    return grpc.secure_channel(target, credentials, options=[*options, *extra])


class LinkError(Exception):
    """A call to the CEIR failed; ``code`` is the gRPC status name, ``reason``
    and ``metadata`` its ErrorInfo (``REGISTER_MOVED``, {"endpoint": ...}),
    ``retry_after`` its RetryInfo delay in seconds (None: none given)."""

    def __init__(
        self,
        message: str,
        code: str = "",
        reason: str = "",
        metadata: dict[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.metadata = metadata or {}
        self.retry_after = retry_after


class LinkDown(LinkError):
    """The CEIR cannot be reached now."""


class FeedStream(Protocol):
    """A running WatchChanges call."""

    def __iter__(self) -> Iterator[sync_pb.WatchChangesResponse]: ...

    def cancel(self) -> None: ...


class CeirLink(Protocol):
    """What a node needs from the CEIR."""

    def get_policy(self) -> pb.Policy:
        """The policy in force (PolicyService.GetPolicy)."""
        ...

    def snapshot(self, chunk_size: int = 0) -> Iterator[sync_pb.GetSnapshotResponse]:
        """The chunks of one snapshot (ListSyncService.GetSnapshot)."""
        ...

    def watch(self, after_sequence: int) -> FeedStream:
        """The change feed after a sequence (ListSyncService.WatchChanges)."""
        ...

    def check_batch(
        self, checks: Sequence[check_pb.CheckEquipmentRequest]
    ) -> list[check_pb.CheckEquipmentResponse]:
        """Up to ``MAX_BATCH`` checks, answered in order."""
        ...

    def checkpoint(self) -> str:
        """The latest signed checkpoint (TransparencyService.GetCheckpoint)."""
        ...

    def consistency_proof(self, first_size: int, second_size: int) -> list[bytes]:
        """The hashes proving the log of ``first_size`` changes is a prefix
        of the one of ``second_size`` (TransparencyService.GetConsistencyProof)."""
        ...

    def get_custody(self) -> custody_pb.Custody:
        """The custody ceremony as the register sees it (CustodyService.GetCustody)."""
        ...

    def report_readiness(self, policy_version: int, policy_sha256: str) -> custody_pb.Custody:
        """Tell the register this operator verified the announced policy."""
        ...

    def reachable(self) -> bool:
        """True while the connection to the CEIR is up (as far as known)."""
        ...

    def close(self) -> None: ...


def error_details(
    error: grpc.RpcError,
) -> tuple[str, dict[str, str], float | None]:
    """The ErrorInfo reason and metadata and the RetryInfo delay of a failed call."""
    reason, metadata, retry_after = "", {}, None
    try:
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
    except (ValueError, AttributeError):  # details that do not match the code or message
        status = None
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, metadata = info.reason, dict(info.metadata)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_after = max(retry.retry_delay.ToNanoseconds() / 1e9, 0.0)
    return reason, metadata, retry_after


def translate(error: grpc.RpcError) -> LinkError:
    """A gRPC failure as the link error a node acts on."""
    code = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else str(error)
    name = code.name if code is not None else "UNKNOWN"
    kind = LinkDown if code in _DOWN or code is None else LinkError
    reason, metadata, retry_after = error_details(error) if code is not None else ("", {}, None)
    return kind(f"{name}: {details}", name, reason, metadata, retry_after)


class _GrpcFeed:
    def __init__(self, call: grpc.Call) -> None:
        self._call = call

    def __iter__(self) -> Iterator[sync_pb.WatchChangesResponse]:
        try:
            yield from self._call  # type: ignore[misc]
        except grpc.RpcError as error:
            raise translate(error) from None

    def cancel(self) -> None:
        self._call.cancel()  # type: ignore[no-untyped-call]


class GrpcLink:
    """A ``CeirLink`` over one gRPC channel, as one organisation: with its
    token, or without one over mutual TLS (``tls`` with a client certificate)."""

    def __init__(
        self, target: str, token: str | None, timeout: float = 10.0, tls: Tls | None = None
    ) -> None:
        self.target = target
        self.timeout = timeout
        self._metadata = Credentials(token, tls).metadata
        self._channel = open_channel(target, tls, CHANNEL_OPTIONS)
        self._state = grpc.ChannelConnectivity.IDLE
        self._channel.subscribe(self._on_state, try_to_connect=True)
        self._checks = check_grpc.EquipmentCheckServiceStub(self._channel)
        self._sync = sync_grpc.ListSyncServiceStub(self._channel)
        self._policy = policy_grpc.PolicyServiceStub(self._channel)
        self._log = log_grpc.TransparencyServiceStub(self._channel)
        self._custody = custody_grpc.CustodyServiceStub(self._channel)

    def get_policy(self) -> pb.Policy:
        try:
            response = self._policy.GetPolicy(
                policy_pb.GetPolicyRequest(), metadata=self._metadata, timeout=self.timeout
            )
        except grpc.RpcError as error:
            raise translate(error) from None
        return response.policy

    def snapshot(self, chunk_size: int = 0) -> Iterator[sync_pb.GetSnapshotResponse]:
        call = self._sync.GetSnapshot(
            sync_pb.GetSnapshotRequest(chunk_size=chunk_size),
            metadata=self._metadata,
            timeout=max(self.timeout, 600.0),
        )
        try:
            yield from call
        except grpc.RpcError as error:
            raise translate(error) from None

    def watch(self, after_sequence: int) -> FeedStream:
        call = self._sync.WatchChanges(
            sync_pb.WatchChangesRequest(after_sequence=after_sequence), metadata=self._metadata
        )
        return _GrpcFeed(call)

    def check_batch(
        self, checks: Sequence[check_pb.CheckEquipmentRequest]
    ) -> list[check_pb.CheckEquipmentResponse]:
        if len(checks) > MAX_BATCH:
            raise ValueError(f"at most {MAX_BATCH} checks per batch, got {len(checks)}")
        try:
            response = self._checks.CheckEquipmentBatch(
                check_pb.CheckEquipmentBatchRequest(checks=checks),
                metadata=self._metadata,
                timeout=self.timeout,
            )
        except grpc.RpcError as error:
            raise translate(error) from None
        return list(response.results)

    def checkpoint(self) -> str:
        try:
            response = self._log.GetCheckpoint(
                log_pb.GetCheckpointRequest(), metadata=self._metadata, timeout=self.timeout
            )
        except grpc.RpcError as error:
            raise translate(error) from None
        return response.checkpoint

    def consistency_proof(self, first_size: int, second_size: int) -> list[bytes]:
        try:
            response = self._log.GetConsistencyProof(
                log_pb.GetConsistencyProofRequest(first_size=first_size, second_size=second_size),
                metadata=self._metadata,
                timeout=self.timeout,
            )
        except grpc.RpcError as error:
            raise translate(error) from None
        return list(response.hashes)

    def get_custody(self) -> custody_pb.Custody:
        try:
            response = self._custody.GetCustody(
                custody_pb.GetCustodyRequest(), metadata=self._metadata, timeout=self.timeout
            )
        except grpc.RpcError as error:
            raise translate(error) from None
        return response.custody

    def report_readiness(self, policy_version: int, policy_sha256: str) -> custody_pb.Custody:
        try:
            response = self._custody.ReportReadiness(
                custody_pb.ReportReadinessRequest(
                    policy_version=policy_version, policy_sha256=policy_sha256
                ),
                metadata=self._metadata,
                timeout=self.timeout,
            )
        except grpc.RpcError as error:
            raise translate(error) from None
        return response.custody

    def _on_state(self, state: grpc.ChannelConnectivity) -> None:
        self._state = state

    def reachable(self) -> bool:
        return self._state is grpc.ChannelConnectivity.READY

    def close(self) -> None:
        self._channel.unsubscribe(self._on_state)
        # gRPC's connectivity thread sees the unsubscription within 0.2 s; a
        # channel closed under it makes that thread raise "Channel closed!".
        state = getattr(self._channel, "_connectivity_state", None)
        deadline = time.monotonic() + 1.0
        while getattr(state, "polling", False) and time.monotonic() < deadline:
            time.sleep(0.01)
        self._channel.close()


class SwitchableLink:
    """A ``CeirLink`` whose register can change under the node: after a
    verified custody handover the node's feed, reports and proofs go to the
    new custodian (``switch``), and every user of the link follows at once."""

    def __init__(self, link: CeirLink, target: str = "") -> None:
        self.current = link
        self.target = target
        self.switches = 0

    def switch(self, link: CeirLink, target: str) -> None:
        """Talk to ``link`` from now on; the old one is closed."""
        old, self.current, self.target = self.current, link, target
        self.switches += 1
        old.close()

    def get_policy(self) -> pb.Policy:
        return self.current.get_policy()

    def snapshot(self, chunk_size: int = 0) -> Iterator[sync_pb.GetSnapshotResponse]:
        return self.current.snapshot(chunk_size)

    def watch(self, after_sequence: int) -> FeedStream:
        return self.current.watch(after_sequence)

    def check_batch(
        self, checks: Sequence[check_pb.CheckEquipmentRequest]
    ) -> list[check_pb.CheckEquipmentResponse]:
        return self.current.check_batch(checks)

    def checkpoint(self) -> str:
        return self.current.checkpoint()

    def consistency_proof(self, first_size: int, second_size: int) -> list[bytes]:
        return self.current.consistency_proof(first_size, second_size)

    def get_custody(self) -> custody_pb.Custody:
        return self.current.get_custody()

    def report_readiness(self, policy_version: int, policy_sha256: str) -> custody_pb.Custody:
        return self.current.report_readiness(policy_version, policy_sha256)

    def reachable(self) -> bool:
        return self.current.reachable()

    def close(self) -> None:
        self.current.close()

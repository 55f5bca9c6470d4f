"""The witness's gRPC listener: ``WitnessService`` and health, nothing else.

A witness is a small public service: any log operator (or anyone holding a
checkpoint) may ask it to cosign, so it authenticates nobody and trusts
only signatures. Hostile callers get bounded work: messages of at most
``MAX_MESSAGE_BYTES``, the bounds of ``service``, a few worker threads,
and one request at a time past the cheap checks.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from ceir.api.errors import internal_status, to_status
from ceir.audit.errors import KeyFormatError
from ceir.custody import CustodyPolicy
from ceir.custody.evidence import policy_text
from ceir.custody.keyfiles import read_cosigner_key, read_note_key
from ceir.domain.errors import CeirError
from ceir.v1 import custody_pb2, custody_pb2_grpc

from .service import MAX_POLICIES, MAX_POLICY_BYTES, Witness

__all__ = ["RunningWitness", "WitnessConfig", "create_witness_server", "serve_witness"]

log = logging.getLogger("ceir.witness")
SERVICE_NAME = custody_pb2.DESCRIPTOR.services_by_name["WitnessService"].full_name
# The policies dominate a request's size; the rest is a few KiB.
MAX_MESSAGE_BYTES = MAX_POLICIES * MAX_POLICY_BYTES + 64 * 1024
WORKERS = 4
OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", 64 * 1024),
    ("grpc.max_concurrent_streams", 16),
    ("grpc.max_connection_idle_ms", 600_000),
]


@dataclass(frozen=True)
class WitnessConfig:
    """What ``ceir custody witness serve`` is given."""

    name: str
    note_key: Path
    cosigner_key: Path
    policy: Path
    state: Path
    address: str = "127.0.0.1:0"
    tls_key: Path | None = None
    tls_cert: Path | None = None
    client_ca: Path | None = None
    insecure: bool = False
    clock: Callable[[], float] = time.time  # Unix seconds: cosignature times, policy expiry

    def check(self) -> None:
        """Raise ``ValueError`` saying what to pass when the transport does not fit."""
        tls = self.tls_key is not None or self.tls_cert is not None
        if tls and (self.tls_key is None or self.tls_cert is None):
            raise ValueError("TLS needs both --tls-key and --tls-cert")
        if tls == self.insecure:
            raise ValueError("pass --tls-key and --tls-cert, or --insecure for plain text")
        if self.client_ca is not None and not tls:
            raise ValueError("--client-ca needs --tls-key and --tls-cert")


class WitnessServicer(custody_pb2_grpc.WitnessServiceServicer):
    """``AddCheckpoint``: the request to the witness, its answer or refusal as a status."""

    def __init__(self, witness: Witness) -> None:
        self.witness = witness

    def AddCheckpoint(
        self, request: custody_pb2.AddCheckpointRequest, context: grpc.ServicerContext
    ) -> custody_pb2.AddCheckpointResponse:
        try:
            line = self.witness.add_checkpoint(
                request.old_size,
                list(request.consistency_proof),
                request.checkpoint,
                list(request.policies),
            )
        except CeirError as error:
            context.abort_with_status(to_status(error))
        except Exception:
            log.exception("AddCheckpoint failed")
            context.abort_with_status(internal_status())
        return custody_pb2.AddCheckpointResponse(cosignature=line)


@dataclass
class RunningWitness:
    """A witness server listening on ``port``."""

    server: grpc.Server
    port: int
    witness: Witness
    health: Any

    def stop(self, grace: float = 5.0) -> None:
        """NOT_SERVING first, then finish in-flight calls."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()


def load_witness(config: WitnessConfig) -> Witness:
    """The witness the configuration names: keys checked against each other and the policy."""
    note_key = read_note_key(config.note_key)
    cosigner = read_cosigner_key(config.cosigner_key)
    for what, name in (("--key", note_key.name), ("--cosigner-key", cosigner.verifier.name)):
        if name != config.name:
            raise KeyFormatError(f"{what} is a key of {name!r}, not of --name {config.name!r}")
    if note_key.verifier.public_key == cosigner.verifier.public_key:
        raise KeyFormatError("one key serves as note key and cosigner key; make two")
    trusted = CustodyPolicy.parse(policy_text(config.policy.read_text(encoding="utf-8")))
    if trusted.version != 0:
        log.warning("the trusted policy is version %d, not 0", trusted.version)
    listed = any(
        w.verifier == note_key.verifier and w.cosigner == cosigner.verifier
        for w in trusted.witnesses
    )
    if not listed:
        log.warning(
            "this witness's keys are not listed in the trusted policy: its cosignatures "
            "count only where a later policy lists them",
            extra={"witness": config.name},
        )
    return Witness(cosigner, trusted, config.state, config.clock)


def create_witness_server(config: WitnessConfig) -> RunningWitness:
    """Load the witness and start serving; returns once the port is bound."""
    config.check()
    witness = load_witness(config)
    server = grpc.server(futures.ThreadPoolExecutor(WORKERS), options=OPTIONS)
    custody_pb2_grpc.add_WitnessServiceServicer_to_server(WitnessServicer(witness), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = _bind(server, config)
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    server.start()
    log.info(
        "witness serving",
        extra={
            "address": config.address,
            "port": port,
            "origin": witness.trusted.origin,
            "cosigner_key": witness.cosigner.verifier.vkey,
            "state": str(config.state),
        },
    )
    return RunningWitness(server, port, witness, health_servicer)


def serve_witness(config: WitnessConfig) -> None:
    """Serve until SIGINT or SIGTERM, then stop gracefully."""
    running = create_witness_server(config)
    done = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    running.stop()


def _bind(server: grpc.Server, config: WitnessConfig) -> int:
    if config.tls_key is not None and config.tls_cert is not None:
        pair = [(config.tls_key.read_bytes(), config.tls_cert.read_bytes())]
        ca = config.client_ca.read_bytes() if config.client_ca is not None else None
        credentials = grpc.ssl_server_credentials(
            pair, root_certificates=ca, require_client_auth=ca is not None
        )
        port = server.add_secure_port(config.address, credentials)
    else:
        log.warning("witness serving PLAIN TEXT as asked (--insecure)")
        port = server.add_insecure_port(config.address)
    if port == 0:
        raise OSError(f"cannot listen on {config.address}")
    return port

"""Building and running the CEIR gRPC server.

``create_server`` wires storage, services and servicers and binds a port
(port 0 picks a free one, as tests do); ``serve`` runs until SIGINT/SIGTERM
and shuts down gracefully: health goes NOT_SERVING first, then in-flight
calls get a grace period.

Transport: TLS with the server's key and certificate; with a client CA,
mutual TLS, where every connection must present a client certificate signed
by that CA and the certificate names the calling organisation. Bearer
tokens (for tools and scripts) then go to a second listener,
``token_address``, which serves TLS without asking for client certificates.
Plain text only with ``insecure=True``, and the log says so.

Checkpoints of the Merkle log are signed with the custodian's Ed25519 key
from ``signing_key`` (a PEM file; never stored in the database). Without
it the server keeps the log but publishes no checkpoints, unless
``ephemeral_signing_key`` asks for a throwaway key (for demos: nobody can
verify its checkpoints after a restart).
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ceir.audit import Signer, generate_signing_key, load_private_key
from ceir.service.certificates import CertificateAuthenticator
from ceir.service.checks import CheckService
from ceir.service.clock import Clock
from ceir.service.imports import ImportService
from ceir.service.merkle_log import DEFAULT_ORIGIN, CheckpointSigner
from ceir.service.orgs import Authenticator
from ceir.service.policy import PolicyService
from ceir.service.register import Register
from ceir.service.registry import RegistryService
from ceir.service.sync import SyncService
from ceir.service.transparency import TransparencyService
from ceir.storage.database import Database
from ceir.v1 import (
    equipment_check_pb2,
    equipment_check_pb2_grpc,
    list_sync_pb2,
    list_sync_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    transparency_pb2,
    transparency_pb2_grpc,
)

from .interceptor import CallInterceptor
from .observability import Metrics
from .servicers import (
    EquipmentCheckServicer,
    ListSyncServicer,
    PolicyServicer,
    RegistryServicer,
    TransparencyServicer,
)

log = logging.getLogger("ceir.server")

SERVICE_NAMES = (
    equipment_check_pb2.DESCRIPTOR.services_by_name["EquipmentCheckService"].full_name,
    registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name,
    list_sync_pb2.DESCRIPTOR.services_by_name["ListSyncService"].full_name,
    policy_pb2.DESCRIPTOR.services_by_name["PolicyService"].full_name,
    transparency_pb2.DESCRIPTOR.services_by_name["TransparencyService"].full_name,
)
# Server settings shared with the benchmark's bare echo server, so that the
# comparison measures the register and not a difference in configuration.
GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.so_reuseport", 0),
]
MAX_WORKERS = 32
# The passphrase of an encrypted signing key file, if it is encrypted.
SIGNING_KEY_PASSWORD_ENV = "CEIR_SIGNING_KEY_PASSWORD"


@dataclass
class ServerConfig:
    db: str
    address: str = "127.0.0.1:50051"
    tls_key: Path | None = None
    tls_cert: Path | None = None
    # PEM CA certificate(s) for client certificates: mutual TLS on ``address``.
    client_ca: Path | None = None
    # A second listener, TLS without client certificates, for bearer tokens.
    token_address: str | None = None
    # Plain text is served only when asked for explicitly.
    insecure: bool = False
    metrics_port: int | None = None  # None: no metrics endpoint
    access_log: bool = True
    follow_interval: float = 0.5
    clock: Clock | None = None
    migrate: bool = True
    # The custodian's Ed25519 private key (PEM) that signs the log's checkpoints.
    signing_key: Path | None = None
    # Without signing_key: sign with a key made up at start-up (demos only).
    ephemeral_signing_key: bool = False
    # The log's origin line, also the name of the signing key.
    log_origin: str = DEFAULT_ORIGIN


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    register: Register
    health: health.HealthServicer
    metrics: Metrics
    metrics_port: int | None = None
    workers: futures.ThreadPoolExecutor | None = None
    token_port: int | None = None
    _stopped: threading.Event = field(default_factory=threading.Event)

    def stop(self, grace: float = 5.0) -> None:
        """Graceful shutdown: NOT_SERVING, finish in-flight calls, close."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.health.enter_graceful_shutdown()
        self.register.close()  # ends WatchChanges streams
        self.server.stop(grace).wait()
        # Handlers still running after the grace period finish before the
        # pool closes, so no connection is left checked out of a closed pool.
        if self.workers is not None:
            self.workers.shutdown(wait=True, cancel_futures=True)
        gc.collect()  # close the generators of cancelled streams (snapshots) now
        self.register.db.dispose()


def create_server(config: ServerConfig) -> RunningServer:
    check_transport(config)  # before anything is opened
    db = Database(config.db)
    if config.migrate:
        db.migrate()
    register = Register(db, config.clock, signer=checkpoint_signer(config))
    register.start_following(config.follow_interval)
    metrics = Metrics(lambda: register.state)
    certificates = CertificateAuthenticator(db) if config.client_ca is not None else None
    interceptor = CallInterceptor(
        Authenticator(db), metrics, access_log=config.access_log, certificates=certificates
    )
    workers = futures.ThreadPoolExecutor(max_workers=MAX_WORKERS)
    server = grpc.server(
        workers,
        interceptors=[interceptor],
        options=GRPC_OPTIONS,
    )
    equipment_check_pb2_grpc.add_EquipmentCheckServiceServicer_to_server(
        EquipmentCheckServicer(CheckService(register)), server
    )
    registry_pb2_grpc.add_RegistryServiceServicer_to_server(
        RegistryServicer(RegistryService(register), ImportService(register)), server
    )
    list_sync_pb2_grpc.add_ListSyncServiceServicer_to_server(
        ListSyncServicer(SyncService(register)), server
    )
    policy_pb2_grpc.add_PolicyServiceServicer_to_server(
        PolicyServicer(PolicyService(register)), server
    )
    transparency_pb2_grpc.add_TransparencyServiceServicer_to_server(
        TransparencyServicer(TransparencyService(register)), server
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port, token_port = _bind(server, config)
    for name in ("", *SERVICE_NAMES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    metrics_port = None
    if config.metrics_port is not None:
        metrics_port = metrics.serve(config.metrics_port)
    server.start()
    log.info(
        "serving",
        extra={
            "address": config.address,
            "port": port,
            "db": _redact(db.url),
            "sequence": register.state.sequence,
            "tls": config.tls_cert is not None,
            "mutual_tls": config.client_ca is not None,
            "token_port": token_port,
            "metrics_port": metrics_port,
            "log_origin": register.log.origin,
            "log_size": register.log.size,
            "signing_key": register.log.signer.signer.verifier.vkey
            if register.log.signer is not None
            else None,
        },
    )
    return RunningServer(
        server, port, register, health_servicer, metrics, metrics_port, workers, token_port
    )


def checkpoint_signer(config: ServerConfig) -> CheckpointSigner | None:
    """The signer of the log's checkpoints that the configuration asks for."""
    if config.signing_key is not None and config.ephemeral_signing_key:
        raise ValueError("--ephemeral-signing-key contradicts --signing-key")
    if config.signing_key is not None:
        key = load_private_key(config.signing_key, _signing_key_password())
    elif config.ephemeral_signing_key:
        key = generate_signing_key()
        log.warning(
            "signing checkpoints with an EPHEMERAL key made up at start-up: nobody can "
            "verify them against a key they were given, and the key dies with this "
            "process; pass --signing-key FILE for a real custodian key"
        )
    else:
        log.warning(
            "no signing key: the Merkle log is kept but no checkpoints are published "
            "(pass --signing-key FILE)"
        )
        return None
    return CheckpointSigner(config.log_origin, Signer(config.log_origin, key))


def _signing_key_password() -> bytes | None:
    password = os.environ.get(SIGNING_KEY_PASSWORD_ENV)
    return None if password is None else password.encode()


def check_transport(config: ServerConfig) -> None:
    """Raise ValueError, saying what to pass, if the transport settings do not fit."""
    tls = config.tls_key is not None or config.tls_cert is not None
    if tls and (config.tls_key is None or config.tls_cert is None):
        raise ValueError("TLS needs both --tls-key and --tls-cert")
    if tls and config.insecure:
        raise ValueError("--insecure (plain text) contradicts --tls-key/--tls-cert")
    if not tls and not config.insecure:
        raise ValueError(
            "no TLS key and certificate: pass --tls-key and --tls-cert (and --client-ca "
            "for mutual TLS), or --insecure to serve plain text"
        )
    if config.client_ca is not None and not tls:
        raise ValueError("--client-ca needs --tls-key and --tls-cert")
    if config.token_address is not None and config.client_ca is None:
        raise ValueError("--token-listen is for a mutual-TLS server (--client-ca)")


def _bind(server: grpc.Server, config: ServerConfig) -> tuple[int, int | None]:
    """Listen on the configured address(es); return the port and the token port."""
    token_port: int | None = None
    if config.tls_key is not None and config.tls_cert is not None:
        pair = [(config.tls_key.read_bytes(), config.tls_cert.read_bytes())]
        if config.client_ca is not None:
            # grpc asks for a client certificate only when it requires one,
            # so mutual TLS and token-only clients need two listeners.
            mutual = grpc.ssl_server_credentials(
                pair, root_certificates=config.client_ca.read_bytes(), require_client_auth=True
            )
            port = server.add_secure_port(config.address, mutual)
            if config.token_address is not None:
                token_port = server.add_secure_port(
                    config.token_address, grpc.ssl_server_credentials(pair)
                )
                if token_port == 0:
                    raise OSError(f"cannot listen on {config.token_address}")
        else:
            port = server.add_secure_port(config.address, grpc.ssl_server_credentials(pair))
    else:
        log.warning(
            "serving PLAIN TEXT as asked (--insecure): no encryption, tokens readable "
            "on the wire; for tests and local experiments only"
        )
        port = server.add_insecure_port(config.address)
    if port == 0:
        raise OSError(f"cannot listen on {config.address}")
    return port, token_port


def _redact(url: str) -> str:
    """A database URL without its password, for the log."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def serve(config: ServerConfig) -> None:
    """Run until SIGINT or SIGTERM, then shut down gracefully."""
    running = create_server(config)
    done = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("shutting down", extra={"signal": signal.Signals(signum).name})
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    done.wait()
    running.stop()
    log.info("stopped")

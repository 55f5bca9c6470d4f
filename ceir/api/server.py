"""Building and running the CEIR gRPC server.

The server is ``grpc.aio`` on an event loop in a thread of its own, one for
every server of the process (see ``calls`` for why); blocking work runs in a
bounded pool of worker threads.

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

import asyncio
import gc
import logging
import os
import signal
import threading
from collections.abc import Callable, Coroutine
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import Counter

from ceir.audit import Signer, Verifier, generate_signing_key, load_private_key
from ceir.compact import release_freed_memory
from ceir.domain.complaints import DEFAULT_SERVICE_LEVELS, ServiceLevels
from ceir.domain.oversight import DEFAULT_FACTOR, DEFAULT_FLOOR, AlertRule
from ceir.service.capacity import WriteLimits
from ceir.service.certificates import CertificateAuthenticator
from ceir.service.checks import CheckService
from ceir.service.clock import Clock
from ceir.service.complaints import DEFAULT_DESK, SWEEP_SECONDS, ComplaintDesk
from ceir.service.custody import CustodyKeeper
from ceir.service.list_checkpoint import (
    EVERY_CHANGES,
    EVERY_SECONDS,
    MIN_SECONDS,
    ListCheckpointer,
)
from ceir.service.lookup import DEFAULT_BURST, DEFAULT_RATE, LookupService, RateLimiter
from ceir.service.merkle_log import DEFAULT_ORIGIN, CheckpointSigner
from ceir.service.orgs import Authenticator
from ceir.service.oversight import OversightService
from ceir.service.oversight_watch import RateWatch
from ceir.service.policy import PolicyService
from ceir.service.register import Register
from ceir.service.registry import RegistryService
from ceir.service.standby import Standby
from ceir.service.startup_proof import prove_at_start
from ceir.service.stolen_cases import StolenCaseService
from ceir.service.sync import SyncService
from ceir.service.theft_alerts import TheftWatch
from ceir.service.theft_alerts_reader import TheftAlertReader
from ceir.service.transparency import TransparencyService
from ceir.storage.database import Database
from ceir.v1 import (
    complaints_pb2,
    custody_pb2,
    equipment_check_pb2,
    list_sync_pb2,
    oversight_pb2,
    policy_pb2,
    registry_pb2,
    stolen_pb2,
    transparency_pb2,
)

from .access_log import AccessLog
from .calls import AtOnce, Gate
from .complaint_remote import remote_complaints
from .complaint_servicer import ComplaintServicer
from .custody_servicer import CustodyServicer, remote_fetch, remote_retire
from .lookup_server import LookupHandler, start_lookup_server
from .observability import Metrics
from .oversight_servicer import OversightServicer
from .servicers import (
    EquipmentCheckServicer,
    Mutations,
    PolicyServicer,
    RegistryServicer,
    TransparencyServicer,
)
from .standby_feed import GrpcFeed, standby_channel
from .stolen_servicer import StolenCaseServicer
from .streams import ChangeSignal, EquipmentCheckStreams, ImportStreams, ListSyncStreams

aio_health: Any = health.aio  # type: ignore[attr-defined]  # the asyncio servicer
log = logging.getLogger("ceir.server")
T = TypeVar("T")

SERVICES: tuple[ServiceDescriptor, ...] = (
    equipment_check_pb2.DESCRIPTOR.services_by_name["EquipmentCheckService"],
    registry_pb2.DESCRIPTOR.services_by_name["RegistryService"],
    list_sync_pb2.DESCRIPTOR.services_by_name["ListSyncService"],
    policy_pb2.DESCRIPTOR.services_by_name["PolicyService"],
    transparency_pb2.DESCRIPTOR.services_by_name["TransparencyService"],
    custody_pb2.DESCRIPTOR.services_by_name["CustodyService"],
    complaints_pb2.DESCRIPTOR.services_by_name["ComplaintService"],
    stolen_pb2.DESCRIPTOR.services_by_name["StolenCaseService"],
    oversight_pb2.DESCRIPTOR.services_by_name["OversightService"],
)
SERVICE_NAMES = tuple(service.full_name for service in SERVICES)
# Server settings shared with the benchmark's bare echo server, so that the
# comparison measures the register and not a difference in configuration.
GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.so_reuseport", 0),
    # One connection may hold at most this many calls at once: a client
    # wanting more opens more connections, each of which it must keep alive.
    ("grpc.max_concurrent_streams", 256),
    # Ping a connection after 20 s without traffic and close it if the peer
    # does not answer within 10 s: a client frozen behind a dead NAT loses
    # its calls in about 30 s instead of holding them until TCP gives up.
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    # gRPC 1.85 waits for a ping's answer for this long, whatever the keepalive
    # timeout says (60 s by default).
    ("grpc.http2.ping_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    # Clients may ping every 10 s; one that pings faster is disconnected.
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 2),
    # A connection with no call for 10 minutes is closed.
    ("grpc.max_connection_idle_ms", 600_000),
    # Calls not yet taken up by the event loop: past the soft limit (1,000 by
    # default) gRPC cancels new ones at random, so a burst of reconnecting
    # replicas, or idle hostile calls, would cut off legitimate ones.
    ("grpc.server.max_pending_requests", 10_000),
    ("grpc.server.max_pending_requests_hard_limit", 20_000),
]
# Threads for blocking work (database, building large answers). Calls wait
# on the event loop, never here, so this bounds work in progress, not callers.
WORKER_THREADS = 16
# Threads of the public IMEI lookup: its own, so that anonymous callers from
# many addresses can never hold the register's workers.
PUBLIC_LOOKUP_THREADS = 4
# Threads for credential lookups that the cache cannot answer.
LOOKUP_THREADS = 2
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
    # Refuse to start unless the stored log verifies (leaf hashes recomputed
    # from the change rows, tree nodes, the latest checkpoint's root and, with
    # signing_key, its signature) and the list tables equal its replay (off
    # only for tests of what a register does with tampered tables).
    prove_lists: bool = True
    # Instead of refusing list tables that differ from the verified log's
    # replay, rewrite the differing rows from it (one transaction) and report
    # each to repair_report (and the log). A log that fails its own
    # verification is refused all the same.
    repair_lists: bool = False
    repair_report: Callable[[str], None] | None = None
    # The signed note of custody policy 0 (docs/custody.md): the register's
    # trust root for the custody ceremony. Stored at the first start; later
    # starts must be given the same.
    custody_policy: Path | None = None
    # How often an announced custody policy's expiry is checked (seconds).
    custody_expiry_interval: float = 5.0
    # The incoming register's follower of the custodian's log
    # (``ceir.service.standby.Standby``, from --standby-of); its feed's channel
    # also reads the custodian's ceremony.
    standby: Any = None
    # Log keys of earlier custodians (the custody policy chain's): the latest
    # stored checkpoint may be signed by one of them instead of signing_key
    # (a register that took the log over), and a standby verifies the
    # custodian's checkpoints under them.
    trusted_log_keys: tuple[Verifier, ...] = ()
    # A standby register: follow the custodian serving at this HOST:PORT
    # (ceir.service.standby), over mutual TLS with client_cert/client_key;
    # standby_ca verifies the custodian's certificate (default client_ca).
    # A standby never signs: its signing key waits in RunningServer.standby_signer.
    standby_of: str | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    standby_ca: Path | None = None
    # A bearer token for the custodian instead of a client certificate (tests).
    standby_token: str | None = None
    # IMEIs the whitelist may hold (None: unlimited), and the range guard: the
    # most consecutive serials of one TAC an import chunk may hold unconfirmed
    # (None: off). See ceir.service.capacity.
    capacity: int | None = None
    range_guard: int | None = None
    # The list checkpoint file (ceir.service.list_checkpoint): started from
    # when it verifies, written every list_checkpoint_every changes or
    # list_checkpoint_seconds (0: only at shutdown) and at a clean shutdown.
    # None: neither.
    list_checkpoint: Path | None = None
    list_checkpoint_every: int = EVERY_CHANGES
    list_checkpoint_seconds: float = EVERY_SECONDS
    list_checkpoint_min_seconds: float = MIN_SECONDS  # between two background writes
    # False: the full start-up proof whatever the checkpoint (it is still written).
    start_from_list_checkpoint: bool = True
    # The complaints desk (ceir.service.complaints): the desk without a custody
    # policy, the service levels, and how often deadlines and desk moves are swept.
    complaints_desk: str = DEFAULT_DESK
    complaint_levels: ServiceLevels = DEFAULT_SERVICE_LEVELS
    complaint_sweep_seconds: float = SWEEP_SECONDS
    # The public lookup's own listener (ceir.api.lookup_server; None: off), its
    # rate limit per client address (tokens a second, burst) and the clock of
    # its token buckets (tests; None: the system clock).
    lookup_address: str | None = None
    lookup_rate: float = DEFAULT_RATE
    lookup_burst: int = DEFAULT_BURST
    lookup_clock: Clock | None = None
    # The account alert (ceir.domain.oversight): an organisation's hourly
    # registrations over factor x max(its baseline, floor) raise one alert.
    account_alert_factor: float = DEFAULT_FACTOR
    account_alert_floor: float = DEFAULT_FLOOR


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    register: Register
    health: Any
    metrics: Metrics
    loop: asyncio.AbstractEventLoop
    workers: futures.ThreadPoolExecutor
    lookups: futures.ThreadPoolExecutor
    metrics_port: int | None = None
    token_port: int | None = None
    # The queue of access-log lines and its writer (None: no access log);
    # ``access_log.flush()`` writes what is queued now.
    access_log: AccessLog | None = None
    # With ServerConfig.standby_of: the standby following the custodian, the
    # channel to the custodian (for the custody ceremony's calls), and the
    # signing key the register does not use while it is a standby.
    standby: Standby | None = None
    standby_channel: grpc.Channel | None = None
    standby_signer: CheckpointSigner | None = None
    # The custody ceremony's keeper, when the register has a custody policy.
    keeper: CustodyKeeper | None = None
    # Writes the list checkpoint, when the server has one and a signing key.
    checkpointer: ListCheckpointer | None = None
    # Theft alerts' writer; the public lookup's listener and port (None: off).
    theft_watch: TheftWatch | None = None
    lookup_server: grpc.aio.Server | None = None
    lookup_port: int | None = None
    public_lookups: futures.ThreadPoolExecutor | None = None
    _stopped: threading.Event = field(default_factory=threading.Event)

    def stop(self, grace: float = 5.0) -> None:
        """Graceful shutdown: NOT_SERVING, finish in-flight calls, close."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._on_loop(self.health.enter_graceful_shutdown())
        if self.standby is not None:
            self.standby.stop()
        if self.standby_channel is not None:
            self.standby_channel.close()
        self.register.close()  # ends WatchChanges streams
        if self.keeper is not None:
            self.keeper.join_timer()
        if self.lookup_server is not None:
            self._on_loop(self.lookup_server.stop(grace))
        self._on_loop(self.server.stop(grace))
        if self.theft_watch is not None:  # every check has ended: write their alerts
            self.theft_watch.close()
        if self.access_log is not None:  # every call has ended: write their lines
            self.access_log.close()
        # Work still running after the grace period finishes before the
        # pool closes, so no connection is left checked out of a closed pool.
        self.workers.shutdown(wait=True, cancel_futures=True)
        self.lookups.shutdown(wait=True, cancel_futures=True)
        if self.public_lookups is not None:
            self.public_lookups.shutdown(wait=True, cancel_futures=True)
        if self.checkpointer is not None:  # the lists at the last write: a quick restart
            try:
                self.checkpointer.stop(write=True)
            except Exception:
                log.exception("writing the list checkpoint at shutdown failed")
        gc.collect()  # close the generators of cancelled snapshots now
        self.register.db.dispose()

    def _on_loop(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result()


def create_server(config: ServerConfig) -> RunningServer:
    """Open the database, load the lists and start serving (in a thread of
    its own: the event loop's); returns once the ports are bound."""
    check_transport(config)  # before anything is opened
    db = Database(config.db)
    if config.migrate:
        db.migrate()
    signer = checkpoint_signer(config)
    lists, written = None, 0
    if config.prove_lists:
        try:  # before anything is answered from the tables
            proof = prove_at_start(
                db,
                _own_verifier(config, signer),
                config.log_origin,
                repair=config.repair_lists,
                report=config.repair_report,
                trusted=config.trusted_log_keys,
                list_checkpoint=config.list_checkpoint
                if config.start_from_list_checkpoint
                else None,
            )
            lists, written = proof.state, proof.list_checkpoint_size or 0
        except BaseException:
            db.dispose()
            raise
        release_freed_memory()  # the replay's rows are gone: give their pages back
    standby_signer = None
    if config.standby_of is not None:  # a standby signs nothing until it is the custodian
        standby_signer, signer = signer, None
    register = Register(db, config.clock, signer=signer, lists=lists)
    register.standby_of = config.standby_of or ""  # before the first call is answered
    register.limits = WriteLimits(config.capacity, config.range_guard)
    register.limits.applied(register.state)  # warns at start-up if near the capacity
    standby, standby_feed_channel = config.standby, None
    try:
        if standby is None and config.standby_of is not None:
            # Built now, started once the server serves: the custody keeper
            # transfers through it and reads the custodian over its channel.
            standby, standby_feed_channel = _standby(register, config)
        keeper = custody_keeper(config, register, standby, standby_signer)
    except BaseException:
        if standby_feed_channel is not None:
            standby_feed_channel.close()
        register.close()
        db.dispose()
        raise
    register.start_following(config.follow_interval)
    metrics = Metrics(lambda: register.state)
    register.limits.export(metrics.registry, lambda: register.state)
    register.rates = RateWatch(AlertRule(config.account_alert_factor, config.account_alert_floor))
    register.rates.export(metrics.registry)
    workers = futures.ThreadPoolExecutor(WORKER_THREADS, thread_name_prefix="ceir-worker")
    lookups = futures.ThreadPoolExecutor(LOOKUP_THREADS, thread_name_prefix="ceir-lookup")
    access_log = AccessLog(dropped=metrics.access_log_dropped) if config.access_log else None
    gate = Gate(
        Authenticator(db),
        metrics,
        workers,
        lookups,
        access_log=access_log,
        certificates=CertificateAuthenticator(db) if config.client_ca is not None else None,
    )
    loop = _event_loop()
    signal = ChangeSignal(loop)
    register.add_listener(signal.notify)
    watch = TheftWatch(
        register,
        raised=Counter(
            "ceir_theft_alerts", "Theft alerts raised to reporters", registry=metrics.registry
        ),
        dropped=Counter(
            "ceir_theft_alerts_dropped",
            "Sightings of blocked IMEIs dropped on a full alert queue",
            registry=metrics.registry,
        ),
    )
    checks = CheckService(register, watch)
    check_servicer = EquipmentCheckServicer(checks)
    sync = SyncService(register)
    mutations = Mutations(register)
    desk = complaint_desk(config, register, metrics)
    # Methods answered on the event loop when they need no worker.
    at_once: dict[str, AtOnce] = {
        "CheckEquipment": check_servicer.check_at_once,
        "CheckEquipmentBatch": check_servicer.check_batch_at_once,
    }
    implementations = {
        "EquipmentCheckService": (check_servicer, EquipmentCheckStreams(checks)),
        "RegistryService": (
            RegistryServicer(RegistryService(register), mutations),
            ImportStreams(register),
        ),
        "ListSyncService": (None, ListSyncStreams(sync, signal)),
        "PolicyService": (PolicyServicer(PolicyService(register), mutations), None),
        "TransparencyService": (TransparencyServicer(TransparencyService(register)), None),
        "CustodyService": (CustodyServicer(keeper), None),
        "ComplaintService": (ComplaintServicer(desk), None),
        "StolenCaseService": (
            StolenCaseServicer(StolenCaseService(register, watch), TheftAlertReader(register)),
            None,
        ),
        "OversightService": (OversightServicer(OversightService(register), mutations), None),
    }
    handlers = [
        _service_handler(gate, service, *implementations[service.name], at_once)
        for service in SERVICES
    ]
    public_lookups: futures.ThreadPoolExecutor | None = None
    try:
        server, health_servicer, port, token_port = asyncio.run_coroutine_threadsafe(
            _start(config, handlers), loop
        ).result()
        lookup_server, lookup_port = None, None
        if config.lookup_address is not None:
            limiter = RateLimiter(
                config.lookup_rate, config.lookup_burst, clock=config.lookup_clock
            )
            public_lookups = futures.ThreadPoolExecutor(
                PUBLIC_LOOKUP_THREADS, thread_name_prefix="ceir-public-lookup"
            )
            handler = LookupHandler(LookupService(register), limiter, public_lookups, metrics)
            tls = (
                None
                if config.tls_key is None or config.tls_cert is None
                else (config.tls_key, config.tls_cert)
            )
            try:
                lookup_server, lookup_port = asyncio.run_coroutine_threadsafe(
                    start_lookup_server(handler, config.lookup_address, tls, GRPC_OPTIONS), loop
                ).result()
            except BaseException:  # the register's ports are bound: close them too
                asyncio.run_coroutine_threadsafe(server.stop(0), loop).result()
                raise
    except BaseException:
        workers.shutdown()
        lookups.shutdown()
        if public_lookups is not None:
            public_lookups.shutdown()
        watch.close()
        if access_log is not None:
            access_log.close()
        register.close()
        db.dispose()
        raise
    metrics_port = None
    if config.metrics_port is not None:
        metrics_port = metrics.serve(config.metrics_port)
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
            "lookup_port": lookup_port,
            "log_origin": register.log.origin,
            "log_size": register.log.size,
            "signing_key": register.log.signer.signer.verifier.vkey
            if register.log.signer is not None
            else None,
        },
    )
    checkpointer = None
    # A key made up at start-up could not verify the checkpoint at the next.
    if config.list_checkpoint is not None and signer is not None and config.signing_key:
        checkpointer = ListCheckpointer(
            register,
            config.list_checkpoint,
            written=written,
            every_changes=config.list_checkpoint_every or 2**63,
            every_seconds=config.list_checkpoint_seconds or float("inf"),
            min_seconds=config.list_checkpoint_min_seconds,
        )
        checkpointer.start()
    running = RunningServer(
        server,
        port,
        register,
        health_servicer,
        metrics,
        loop,
        workers,
        lookups,
        metrics_port,
        token_port,
        access_log=access_log,
        standby_signer=standby_signer,
        keeper=keeper,
        checkpointer=checkpointer,
        theft_watch=watch,
        lookup_server=lookup_server,
        lookup_port=lookup_port,
        public_lookups=public_lookups,
    )
    if config.standby_of is not None and isinstance(standby, Standby):
        running.standby, running.standby_channel = standby, standby_feed_channel
        if keeper is None or keeper.follows_custodian():
            try:
                _start_standby(running, config)
            except BaseException:
                running.stop(grace=0)
                raise
    return running


def complaint_desk(config: ServerConfig, register: Register, metrics: Metrics) -> ComplaintDesk:
    """The complaints desk, its missed deadlines counted, its sweep started."""
    from prometheus_client import Counter

    missed = Counter(
        "ceir_complaint_deadlines_missed",
        "Complaints whose deadline passed while open (each escalated once)",
        ["category"],
        registry=metrics.registry,
    )
    desk = ComplaintDesk(
        register,
        config.complaint_levels,
        config.complaints_desk,
        on_missed=lambda category: missed.labels(category.name).inc(),
    )
    desk.start_sweeping(config.complaint_sweep_seconds)
    return desk


def _standby(register: Register, config: ServerConfig) -> tuple[Standby, grpc.Channel]:
    """The follower of the custodian at ``config.standby_of``, not started."""
    assert config.standby_of is not None
    channel = standby_channel(
        config.standby_of,
        client_cert=config.client_cert,
        client_key=config.client_key,
        ca=config.standby_ca or config.client_ca,
    )
    token = config.standby_token
    feed = GrpcFeed(channel, (("authorization", f"Bearer {token}"),) if token else ())
    return Standby(register, feed, config.trusted_log_keys, config.log_origin), channel


def _start_standby(running: RunningServer, config: ServerConfig) -> None:
    """Follow the custodian at ``config.standby_of`` (after start-up: the
    lists were proven from this register's own log first)."""
    assert config.standby_of is not None and running.standby is not None
    running.standby.start()
    log.info(
        "following the custodian as a standby",
        extra={"custodian": config.standby_of, "verified_size": running.standby.size},
    )


async def _start(
    config: ServerConfig, handlers: list[grpc.GenericRpcHandler[Any, Any]]
) -> tuple[grpc.aio.Server, Any, int, int | None]:
    """Build, bind and start the gRPC server (on the event loop)."""
    server = grpc.aio.server(handlers=handlers, options=GRPC_OPTIONS)
    health_servicer = aio_health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*(s.full_name for s in SERVICES), health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port, token_port = _bind(server, config)
    for name in ("", *(s.full_name for s in SERVICES)):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    await server.start()
    return server, health_servicer, port, token_port


def _service_handler(
    gate: Gate,
    service: ServiceDescriptor,
    unary: object | None,
    streams: object | None,
    at_once: dict[str, AtOnce],
) -> grpc.GenericRpcHandler[Any, Any]:
    """Every method of ``service``: unary ones from ``unary``, streaming ones from ``streams``."""
    methods = {}
    for method in service.methods:
        if method.client_streaming or method.server_streaming:
            methods[method.name] = gate.streaming(
                method.name, getattr(streams, method.name), server_streaming=method.server_streaming
            )
        else:
            request_type = message_factory.GetMessageClass(method.input_type)
            methods[method.name] = gate.unary(
                method.name, request_type, getattr(unary, method.name), at_once.get(method.name)
            )
    return grpc.method_handlers_generic_handler(service.full_name, methods)


def _event_loop() -> asyncio.AbstractEventLoop:
    """The process's event loop for gRPC servers, running in a daemon thread
    (started on first use, never closed).

    One loop for every server of the process (tests start many): grpc.aio's
    completion-queue poller keeps calling each loop it has served, and a
    closed one would make it raise on every event.
    """
    global _running_loop
    with _loop_lock:
        if _running_loop is None or not _running_loop[1].is_alive():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="ceir-grpc", daemon=True)
            thread.start()
            _running_loop = (loop, thread)
        return _running_loop[0]


_loop_lock = threading.Lock()
_running_loop: tuple[asyncio.AbstractEventLoop, threading.Thread] | None = None


def custody_keeper(
    config: ServerConfig,
    register: Register,
    standby: Any = None,
    withheld_signer: CheckpointSigner | None = None,
) -> CustodyKeeper | None:
    """The custody ceremony of a register started with a custody policy (None without).

    Raises ``CustodyConfigError`` when the policy does not fit the database or the key.
    """
    if config.custody_policy is None:
        return None
    feed = getattr(standby, "feed", standby)  # the channel is the standby feed's
    keeper = CustodyKeeper(
        register,
        standby=standby,
        outgoing=None
        if standby is None
        else remote_fetch(feed.channel, getattr(feed, "metadata", ())),
        retire_outgoing=None
        if standby is None
        else remote_retire(feed.channel, getattr(feed, "metadata", ())),
        outgoing_complaints=None
        if standby is None
        else remote_complaints(feed.channel, getattr(feed, "metadata", ())),
        standby_endpoint=getattr(config, "standby_of", None) or "",
        withheld_signer=withheld_signer,
    )
    keeper.open(config.custody_policy.read_text(encoding="utf-8"))
    keeper.start_timer(config.custody_expiry_interval)
    return keeper


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


def _own_verifier(config: ServerConfig, signer: CheckpointSigner | None) -> Verifier | None:
    """The key the stored checkpoints must verify under: the custodian's own
    (an ephemeral key, made up at this start, cannot have signed them)."""
    if config.signing_key is None or signer is None:
        return None
    return signer.signer.verifier


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
    if config.standby_of is not None and not config.trusted_log_keys:
        raise ValueError(
            "--standby-of needs the custodian's log key (--trusted-log-key) to verify its "
            "checkpoints"
        )
    if (config.client_cert is None) != (config.client_key is None):
        raise ValueError("--client-cert and --client-key go together")
    if config.standby_of is None and config.client_cert is not None:
        raise ValueError("--client-cert and --client-key are for a standby (--standby-of)")
    if config.token_address is not None and config.client_ca is None:
        raise ValueError("--token-listen is for a mutual-TLS server (--client-ca)")


def _bind(server: grpc.aio.Server, config: ServerConfig) -> tuple[int, int | None]:
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

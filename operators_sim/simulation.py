"""An attach simulation: a CEIR, five operator EIR nodes, a population, and
Poisson traffic for a while; the result is what the report shows.

Steps: start (or reach) the CEIR (the embedded one serves mutual TLS with a
demo PKI made for the run, each organisation connecting with its own client
certificate; plain text with tokens only with ``insecure``); Kominfo sets the phase; generate the
population and load it through the API; start the nodes (synchronize: wait
for their snapshots); run traffic tick by tick, each operator's attaches
decided by its node in the node's own thread; inject list changes; optionally
kill the (embedded) CEIR for an outage and start it again; at the end let
every node catch up with the register and judge every decision against the
ground truth.
"""

from __future__ import annotations

import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ceir.v1 import equipment_check_pb2 as check_pb
from ceir.v1 import equipment_check_pb2_grpc as check_grpc
from ceir.v1 import types_pb2 as pb

from .complaints import ComplaintEngine, ComplaintSettings, ComplaintSummary, summarize_complaints
from .custody_follower import CustodySetup
from .decision import Decisions
from .embedded import EmbeddedCeir, demo_pki
from .insider import InsiderRun, InsiderSettings, InsiderSummary, chosen_floor, pick_devices
from .loader import KOMINFO, REQUIRED_ORGS, Admin, LoadResult, check_tokens, load
from .node import (
    OPERATORS,
    AttachBatch,
    AuthorizeNode,
    Failover,
    Mode,
    Node,
    SyncNode,
    now_us,
)
from .population import Population, generate
from .traffic import Attaches, Injector, Traffic
from .transport import (
    Credentials,
    GrpcLink,
    Tls,
    client_certificates,
    describe_transport,
    open_channel,
    token_credentials,
)
from .truth import Truth
from .verification import DEFAULT_ORIGIN, Gossip, Trust
from .writes import DEFAULT_RETRY_FOR, WriteLedger

PHASES = {"notify": pb.PHASE_NOTIFY, "enforce": pb.PHASE_ENFORCE}


@dataclass
class SimConfig:
    """Everything a run needs; the CLI's options map onto it one to one."""

    devices: int = 10_000
    rate: float = 1_000.0
    duration: float = 10.0
    attaches: int | None = None  # when set: run until this many attaches, not for ``duration``
    mode: Mode = Mode.SYNCHRONIZE
    phase: str = "notify"
    failover: Failover = Failover.LAST_KNOWN
    seed: int = 1
    ceir: str | None = None
    tokens: dict[str, str] | None = None
    tls: Tls | None = None  # with ``ceir``: connect with TLS
    # with ``ceir``: mutual TLS, ``<org>.pem``/``<org>.key`` and ``ca.pem`` (``ceir pki init``)
    client_certs: Path | None = None
    insecure: bool = False  # the embedded CEIR serves plain text with tokens, not mutual TLS
    data_dir: Path | None = None
    inject_rate: float = 2.0
    cache_ttl: float = 5.0
    grace_days: int = 30
    outage: tuple[float, float] | None = None  # (start, length) s into the run
    tick: float = 0.01
    verify: bool = True  # synchronize nodes verify the signed log (the embedded CEIR's key)
    custodian_key: Path | None = None  # with ``ceir``: the custodian's public key; verify with it
    log_origin: str = DEFAULT_ORIGIN
    catch_up_timeout: float = 60.0
    # Custody: the nodes trust this policy 0 (signed note file) and follow handovers
    # (``operators_sim.custody_follower``); each keeps its state and evidence in
    # ``node_state/<operator>`` (default: ``<data dir>/nodes`` or a new temporary
    # directory, kept). ``endpoints``: a policy endpoint -> the address to dial,
    # for nodes and writers alike. Writes retry through a freeze for ``retry_for`` s.
    custody_policy: Path | None = None
    node_state: Path | None = None
    endpoints: dict[str, str] = field(default_factory=dict)
    custody_poll: float = 1.0
    retry_for: float = DEFAULT_RETRY_FOR
    # complaint traffic (``operators_sim.complaints``; share 0: none)
    # (off here; ``ceir-sim attach`` turns it on with --complaint-share 0.1)
    complaints: ComplaintSettings = field(default_factory=lambda: ComplaintSettings(share=0.0))
    # ``--scenario insider``: one account's burst of registrations, its alert and
    # its bulk revocation (``operators_sim.insider``); None for a normal run
    insider: InsiderSettings | None = None


@dataclass
class Progress:
    """What the live display shows."""

    phase: str
    elapsed: float = 0.0
    duration: float = 0.0
    attaches: int = 0
    denied: int = 0
    degraded: int = 0
    ceir_up: bool = True
    nodes: list[tuple[str, int, int, bool]] = field(default_factory=list)  # name, seq, lag, up


@dataclass
class Records:
    """Every decision of the run, as columns."""

    operator: npt.NDArray[np.int64]
    device: npt.NDArray[np.int64]
    slot: npt.NDArray[np.int64]
    sim: npt.NDArray[np.int64]
    outcome: npt.NDArray[np.uint8]
    source: npt.NDArray[np.uint8]
    sequence: npt.NDArray[np.uint64]
    block_date: npt.NDArray[np.int64]
    at: npt.NDArray[np.float64]  # seconds since the run started
    latency: npt.NDArray[np.float64]  # seconds from the node receiving it to the answer
    decided_at: npt.NDArray[np.float64]  # Unix seconds


@dataclass
class SimResult:
    config: SimConfig
    population: Population
    load: LoadResult
    records: Records
    truth: Truth
    nodes: list[Node]
    run_seconds: float
    setup_seconds: float
    head_sequence: int
    caught_up: bool
    injected: dict[str, int]
    outages: list[tuple[float, float]]
    verifying: bool = False  # synchronize nodes verified the signed log
    transport: str = ""  # how the organisations connected, in words
    split_views: list[str] = field(default_factory=list)
    writes: WriteLedger | None = None  # every acknowledged write and the refusal counts
    node_state: Path | None = None  # with custody: the nodes' state and evidence
    complaints: ComplaintSummary | None = None  # with complaint traffic
    insider: InsiderSummary | None = None  # the insider scenario


class _Recorder:
    def __init__(self) -> None:
        self._parts: list[tuple[np.ndarray, ...]] = []
        self._lock = threading.Lock()
        self.attaches = 0
        self.denied = 0

    def add(
        self,
        operator: int,
        attaches: Attaches,
        rows: npt.NDArray[np.intp],
        decisions: Decisions,
        at: float,
        latency: float,
        decided_at: float,
    ) -> None:
        from .decision import ALLOWED

        count = len(decisions)
        part = (
            np.full(count, operator, np.int64),
            attaches.device[rows],
            attaches.slot[rows],
            attaches.sim[rows],
            decisions.outcome,
            decisions.source,
            decisions.sequence,
            decisions.block_date,
            np.full(count, at),
            np.full(count, latency),
            np.full(count, decided_at),
        )
        with self._lock:
            self._parts.append(part)
            self.attaches += count
            self.denied += int((~ALLOWED[decisions.outcome]).sum())

    def new_parts(self, start: int) -> tuple[list[tuple[np.ndarray, ...]], int]:
        """The decisions recorded since part ``start``, and the next start."""
        with self._lock:
            return self._parts[start:], len(self._parts)

    def records(self) -> Records:
        with self._lock:
            parts = list(self._parts)
        dtypes = (
            np.int64,
            np.int64,
            np.int64,
            np.int64,
            np.uint8,
            np.uint8,
            np.uint64,
            np.int64,
            np.float64,
            np.float64,
            np.float64,
        )
        columns = [
            np.concatenate([p[i] for p in parts]) if parts else np.empty(0, dtype)
            for i, dtype in enumerate(dtypes)
        ]
        return Records(*columns)


class _Worker:
    """One node's thread: takes its operator's attaches and decides them."""

    def __init__(
        self, index: int, node: Node, population: Population, recorder: _Recorder, started: float
    ) -> None:
        self.index = index
        self.node = node
        self.population = population
        self.recorder = recorder
        self.started = started
        self.queue: queue.Queue[tuple[Attaches, npt.NDArray[np.intp], float] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name=f"{node.name}-attach", daemon=True)
        self.thread.start()

    def submit(self, attaches: Attaches, rows: npt.NDArray[np.intp]) -> None:
        self.queue.put((attaches, rows, time.perf_counter()))

    def finish(self) -> None:
        self.queue.put(None)
        self.thread.join()

    def _run(self) -> None:
        finished = False
        while not finished:
            first = self.queue.get()
            if first is None:
                return
            # Take whatever else is waiting: under load the node decides
            # bigger batches instead of falling behind one small batch at a time.
            items = [first]
            while True:
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    finished = True
                    break
                items.append(item)
            batches = [attaches.batch(self.population, rows) for attaches, rows, _ in items]
            merged = batches[0]
            if len(batches) > 1:
                merged = AttachBatch(
                    np.concatenate([b.imeis for b in batches]),
                    np.concatenate([b.imsis for b in batches]),
                    np.concatenate([b.msisdns for b in batches]),
                )
            decisions = self.node.decide_batch(merged, now_us())
            done = time.perf_counter()
            offset = 0
            for attaches, rows, received in items:
                part = decisions.slice(offset, offset + rows.shape[0])
                offset += rows.shape[0]
                self.recorder.add(
                    self.index,
                    attaches,
                    rows,
                    part,
                    received - self.started,
                    done - received,
                    time.time(),
                )


def head_sequence(target: str, token: str | None, tls: Tls | None = None) -> int:
    """The register's current sequence, from the answer to a check of a
    malformed IMEI (which records nothing)."""
    with open_channel(target, tls) as channel:
        answer = check_grpc.EquipmentCheckServiceStub(channel).CheckEquipment(
            check_pb.CheckEquipmentRequest(imei="0"),
            metadata=Credentials(token, tls).metadata,
            timeout=10,
        )
    return int(answer.sequence)


class Simulation:
    def __init__(
        self, config: SimConfig, progress: Callable[[Progress], None] | None = None
    ) -> None:
        self.config = config
        self.progress = progress or (lambda _p: None)
        self.embedded: EmbeddedCeir | None = None
        self._own_dir: Path | None = None
        self._restart: threading.Thread | None = None
        self.trust: Trust | None = None
        self.gossip = Gossip()
        self.node_state: Path | None = None
        self._alert_rule: tuple[float, float] | None = None

    def _custody(self, operator: str, credentials: Credentials) -> CustodySetup | None:
        """The node's custody setup, when the run is given a policy 0."""
        config = self.config
        if config.custody_policy is None:
            return None
        if self.node_state is None:
            base = config.node_state or (
                config.data_dir / "nodes"
                if config.data_dir is not None
                else Path(tempfile.mkdtemp(prefix="ceir-sim-nodes-"))
            )
            self.node_state = base
        return CustodySetup(
            policy_0=config.custody_policy.read_text(encoding="utf-8"),
            connect=lambda target: GrpcLink(target, credentials.token, tls=credentials.tls),
            state_dir=self.node_state / operator,
            endpoints=config.endpoints,
            poll_interval=config.custody_poll,
        )

    def _trust(self) -> Trust | None:
        config = self.config
        if not config.verify or config.custody_policy is not None:
            return None  # with a policy 0, each node takes its keys from its policy chain
        if self.embedded is not None:
            return Trust.from_file(self.embedded.public_key_path, config.log_origin)
        if config.custodian_key is not None:
            return Trust.from_file(config.custodian_key, config.log_origin)
        return None

    def _start_ceir(self) -> tuple[str, dict[str, Credentials]]:
        """Start (or reach) the CEIR; where it listens and how each
        organisation connects to it."""
        config = self.config
        if config.ceir:
            if config.client_certs is not None:
                ca = config.tls.ca_cert or None if config.tls is not None else None
                name = config.tls.server_name if config.tls is not None else None
                return config.ceir, client_certificates(
                    config.client_certs, REQUIRED_ORGS, ca, name
                )
            if config.tokens is None:
                raise ValueError(
                    "--ceir needs --tokens (a JSON file of organisation -> token) "
                    "or --client-certs (a directory of client certificates)"
                )
            check_tokens(config.tokens)
            return config.ceir, token_credentials(config.tokens, config.tls)
        directory = config.data_dir
        if directory is None:
            directory = self._own_dir = Path(tempfile.mkdtemp(prefix="ceir-sim-"))
        elif (directory / "ceir.db").exists():
            (directory / "ceir.db").unlink()  # a simulation starts from an empty register
            for suffix in ("-wal", "-shm"):
                Path(f"{directory / 'ceir.db'}{suffix}").unlink(missing_ok=True)
        if config.insecure:
            self.embedded = EmbeddedCeir(directory, alert_rule=self._alert_rule)
            self.embedded.start()
            return self.embedded.address, token_credentials(self.embedded.create_organisations())
        pki = demo_pki(directory / "pki")
        self.embedded = EmbeddedCeir(
            directory,
            tls=(pki.key(pki.server), pki.server),
            client_ca=pki.ca,
            alert_rule=self._alert_rule,
        )
        self.embedded.start()
        self.embedded.create_organisations()  # the register must know the certificates' CNs
        return self.embedded.address, client_certificates(pki.directory, REQUIRED_ORGS)

    def run(self) -> SimResult:
        config = self.config
        setup_started = time.monotonic()
        self.progress(Progress(f"generating {config.devices:,} devices"))
        population = generate(config.devices, config.seed)
        if config.insider is not None:  # the embedded register's alert rule for the scenario
            devices = pick_devices(population, config.insider)
            floor = chosen_floor(population, config.insider, devices)
            self._alert_rule = (config.insider.alert_factor, floor)
        self.progress(Progress("starting the CEIR"))
        target, credentials = self._start_ceir()
        admin = Admin(
            target,
            credentials=credentials,
            endpoints=config.endpoints,
            retry_for=config.retry_for,
        )
        nodes: list[Node] = []
        try:
            admin.set_policy(phase=PHASES[config.phase], grace_days=config.grace_days)
            self.progress(Progress("loading the population through the API"))
            loaded = load(admin, population)
            truth = Truth(population, PHASES[config.phase])
            self.progress(Progress("starting the operator nodes"))
            self.trust = self._trust()
            nodes = [
                self._node(op_index, target, credentials) for op_index in range(len(OPERATORS))
            ]
            for node in nodes:
                node.start()
            for node in nodes:
                if isinstance(node, SyncNode) and not node.wait_ready(120):
                    raise RuntimeError(f"{node.name} did not get its snapshot")
            setup_seconds = time.monotonic() - setup_started
            result = self._run_traffic(
                admin, target, credentials, population, loaded, truth, nodes, setup_seconds
            )
            result.transport = describe_transport(credentials.values())
            return result
        finally:
            for node in nodes:
                node.stop()
            admin.close()
            if self.embedded is not None:
                self.embedded.stop()
            if self._own_dir is not None:
                shutil.rmtree(self._own_dir, ignore_errors=True)

    def _node(self, index: int, target: str, credentials: dict[str, Credentials]) -> Node:
        operator = OPERATORS[index]
        own = credentials[operator.name]
        link = GrpcLink(target, own.token, tls=own.tls)
        custody = self._custody(operator.name, own)
        if self.config.mode is Mode.SYNCHRONIZE:
            return SyncNode(
                operator,
                link,
                self.config.failover,
                trust=self.trust if self.config.verify else None,
                gossip=self.gossip,
                custody=custody if self.config.verify else None,
            )
        return AuthorizeNode(
            operator,
            link,
            self.config.failover,
            cache_ttl=self.config.cache_ttl,
            custody=custody,
        )

    def _run_traffic(
        self,
        admin: Admin,
        target: str,
        credentials: dict[str, Credentials],
        population: Population,
        loaded: LoadResult,
        truth: Truth,
        nodes: list[Node],
        setup_seconds: float,
    ) -> SimResult:
        config = self.config
        traffic = Traffic(population, config.seed)
        recorder = _Recorder()
        started = time.perf_counter()
        workers = [_Worker(i, node, population, recorder, started) for i, node in enumerate(nodes)]
        insider = (
            InsiderRun(admin, population, truth, config.insider, config.duration)
            if config.insider is not None
            else None
        )
        injector = Injector(
            admin,
            population,
            truth,
            config.inject_rate,
            config.seed,
            reserved=insider.devices if insider is not None else (),
        )
        injector.start()
        complaints = self._complaints(admin, population, truth, recorder)
        if complaints is not None:
            complaints.start(started)
        if insider is not None:
            insider.start(started)
        outages: list[tuple[float, float]] = []
        down_at: float | None = None
        last = started
        next_progress = 0.0
        generated = 0
        limit = config.attaches if config.attaches is not None else float("inf")
        while generated < limit:
            now = time.perf_counter()
            elapsed = now - started
            if config.attaches is None and elapsed >= config.duration:
                break
            down_at = self._outage(elapsed, down_at, outages)
            count = int(min(traffic.arrivals(config.rate, now - last), limit - generated))
            generated += count
            last = now
            if count:
                attaches = traffic.draw(count)
                for index, worker in enumerate(workers):
                    rows = np.flatnonzero(attaches.operator == index)
                    if rows.size:
                        worker.submit(attaches, rows)
            if elapsed >= next_progress:
                self.progress(self._progress("running", elapsed, recorder, nodes))
                next_progress = elapsed + 0.25
            time.sleep(max(0.0, config.tick - (time.perf_counter() - now)))
        if down_at is not None:  # an outage still running at the end: end it
            self._outage(float("inf"), down_at, outages)
        if self._restart is not None:
            self._restart.join()
        admin.interrupt()  # a write still waiting out a freeze is given up (not acknowledged)
        injector.stop()
        for worker in workers:
            worker.finish()
        run_seconds = time.perf_counter() - started
        insider_summary = insider.finish(recorder.records()) if insider is not None else None
        if complaints is not None:
            self.progress(self._progress("desks draining", run_seconds, recorder, nodes))
            complaints.finish(run_seconds)
        self.progress(self._progress("catching up", run_seconds, recorder, nodes))
        head, caught_up = self._catch_up(admin.target, credentials[KOMINFO], nodes)
        custody_views = [
            view
            for node in nodes
            if isinstance(node, SyncNode) and node.custody is not None
            for view in node.custody.stats.split_views
        ]
        return SimResult(
            verifying=config.mode is Mode.SYNCHRONIZE
            and (self.trust is not None or (config.verify and config.custody_policy is not None)),
            split_views=list(self.gossip.split_views) + custody_views,
            writes=admin.ledger,
            node_state=self.node_state,
            config=config,
            population=population,
            load=loaded,
            records=recorder.records(),
            truth=truth,
            nodes=nodes,
            run_seconds=run_seconds,
            setup_seconds=setup_seconds,
            head_sequence=head,
            caught_up=caught_up,
            injected={
                "registered": injector.stats.registered,
                "stolen": injector.stats.stolen,
                "recovered": injector.stats.recovered,
                "failed_attempts": injector.stats.failed,
            },
            outages=outages,
            complaints=summarize_complaints(complaints) if complaints is not None else None,
            insider=insider_summary,
        )

    def _complaints(
        self, admin: Admin, population: Population, truth: Truth, recorder: _Recorder
    ) -> ComplaintEngine | None:
        """The complaint traffic, reading the recorder's new decisions as they come."""
        settings = self.config.complaints
        if not settings.enabled:
            return None
        taken = 0

        def decisions() -> list[tuple[np.ndarray, ...]]:
            nonlocal taken
            parts, taken = recorder.new_parts(taken)
            # operator, device, slot, sim, outcome, source, seconds into the run
            return [(*part[:6], part[8]) for part in parts]

        return ComplaintEngine(
            admin,
            population,
            truth,
            settings,
            tuple(op.name for op in OPERATORS),
            self.config.duration,
            decisions,
        )

    def _outage(
        self, elapsed: float, down_at: float | None, outages: list[tuple[float, float]]
    ) -> float | None:
        """Kill the embedded CEIR when the outage starts; start it when it ends."""
        window = self.config.outage
        if window is None or self.embedded is None:
            return None
        start, length = window
        if down_at is None and start <= elapsed < start + length and not outages:
            self.embedded.kill()
            return elapsed
        if down_at is not None and elapsed >= start + length:
            # starting takes a second or two: do not hold the traffic up meanwhile
            self._restart = threading.Thread(target=self.embedded.start, name="ceir-restart")
            self._restart.start()
            outages.append((down_at, min(elapsed, start + length) - down_at))
            return None
        return down_at

    def _catch_up(self, target: str, kominfo: Credentials, nodes: list[Node]) -> tuple[int, bool]:
        """Let reports reach the register and every replica reach its head."""
        deadline = time.monotonic() + self.config.catch_up_timeout
        for node in nodes:
            if isinstance(node, SyncNode):
                node.reporter.flush(max(deadline - time.monotonic(), 0.1))
        head = head_sequence(target, kominfo.token, kominfo.tls)
        caught_up = True
        for node in nodes:
            if isinstance(node, SyncNode):
                left = max(deadline - time.monotonic(), 0.1)
                caught_up &= node.follower.wait_for(head, left)
        return head, caught_up

    def _progress(
        self, phase: str, elapsed: float, recorder: _Recorder, nodes: list[Node]
    ) -> Progress:
        rows = []
        degraded = 0
        for node in nodes:
            degraded += node.stats.degraded
            if isinstance(node, SyncNode):
                rows.append((node.name, node.applied_sequence, node.lag, node.follower.connected))
            else:
                rows.append((node.name, node.last_sequence, 0, node.link.reachable()))
        up = self.embedded.running if self.embedded is not None else True
        return Progress(
            phase,
            elapsed,
            self.config.duration,
            recorder.attaches,
            recorder.denied,
            degraded,
            up,
            rows,
        )

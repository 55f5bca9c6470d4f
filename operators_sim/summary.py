"""The figures of a run, as typed values: per operator and in total, replica,
cache and log verification, mismatches against the ground truth, timelines.

``summarize(result)`` builds a ``SimSummary`` once; the renderers in
``operators_sim.report`` (terminal tables, ``report.json``, ``report.html``)
only read it. ``SimSummary.to_json()`` is what ``report.json`` holds.

One name per concept: ``operator`` is always the organisation's name in the
register (``telkomsel``), ``display`` the name shown to people (``Telkomsel``).
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from .complaints import ComplaintSummary
from .decision import ALLOWED, Outcome, Source, reason_names
from .insider import InsiderSummary
from .node import OPERATORS, AuthorizeNode, Node, SyncNode
from .population import Category
from .simulation import SimConfig, SimResult
from .truth import Verdicts
from .verification import VerificationStats

LATENCY_BINS = np.logspace(-5, 1, 31)  # 10 µs .. 10 s
MISMATCH_EXAMPLES = 20
SMS_EXAMPLES_PER_OPERATOR = 3


@dataclass(frozen=True)
class Percentiles:
    """Milliseconds; ``None`` when nothing was measured."""

    p50: float | None
    p95: float | None
    p99: float | None

    @classmethod
    def of_seconds(cls, values: npt.NDArray[np.float64]) -> Percentiles:
        """p50, p95 and p99 of ``values`` (seconds), in ms rounded to the µs."""
        if values.size == 0:
            return cls(None, None, None)
        p50, p95, p99 = np.percentile(values, [50, 95, 99])
        return cls(
            round(float(p50) * 1e3, 3), round(float(p95) * 1e3, 3), round(float(p99) * 1e3, 3)
        )


@dataclass(frozen=True)
class ReplicaSummary:
    """A synchronize node's replica and its feed."""

    applied_sequence: int
    lag_changes: int
    # CEIR commit to this replica, for live changes only: those committed
    # after the replica was ready (not the backlog it caught up on at start)
    propagation_ms: Percentiles
    live_changes: int  # the changes propagation_ms was measured on
    backlog_changes: int  # committed before the replica was ready: not timed
    snapshots: int
    reconnects: int
    refused_messages: int
    reports_sent: int
    sizes: dict[str, int]
    bytes: int


@dataclass(frozen=True)
class CacheSummary:
    """An authorize node's cache of the register's answers."""

    hits: int
    hit_rate: float
    ttl_seconds: float
    ceir_batches: int


@dataclass(frozen=True)
class NodeVerification:
    """One synchronize node's verification of the signed log."""

    checkpoints_verified: int
    consistency_proofs: int
    gossip_proofs: int
    changes_verified: int
    verified_size: int
    alerts: dict[str, int]
    last_alert: str

    @classmethod
    def of(cls, stats: VerificationStats) -> NodeVerification:
        """A copy of the verifier's counters as they are at the end of the run."""
        return cls(
            checkpoints_verified=stats.checkpoints_verified,
            consistency_proofs=stats.consistency_proofs,
            gossip_proofs=stats.gossip_proofs,
            changes_verified=stats.changes_verified,
            verified_size=stats.verified_size,
            alerts=dict(sorted(stats.alerts.items())),
            last_alert=stats.last_alert,
        )


@dataclass(frozen=True)
class VerificationSummary:
    """The nodes' log verification added up, with gossip's split views."""

    enabled: bool
    checkpoints_verified: int
    consistency_proofs: int
    gossip_proofs: int
    changes_verified: int
    alerts: dict[str, int]
    split_views: tuple[str, ...]


@dataclass(frozen=True)
class OperatorSummary:
    """One operator's node: its decisions and, by mode, replica or cache."""

    operator: str  # the organisation's name in the register
    display: str  # the name shown to people
    attaches: int
    allowed: int
    denied: int
    by_reason: dict[str, int]
    by_source: dict[str, int]
    degraded_decisions: int
    forced_allow: int
    forced_deny: int
    notifications_sent: int
    latency_ms: Percentiles
    mismatches: int
    forced_contradicting_truth: int
    replica: ReplicaSummary | None = None  # synchronize nodes
    verification: NodeVerification | None = None  # synchronize nodes that verify
    cache: CacheSummary | None = None  # authorize nodes
    # nodes following custody: readiness reported, handovers followed, split views,
    # evidence directories, the policy version and endpoint trusted at the end
    custody: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """As ``report.json`` holds it: a section the node does not have is left out."""
        return {key: value for key, value in asdict(self).items() if value is not None}


@dataclass(frozen=True)
class TotalSummary:
    """All operators together."""

    attaches: int
    allowed: int
    denied: int
    by_reason: dict[str, int]
    notifications_sent: int
    latency_ms: Percentiles
    degraded_decisions: int
    forced_decisions: int
    forced_contradicting_truth: int
    mismatches: int


@dataclass(frozen=True)
class MismatchExample:
    """A decision that contradicts the ground truth."""

    operator: str
    category: str
    imei: str
    imsi_sim: int
    answer: str
    source: str
    sequence: int
    expected: str  # "allowed" or "denied"


@dataclass(frozen=True)
class SmsExample:
    """A notification SMS as a node sent it."""

    operator: str
    msisdn: str
    text: str


@dataclass(frozen=True)
class Machine:
    """Where the run ran."""

    cpus: int | None
    python: str
    platform: str


@dataclass(frozen=True)
class RunConfig:
    """The run's settings as the report shows them."""

    devices: int
    rate: float
    duration: float
    attaches: int | None
    mode: str
    phase: str
    failover: str
    seed: int
    ceir: str
    transport: str
    inject_rate: float
    cache_ttl: float
    grace_days: int
    outage: tuple[float, float] | None

    @classmethod
    def of(cls, config: SimConfig, transport: str) -> RunConfig:
        """``config`` with enums in words and the embedded CEIR named."""
        return cls(
            devices=config.devices,
            rate=config.rate,
            duration=config.duration,
            attaches=config.attaches,
            mode=str(config.mode),
            phase=config.phase,
            failover=str(config.failover),
            seed=config.seed,
            ceir=config.ceir or "embedded (SQLite)",
            transport=transport,
            inject_rate=config.inject_rate,
            cache_ttl=config.cache_ttl,
            grace_days=config.grace_days,
            outage=config.outage,
        )


@dataclass(frozen=True)
class LoadSummary:
    """The population's load through the API before the run."""

    rows_accepted: int
    rows_rejected: int
    stolen_reported: int
    exceptions_added: int
    seconds: float
    rejections: tuple[str, ...]  # the first 10


@dataclass(frozen=True)
class Outage:
    """The CEIR down, in seconds into the run."""

    start: float
    seconds: float


@dataclass(frozen=True)
class Timeline:
    """Counts per whole second of the run. The last, partial second is left
    out (a fraction of a second's attaches would read as a drop in the rate),
    unless the run was shorter than a second."""

    attaches: tuple[int, ...]
    denied: tuple[int, ...]
    degraded: tuple[int, ...]


@dataclass(frozen=True)
class LatencyHistogram:
    """Decision latencies in log bins: ``counts[i]`` between ``edges_ms[i]`` and the next."""

    edges_ms: tuple[float, ...]
    counts: tuple[int, ...]


@dataclass(frozen=True)
class SimSummary:
    """Everything the report shows about a run."""

    title: str
    generated: str  # UTC
    machine: Machine
    config: RunConfig
    population: dict[str, int]  # devices by category
    load: LoadSummary
    setup_seconds: float
    run_seconds: float
    attaches_per_second: float
    injected: dict[str, int]
    outages: tuple[Outage, ...]
    head_sequence: int
    replicas_caught_up: bool
    operators: tuple[OperatorSummary, ...]
    total: TotalSummary
    verification: VerificationSummary
    mismatches_by_category: dict[str, int]
    mismatch_examples: tuple[MismatchExample, ...]  # the first 20
    timeline: Timeline
    latency_histogram: LatencyHistogram
    sms_examples: tuple[SmsExample, ...]
    # no mismatch, replicas caught up, no verification alert, no write applied twice,
    # no complaint lost or duplicated, the insider scenario's revocation complete
    ok: bool
    # the writers' counts through a custody handover (``operators_sim.writes``)
    writes: dict[str, Any] = field(default_factory=dict)
    complaints: ComplaintSummary | None = None  # complaint traffic (``operators_sim.complaints``)
    insider: InsiderSummary | None = None  # ``--scenario insider`` (``operators_sim.insider``)

    def to_json(self) -> dict[str, Any]:
        """What ``report.json`` holds: the fields by name, nested as here."""
        data = asdict(self)
        data["operators"] = [row.to_json() for row in self.operators]
        return data


def summarize(result: SimResult) -> SimSummary:
    """Everything the report shows, computed once from the run's records."""
    records, population = result.records, result.population
    verdicts = result.truth.judge(
        records.device,
        records.slot,
        records.sim,
        records.outcome,
        records.source,
        records.sequence,
        records.block_date,
        records.decided_at,
    )
    allowed = ALLOWED[records.outcome]
    forced = records.source == Source.FORCED
    operators = tuple(
        _operator_summary(result, index, node, verdicts) for index, node in enumerate(result.nodes)
    )
    mismatch_rows = np.flatnonzero(verdicts.mismatch)
    by_category = np.bincount(
        population.category[records.device[mismatch_rows]], minlength=len(Category)
    )
    total_mismatches = int(verdicts.mismatch.sum())
    verification = _verification_total(operators, result.verifying, result.split_views)
    writes = result.writes.as_dict() if result.writes is not None else {}
    load = result.load
    return SimSummary(
        title="CEIR attach simulation",
        generated=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        machine=Machine(os.cpu_count(), platform.python_version(), platform.platform()),
        config=RunConfig.of(result.config, result.transport),
        population=population.counts(),
        load=LoadSummary(
            rows_accepted=load.rows_accepted,
            rows_rejected=load.rows_rejected,
            stolen_reported=load.stolen_reported,
            exceptions_added=load.exceptions_added,
            seconds=round(load.seconds, 2),
            rejections=tuple(load.rejections[:10]),
        ),
        setup_seconds=round(result.setup_seconds, 2),
        run_seconds=round(result.run_seconds, 2),
        attaches_per_second=round(len(records.at) / max(result.run_seconds, 1e-9), 1),
        injected=result.injected,
        outages=tuple(Outage(round(s, 2), round(d, 2)) for s, d in result.outages),
        head_sequence=result.head_sequence,
        replicas_caught_up=result.caught_up,
        operators=operators,
        total=TotalSummary(
            attaches=int(records.at.shape[0]),
            allowed=int(allowed.sum()),
            denied=int((~allowed).sum()),
            by_reason=_counts(records.outcome),
            notifications_sent=sum(len(n.outbox) for n in result.nodes),
            latency_ms=Percentiles.of_seconds(records.latency),
            degraded_decisions=sum(n.stats.degraded for n in result.nodes),
            forced_decisions=int(forced.sum()),
            forced_contradicting_truth=int((forced & (allowed != verdicts.expected)).sum()),
            mismatches=total_mismatches,
        ),
        verification=verification,
        mismatches_by_category={
            c.name.lower(): int(by_category[c]) for c in Category if by_category[c]
        },
        mismatch_examples=_mismatch_examples(result, verdicts, mismatch_rows),
        timeline=_timeline(result, allowed),
        latency_histogram=_latency_histogram(records.latency),
        sms_examples=tuple(
            SmsExample(node.name, message.msisdn, message.text)
            for node in result.nodes
            for message in node.outbox[:SMS_EXAMPLES_PER_OPERATOR]
        ),
        ok=total_mismatches == 0
        and result.caught_up
        and not verification.alerts
        and not writes.get("applied_twice")
        and (result.complaints is None or result.complaints.ok)
        and (result.insider is None or result.insider.ok),
        writes=writes,
        complaints=result.complaints,
        insider=result.insider,
    )


def _counts(outcomes: npt.NDArray[np.uint8]) -> dict[str, int]:
    counted = np.bincount(outcomes, minlength=len(Outcome))
    return {reason_names(o): int(counted[o]) for o in Outcome if counted[o]}


def _operator_summary(
    result: SimResult, index: int, node: Node, verdicts: Verdicts
) -> OperatorSummary:
    records = result.records
    allowed = ALLOWED[records.outcome]
    forced = records.source == Source.FORCED
    mine = records.operator == index
    replica = verification = cache = None
    custody = _custody(node)
    if isinstance(node, SyncNode):
        propagation = np.frombuffer(node.propagation, dtype=np.float64)
        replica = ReplicaSummary(
            applied_sequence=node.applied_sequence,
            lag_changes=node.lag,
            propagation_ms=Percentiles.of_seconds(propagation),
            live_changes=int(propagation.size),
            backlog_changes=node.backlog_changes,
            snapshots=node.follower.stats.snapshots,
            reconnects=node.follower.stats.reconnects,
            refused_messages=node.follower.stats.refused,
            reports_sent=node.reporter.stats.sent,
            sizes=node.replica.sizes(),
            bytes=node.replica.nbytes(),
        )
        if node.verifier is not None:
            verification = NodeVerification.of(node.verifier.stats)
    elif isinstance(node, AuthorizeNode):
        cache = CacheSummary(
            hits=node.stats.cache_hits,
            hit_rate=round(node.stats.cache_hits / max(node.stats.decisions, 1), 4),
            ttl_seconds=node.cache_ttl,
            ceir_batches=node.stats.ceir_calls,
        )
    return OperatorSummary(
        operator=node.name,
        display=OPERATORS[index].display,
        attaches=int(mine.sum()),
        allowed=int((allowed & mine).sum()),
        denied=int((~allowed & mine).sum()),
        by_reason=_counts(records.outcome[mine]),
        by_source={s.name.lower(): int(((records.source == s) & mine).sum()) for s in Source},
        degraded_decisions=node.stats.degraded,
        forced_allow=node.stats.forced_allow,
        forced_deny=node.stats.forced_deny,
        notifications_sent=len(node.outbox),
        latency_ms=Percentiles.of_seconds(records.latency[mine]),
        mismatches=int((verdicts.mismatch & mine).sum()),
        forced_contradicting_truth=int((forced & mine & (allowed != verdicts.expected)).sum()),
        replica=replica,
        verification=verification,
        cache=cache,
        custody=custody,
    )


def _custody(node: Node) -> dict[str, Any] | None:
    follower = node.custody
    if follower is None:
        return None
    data: dict[str, Any] = follower.stats.as_dict()
    data["policy_version"] = follower.trust.version
    data["custodian"] = follower.trust.current.custodian
    data["endpoint"] = follower.trust.endpoint
    data["final_sizes"] = [final.size for final in follower.trust.finals]
    return data


def _mismatch_examples(
    result: SimResult, verdicts: Verdicts, mismatch_rows: npt.NDArray[np.intp]
) -> tuple[MismatchExample, ...]:
    records, population = result.records, result.population
    examples = []
    for row in mismatch_rows[:MISMATCH_EXAMPLES].tolist():
        device = int(records.device[row])
        examples.append(
            MismatchExample(
                operator=OPERATORS[int(records.operator[row])].name,
                category=Category(int(population.category[device])).name.lower(),
                imei=population.imei_text(device, int(records.slot[row])),
                imsi_sim=int(records.sim[row]),
                answer=reason_names(Outcome(int(records.outcome[row]))),
                source=Source(int(records.source[row])).name.lower(),
                sequence=int(records.sequence[row]),
                expected="allowed" if verdicts.expected[row] else "denied",
            )
        )
    return tuple(examples)


def _timeline(result: SimResult, allowed: npt.NDArray[np.bool_]) -> Timeline:
    records = result.records
    seconds = max(int(result.run_seconds), 1)
    second = records.at.astype(np.int64)
    if result.run_seconds < 1:
        second = np.minimum(second, 0)
    whole = second < seconds
    second = second[whole]

    def per_second(rows: npt.NDArray[np.bool_]) -> tuple[int, ...]:
        return tuple(np.bincount(second[rows[whole]], minlength=seconds).tolist())

    return Timeline(
        attaches=per_second(np.ones(whole.shape[0], dtype=bool)),
        denied=per_second(~allowed),
        degraded=per_second(records.source >= Source.LAST_KNOWN),
    )


def _latency_histogram(latency: npt.NDArray[np.float64]) -> LatencyHistogram:
    counts, _ = np.histogram(np.clip(latency, LATENCY_BINS[0], LATENCY_BINS[-1]), bins=LATENCY_BINS)
    return LatencyHistogram(
        edges_ms=tuple((LATENCY_BINS * 1e3).round(4).tolist()), counts=tuple(counts.tolist())
    )


def _verification_total(
    operators: tuple[OperatorSummary, ...], verifying: bool, split_views: list[str]
) -> VerificationSummary:
    alerts: dict[str, int] = {}
    checkpoints = consistency = gossip = changes = 0
    for row in operators:
        figures = row.verification
        if figures is None:
            continue
        checkpoints += figures.checkpoints_verified
        consistency += figures.consistency_proofs
        gossip += figures.gossip_proofs
        changes += figures.changes_verified
        for reason, count in figures.alerts.items():
            alerts[reason] = alerts.get(reason, 0) + count
    return VerificationSummary(
        enabled=verifying,
        checkpoints_verified=checkpoints,
        consistency_proofs=consistency,
        gossip_proofs=gossip,
        changes_verified=changes,
        alerts=dict(sorted(alerts.items())),
        split_views=tuple(split_views[:20]),
    )

"""``ceir-sim drill handover``: stand the parties up, run a scenario, judge it.

1. Make the keys and policy 0 (Telkomsel, its log key, its endpoint);
   create both registers' organisations; start Telkomsel's register, the
   witness and Kemenperin's standby register (which starts copying
   Telkomsel's log at once), each a ``ceir`` process of its own.
2. Load a small population through Telkomsel's API; start the five
   operators' nodes, trusting policy 0 only; wait for their replicas and for
   the standby to hold the log.
3. Start the attach traffic and the list writer; run the scenario's
   ceremony (``script``); keep the traffic going a few seconds more.
4. Stop the traffic (every attach sent must be answered), let the writer's
   last write land, let the nodes catch up with whoever is the custodian,
   read its whole log, and write the verdict, the evidence and the report.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from ceir.custody import CustodyRefusal, walk_chain
from ceir.v1 import complaints_pb2

from ..custody_follower import CustodySetup
from ..loader import KEMENPERIN, KOMINFO, Admin, load
from ..node import OPERATORS, Failover, SyncNode
from ..population import generate
from ..simulation import PHASES, Records
from ..transport import CeirLink, Credentials, GrpcLink
from ..verification import DEFAULT_ORIGIN, Gossip, Trust
from .attaches import AttachLoad
from .ceremony import Ceremony, Side
from .cluster import Cluster, Files
from .complaints import compare, file_every_state, read_all
from .feed import read_log
from .keys import (
    DAY,
    INCOMING,
    OUTGOING,
    make_keys,
    policy,
    signed_policy_0,
    write_log_key,
    write_witness_keys,
)
from .links import Cut, CuttableLink
from .proxy import alter_change
from .report import write_reports
from .scenarios import scenario
from .script import DrillFailed, Hooks, Outcome, Script
from .timeline import Timeline, WriteEvent
from .verdict import Verdict, count_writes
from .writer import ListWriter

__all__ = ["Drill", "DrillConfig", "DrillFailed", "DrillResult"]

log = logging.getLogger("operators_sim.drill")
NOT_READY = "smartfren"  # the operator whose node is not upgraded in ``not-ready``
OUTPUTS = ("verdict.json", "report.html", "report.md", "timeline.svg", "evidence", "nodes", "logs")
ALTERED_SEQUENCE = 200  # the change the proxy alters in ``transfer-corrupt`` (a registration)


@dataclass
class DrillConfig:
    """A drill's settings; ``ceir-sim drill handover``'s options map onto it."""

    scenario: str = "clean"
    report: Path = Path("reports/drill")
    seed: int = 1
    devices: int = 2_000
    rate: float = 200.0  # attaches per second
    write_rate: float = 5.0  # list writes per second
    db_urls: dict[str, str] = field(default_factory=dict)  # organisation -> database
    notice: float = 2.0  # seconds between ANNOUNCED and the earliest freeze
    before: float = 2.0  # seconds of traffic before the ceremony starts
    after: float = 3.0  # seconds of traffic after it ends
    witness_outage: float = 8.0
    crash_outage: float = 2.0
    origin: str = DEFAULT_ORIGIN
    keep_work: bool = False  # keep databases and keys (in ``report/work``)


@dataclass
class DrillResult:
    verdict: Verdict
    html: Path
    markdown: Path
    evidence: Path | None


def _writes_in_words(writes: list[WriteEvent]) -> str:
    """``65 writes acknowledged, 12 refused (REGISTER_FROZEN 11, REGISTER_MOVED 1), 12 resent``."""
    kinds = Counter(w.kind for w in writes)
    reasons = Counter(w.reason for w in writes if w.kind == "refused")
    refused = ", ".join(f"{reason} {count}" for reason, count in sorted(reasons.items()))
    words = f"{kinds['acknowledged']:,} writes acknowledged, {kinds['refused']:,} refused"
    words += f" ({refused})" if refused else ""
    words += f", {kinds['retried']:,} resent with the same request id"
    if kinds["failed"]:
        words += f", {kinds['failed']:,} failed"
    return words


class Drill:
    def __init__(self, config: DrillConfig, progress: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.scenario = scenario(config.scenario)  # KeyError before anything starts
        self.progress = progress or (lambda _message: None)
        self.timeline = Timeline()
        self.nodes: list[SyncNode] = []
        self.cuts: dict[str, Cut] = {}
        self.gossip = Gossip()
        self.complaints: list[complaints_pb2.Complaint] = []  # as filed, before the ceremony

    def run(self) -> DrillResult:
        config = self.config
        report = config.report
        report.mkdir(parents=True, exist_ok=True)
        for old in OUTPUTS:  # nothing of an earlier drill may pass for this one's
            path = report / old
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        if config.keep_work:
            work = report / "work"
            shutil.rmtree(work, ignore_errors=True)
        else:
            work = Path(tempfile.mkdtemp(prefix="ceir-drill-"))
        files = Files(work, report / "logs")
        name = self.scenario.name
        cluster = Cluster(
            files,
            dict(config.db_urls),
            node_proxy=name == "split-view",
            transfer_proxy=name == "transfer-corrupt",
        )
        admin: Admin | None = None
        try:
            policy_0 = self._start(cluster, files)
            admin = Admin(cluster.address(OUTGOING), credentials=cluster.credentials)
            return self._drill(cluster, admin, policy_0)
        finally:
            for node in self.nodes:
                node.stop()
            if admin is not None:
                admin.close()
            cluster.stop()
            if not config.keep_work:
                shutil.rmtree(work, ignore_errors=True)

    # -- setting up ----------------------------------------------------------------------

    def _start(self, cluster: Cluster, files: Files) -> str:
        config = self.config
        self.progress("making keys and policy 0")
        self.keys = keys = make_keys(config.origin)
        outgoing_key = write_log_key(keys, OUTGOING, files.key("telkomsel-log.pem"))
        incoming_key = write_log_key(keys, INCOMING, files.key("kemenperin-log.pem"))
        witness_keys = write_witness_keys(keys, files.key("kominfo-witness.key"))
        self.policy_0 = policy(
            keys, 0, OUTGOING, cluster.endpoint(OUTGOING), int(time.time()) + 365 * DAY
        )
        policy_0 = signed_policy_0(keys, self.policy_0)
        policy_path = files.policy(0)
        policy_path.write_text(policy_0, encoding="utf-8")
        if "transfer" in cluster.proxies:  # transfer-corrupt: one change altered in transit
            cluster.proxies["transfer"].alter = alter_change(ALTERED_SEQUENCE)
        self.progress("starting Telkomsel's register, the witness and Kemenperin's standby")
        cluster.prepare_databases()
        # All at once: the standby retries until Telkomsel's register answers.
        cluster.start_outgoing(outgoing_key, policy_path)
        cluster.start_witness(witness_keys, policy_path)
        cluster.start_incoming(incoming_key, policy_path, self.policy_0.log_key.vkey)
        for name in (OUTGOING, "witness", INCOMING):
            cluster.wait_serving(name)
        return policy_0

    def _nodes(self, cluster: Cluster, policy_0: str) -> list[SyncNode]:
        """Each operator's node, trusting policy 0 alone and following the
        custody handover; every link it opens can be cut (``Cut``). In
        ``not-ready`` one node is not upgraded: it knows policy 0's key only."""
        states = self.config.report / "nodes"
        nodes = []
        for operator in OPERATORS:
            own = cluster.credentials[operator.name]
            cut = self.cuts[operator.name] = Cut()

            def connect(target: str, own: Credentials = own, cut: Cut = cut) -> CeirLink:
                return CuttableLink(GrpcLink(target, own.token, tls=own.tls), cut)

            link = connect(cluster.endpoint(OUTGOING))
            if self.scenario.name == "not-ready" and operator.name == NOT_READY:
                trust = Trust((self.policy_0.log_key,), self.config.origin)
                node = SyncNode(operator, link, Failover.LAST_KNOWN, trust=trust)
            else:
                custody = CustodySetup(
                    policy_0=policy_0,
                    connect=connect,
                    state_dir=states / operator.name,
                    poll_interval=0.5,
                )
                node = SyncNode(
                    operator, link, Failover.LAST_KNOWN, gossip=self.gossip, custody=custody
                )
            nodes.append(node)
        return nodes

    def _hooks(self) -> Hooks:
        def cut(name: str) -> None:
            self.cuts[name].cut()

        def restore(name: str) -> None:
            self.cuts[name].restore()

        def refuse(note: str) -> dict[str, str]:
            """Each node walks its chain to ``note``, as it would were it published."""
            refusals = {}
            now = int(time.time())
            for node in self.nodes:
                if node.custody is None:
                    continue
                try:
                    walk_chain(node.custody.trust.current, [note], now)
                except CustodyRefusal as error:
                    refusals[node.name] = error.reason
                else:
                    refusals[node.name] = "ACCEPTED"
            return refusals

        return Hooks(cut_node=cut, restore_node=restore, refuse_policy=refuse)

    # -- the drill -----------------------------------------------------------------------

    def _drill(self, cluster: Cluster, admin: Admin, policy_0: str) -> DrillResult:
        config = self.config
        admin.set_policy(phase=PHASES["notify"], grace_days=30)
        self.progress(f"loading {config.devices:,} devices through Telkomsel's API")
        population = generate(config.devices, config.seed)
        load(admin, population)
        self.progress("filing a complaint in every state at Telkomsel's desk")
        imeis = [population.full_imei(device, 0) for device in range(min(5, config.devices))]
        try:
            file_every_state(cluster.channel(OUTGOING, OUTGOING), imeis, f"drill-{admin.run_id}")
            self.complaints = read_all(cluster.channel(OUTGOING, KOMINFO))
        except grpc.RpcError as error:
            raise DrillFailed(f"the complaints desk refused: {error.code().name}") from None
        self.progress("starting the five operator nodes")
        self.nodes = self._nodes(cluster, policy_0)
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            if not node.wait_ready(120):
                raise DrillFailed(f"{node.name} did not get its snapshot")
        timeline = self.timeline
        timeline.restart()
        attaches = AttachLoad(self.nodes, population, config.rate, config.seed, timeline.started)
        writer = ListWriter(
            cluster.address(OUTGOING),
            cluster.credentials[KEMENPERIN],
            timeline,
            rate=config.write_rate,
            run_id=f"drill-{admin.run_id}",
        )
        ceremony = Ceremony(
            Side(OUTGOING, cluster.channels(OUTGOING)),
            Side(INCOMING, cluster.channels(INCOMING)),
            lambda: cluster.channel("witness", KOMINFO),
            timeline,
            OUTGOING,
            INCOMING,
        )
        script = Script(
            self.scenario,
            cluster,
            ceremony,
            self.keys,
            timeline,
            policy_0,
            config.notice,
            self._hooks(),
            witness_outage=config.witness_outage,
            crash_outage=config.crash_outage,
        )
        attaches.start()
        writer.start()
        self.progress(f"traffic running; the ceremony ({self.scenario.name}) starts")
        try:
            time.sleep(config.before)
            outcome = script.run()
            self.progress(f"ceremony over: {outcome.outcome}; traffic goes on")
            time.sleep(config.after)
        finally:
            writer.stop()
            records = attaches.stop()
            writer.close()
        return self._judge(cluster, outcome, attaches, records, writer)

    def _judge(
        self,
        cluster: Cluster,
        outcome: Outcome,
        attaches: AttachLoad,
        records: Records,
        writer: ListWriter,
    ) -> DrillResult:
        config = self.config
        custodian = INCOMING if outcome.outcome == "handed_over" else OUTGOING
        self.progress(f"reading {custodian}'s log")
        changes = read_log(cluster.channel(custodian, KOMINFO))
        head = changes[-1].sequence if changes else 0
        for node in self.nodes:
            node.follower.wait_for(head, 30)
        lost, twice = count_writes([a.imei_key for a in writer.acknowledged], changes)
        try:  # every complaint filed before the ceremony, at the custodian at the end
            carried = compare(self.complaints, read_all(cluster.channel(custodian, KOMINFO)))
        except grpc.RpcError as error:
            raise DrillFailed(
                f"cannot read {custodian}'s complaints: {error.code().name}"
            ) from None
        frozen = self.timeline.first("FROZEN")
        freeze_seconds = None
        if frozen is not None:  # to the first write the custodian took after the freeze
            taken_by = cluster.address(custodian)
            after = [
                a.at for a in writer.acknowledged if a.at > frozen.at and a.endpoint == taken_by
            ]
            freeze_seconds = min(after) - frozen.at if after else None
        latency = records.latency
        verdict = Verdict(
            scenario=self.scenario.name,
            outcome=outcome.outcome,
            attaches=len(records.at),
            attaches_undecided=attaches.submitted - len(records.at),
            max_decision_ms=float(latency.max() * 1000) if len(latency) else 0.0,
            acknowledged_writes_lost=lost,
            writes_applied_twice=twice,
            freeze_seconds=freeze_seconds,
            final_size=int(head),
            roots_equal=outcome.roots_equal if outcome.frozen else None,
            operators_verified=self._verified(),
            alerts={
                node.name: dict(node.verifier.stats.alerts) if node.verifier else {}
                for node in self.nodes
            },
            complaints_filed=carried.filed,
            complaints_lost=carried.lost,
            complaints_doubled=carried.doubled,
            complaints_changed=carried.changed,
        )
        report = config.report
        verdict.write(report / "verdict.json")
        evidence = self._evidence(report / "evidence", outcome)
        facts = (
            f"{config.devices:,} devices, {config.rate:,.0f} attaches/s, "
            f"{config.write_rate:g} list writes/s, seed {config.seed}; "
            f"{_writes_in_words(self.timeline.writes)}; Python {sys.version.split()[0]}"
        )
        html_path, md_path = write_reports(
            report, verdict, records, self.timeline.writes, self.timeline.marks, facts
        )
        return DrillResult(verdict, html_path, md_path, evidence)

    def _verified(self) -> list[str]:
        """The nodes that verified the handover and moved to the new custodian."""
        return sorted(
            node.name
            for node in self.nodes
            if node.custody is not None and node.custody.stats.handovers > 0
        )

    def _evidence(self, directory: Path, outcome: Outcome) -> Path | None:
        if outcome.outcome != "handed_over":
            return None
        from ceir.custody.evidence import write_evidence

        shutil.rmtree(directory, ignore_errors=True)
        write_evidence(
            directory,
            policy_0=outcome.policy_0,
            policy_1=outcome.policy_1,
            final_checkpoint=outcome.final_checkpoint,
            first_checkpoint=outcome.first_checkpoint,
            consistency_proof=outcome.proof,
            handover=outcome.handover,
        )
        return directory

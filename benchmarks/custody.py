"""The handover's write freeze at 1,000,000 changes, and checks meanwhile.

Issue: "measure the write freeze (FROZEN to the first write accepted by the
incoming register) for a register of 1,000,000 changes (target <= 10 s) and
the longest check latency during the ceremony".

Telkomsel's register is the start-up benchmark's cached register of
1,000,000 changes (1,000 for ``--quick``; built through the register's own
paths, its checkpoints signed by the key that becomes policy 0's log key),
copied, served by ``ceir serve --custody-policy``. Kemenperin's register
starts empty with ``--standby-of`` and copies the log before the ceremony
(the pre-copy; its time is printed). Then the ceremony runs as in the
drill's clean scenario (``operators_sim.drill``), the operators' readiness
reported by the benchmark for them (no nodes: their replicas are not what
is measured), while a writer registers 5 devices a second, following the
register, and a checker sends one CheckEquipment at a time to Telkomsel's
register, then Kemenperin's once it is the custodian.

Figures: the freeze as the writer saw it (FROZEN to its first acknowledged
write after it, RetryInfo waits included), the freeze as the ceremony saw
it (FROZEN to the first checkpoint's cosignature: writes accepted), and the
longest check latency from the proposal to the retirement.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import threading
import time
from pathlib import Path

import grpc

from ceir.audit import load_private_key
from ceir.v1 import custody_pb2 as custody_pb
from ceir.v1 import custody_pb2_grpc as custody_grpc
from ceir.v1 import equipment_check_pb2 as check_pb
from ceir.v1 import equipment_check_pb2_grpc as check_grpc
from operators_sim.drill.ceremony import Ceremony, Side
from operators_sim.drill.cluster import Cluster, Files
from operators_sim.drill.keys import (
    DAY,
    INCOMING,
    OUTGOING,
    make_keys,
    policy,
    signed_policy_0,
    write_log_key,
    write_witness_keys,
)
from operators_sim.drill.scenarios import scenario
from operators_sim.drill.script import Hooks, Script
from operators_sim.drill.timeline import Timeline
from operators_sim.drill.writer import ListWriter
from operators_sim.embedded import create_organisations
from operators_sim.node import OPERATORS
from operators_sim.verification import DEFAULT_ORIGIN

from . import report, startup
from .report import Figure

TARGET_SECONDS = 10.0
PRECOPY_TIMEOUT = 1_800.0  # seconds the standby may take to copy the log first


class _Checker:
    """One CheckEquipment at a time to the custodian; the latencies, by time."""

    def __init__(self, cluster: Cluster, timeline: Timeline) -> None:
        self.cluster = cluster
        self.timeline = timeline
        self.target = OUTGOING
        self.samples: list[tuple[float, float]] = []  # (at, seconds)
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="checker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        request = check_pb.CheckEquipmentRequest(imei="350000000000013", imsi="510101000000001")
        while not self._stop.is_set():
            stub = check_grpc.EquipmentCheckServiceStub(
                self.cluster.channel(self.target, "telkomsel")
            )
            began = time.perf_counter()
            try:
                stub.CheckEquipment(request, timeout=30)
            except grpc.RpcError:
                self.failures += 1
                time.sleep(0.05)
                continue
            self.samples.append((self.timeline.now(), time.perf_counter() - began))
            time.sleep(0.01)


def _ready_for_everyone(cluster: Cluster, stop: threading.Event) -> None:
    """Each operator reports readiness once policy 1 is announced (as its nodes would)."""
    custody = custody_grpc.CustodyServiceStub(cluster.channel(OUTGOING, "kominfo"))
    while not stop.wait(0.1):
        state = custody.GetCustody(custody_pb.GetCustodyRequest(), timeout=10).custody
        if state.state != custody_pb.CUSTODY_STATE_ANNOUNCED or len(state.policies) < 2:
            continue
        from ceir.custody.evidence import policy_text

        digest = hashlib.sha256(policy_text(state.policies[1]).encode()).hexdigest()
        for operator in OPERATORS:
            custody_grpc.CustodyServiceStub(
                cluster.channel(OUTGOING, operator.name)
            ).ReportReadiness(
                custody_pb.ReportReadinessRequest(policy_version=1, policy_sha256=digest),
                timeout=10,
            )
        return


def _precopy(cluster: Cluster, head: int) -> float:
    """Wait for the standby to hold the log; seconds it took."""
    custody = custody_grpc.CustodyServiceStub(cluster.channel(INCOMING, "kominfo"))
    began = time.perf_counter()
    deadline = began + PRECOPY_TIMEOUT
    while time.perf_counter() < deadline:
        state = custody.GetCustody(custody_pb.GetCustodyRequest(), timeout=10).custody
        if state.transferred_size >= head:
            return time.perf_counter() - began
        time.sleep(0.5)
    raise RuntimeError(f"the standby did not copy {head:,} changes in {PRECOPY_TIMEOUT:.0f} s")


def run(quick: bool) -> list[Figure]:
    changes = startup.QUICK_CHANGES if quick else startup.FULL_CHANGES
    report.heading("Custody handover: the write freeze (issue: <= 10 s at 1,000,000 changes)")
    source, _signer = startup.database(changes)
    key_file = source.with_suffix(".pem")
    work = Path(tempfile.mkdtemp(prefix="ceir-bench-custody-"))
    try:
        return _measure(work, source, key_file, changes)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _measure(work: Path, source: Path, key_file: Path, changes: int) -> list[Figure]:
    files = Files(work, work / "logs")
    cluster = Cluster(files, {})
    keys = make_keys(DEFAULT_ORIGIN, outgoing_log=load_private_key(key_file))
    outgoing_db = work / "telkomsel.db"
    shutil.copyfile(source, outgoing_db)
    create_organisations(str(outgoing_db), migrate=True)
    create_organisations(str(work / "kemenperin.db"), migrate=True)
    policy_0 = policy(keys, 0, OUTGOING, cluster.endpoint(OUTGOING), int(time.time()) + 365 * DAY)
    signed_0 = signed_policy_0(keys, policy_0)
    files.policy(0).write_text(signed_0, encoding="utf-8")
    outgoing_key = write_log_key(keys, OUTGOING, files.key("telkomsel-log.pem"))
    incoming_key = write_log_key(keys, INCOMING, files.key("kemenperin-log.pem"))
    witness_keys = write_witness_keys(keys, files.key("kominfo-witness.key"))
    timeline = Timeline()
    try:
        report.progress(f"starting Telkomsel's register on {changes:,} changes (start-up proof)")
        began = time.perf_counter()
        cluster.start_outgoing(outgoing_key, files.policy(0))
        cluster.wait_serving(OUTGOING, timeout=600)
        started = time.perf_counter() - began
        cluster.start_witness(witness_keys, files.policy(0))
        cluster.start_incoming(incoming_key, files.policy(0), policy_0.log_key.vkey)
        cluster.wait_serving("witness")
        cluster.wait_serving(INCOMING, timeout=600)
        report.progress("Kemenperin's standby copies the log (pre-copy)")
        precopy = _precopy(cluster, changes)
        timeline.restart()
        checker = _Checker(cluster, timeline)
        writer = ListWriter(
            cluster.address(OUTGOING),
            cluster.credentials["kemenperin"],
            timeline,
            rate=5.0,
            run_id=f"bench-{int(time.time())}",
        )
        ceremony = Ceremony(
            Side(OUTGOING, cluster.channels(OUTGOING)),
            Side(INCOMING, cluster.channels(INCOMING)),
            lambda: cluster.channel("witness", "kominfo"),
            timeline,
            OUTGOING,
            INCOMING,
        )
        script = Script(
            scenario("clean"), cluster, ceremony, keys, timeline, signed_0, 1.0, Hooks()
        )
        stop = threading.Event()
        readiness = threading.Thread(
            target=_ready_for_everyone, args=(cluster, stop), name="readiness", daemon=True
        )
        checker.start()
        writer.start()
        readiness.start()
        report.progress("the ceremony runs")
        try:
            time.sleep(1.0)
            proposed_at = timeline.now()
            outcome = script.run()
            checker.target = INCOMING
            retired_at = timeline.now()
            time.sleep(2.0)
        finally:
            stop.set()
            writer.stop()
            checker.stop()
            writer.close()
            readiness.join()
        if outcome.outcome != "handed_over":
            raise RuntimeError(f"the ceremony ended {outcome.outcome}")
    finally:
        cluster.stop()
    frozen = timeline.first("FROZEN")
    cosigned = timeline.first("cosigned first")
    assert frozen is not None and cosigned is not None
    accepted = [a.at for a in writer.acknowledged if a.at > frozen.at]
    freeze = (min(accepted) if accepted else float("inf")) - frozen.at
    during = [seconds for at, seconds in checker.samples if proposed_at <= at <= retired_at]
    longest = max(during, default=0.0) * 1000
    steps = ", ".join(f"{m.step} {m.at - frozen.at:+.2f} s" for m in timeline.marks)
    return [
        Figure(
            "write freeze: FROZEN to the first write accepted by the incoming register",
            freeze,
            "s",
            target=f"<= {TARGET_SECONDS:g} s",
            passed=freeze <= TARGET_SECONDS,
            details=(
                f"as the ceremony saw it (FROZEN to the first checkpoint cosigned, writes "
                f"accepted): {cosigned.at - frozen.at:.2f} s",
                f"register of {changes:,} changes; start-up proof {started:.1f} s; "
                f"pre-copy by the standby {precopy:.1f} s",
                f"steps, from FROZEN: {steps}",
            ),
        ),
        Figure(
            "longest check latency during the ceremony",
            longest,
            "ms",
            details=(
                f"{len(during):,} checks, one at a time, from the proposal to the retirement; "
                f"{checker.failures} failed",
            ),
        ),
    ]

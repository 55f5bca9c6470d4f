"""Speed figures of the operator side (issue "Operator EIR nodes and attach
simulation", Speed section):

1. replica memory per IMEI at 10 million whitelist entries (target <= 16 B);
2. local decisions per second, in batches of 100,000 (target >= 1,000,000/s);
3. snapshot transfer from the CEIR to a node, IMEIs/s (target >= 2,000,000/s);
4. propagation delay of one list change from the CEIR's commit to all five
   nodes' replicas, p99 (target < 100 ms);
5. end-to-end attaches/s of the simulation, in each mode (no target);
6. the node's verified apply rate: changes/s through the log verification
   (own leaf hashes, signed checkpoint, consistency proof, root) and the
   replica, in-process (target >= 50,000/s); consistency proof checks/s.

``run(quick)`` returns the figures; ``python -m benchmarks.sim [--quick]``
prints them with the machine.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from ceir.v1 import registry_pb2 as registry_pb
from ceir.v1 import types_pb2 as pb
from operators_sim import rules
from operators_sim.clones import CloneTracker
from operators_sim.codec import full_imei, imei_keys, imsi_code
from operators_sim.embedded import EmbeddedCeir
from operators_sim.follower import bootstrap, read_snapshot
from operators_sim.loader import KEMENPERIN, Admin, add_pair
from operators_sim.node import OPERATORS, Failover, Mode, SyncNode
from operators_sim.population import generate
from operators_sim.replica import Policy, Replica, Snapshot
from operators_sim.simulation import SimConfig, Simulation, head_sequence
from operators_sim.transport import GrpcLink
from operators_sim.verification import LogVerifier, Trust

from . import machine, report
from .report import Figure

MEMORY_TARGET = 16.0
DECISIONS_TARGET = 1_000_000.0
SNAPSHOT_TARGET = 2_000_000.0
PROPAGATION_TARGET_MS = 100.0
VERIFIED_APPLY_TARGET = 50_000.0


def _synthetic_snapshot(entries: int, rng: np.random.Generator) -> Snapshot:
    """A whitelist of ``entries`` distinct keys (a few tourists expire), a
    small blacklist and exception list, as a CEIR would send them."""
    keys = np.unique(rng.integers(10**13, 10**14, size=int(entries * 1.01), dtype=np.uint64))
    keys = keys[:entries]
    valid_until = np.zeros(entries, dtype=np.int64)
    valid_until[::50] = int(time.time()) + 30 * 86_400
    stolen = keys[::97].copy()
    return Snapshot(
        sequence=entries,
        whitelist_keys=keys,
        whitelist_valid_until=valid_until,
        blacklist_keys=stolen,
        blacklist_causes=np.full(stolen.shape[0], pb.BLACKLIST_CAUSE_STOLEN, dtype=np.int64),
        exception_keys=keys[::1009].copy(),
        exception_imsis=np.full(keys[::1009].shape[0], imsi_code("510101234567890"), np.uint64),
    )


def replica_figures(entries: int) -> list[Figure]:
    """Figures 1 and 2: memory per IMEI, local decisions per second."""
    rng = np.random.default_rng(1)
    gc.collect()
    tracemalloc.start()  # numpy reports its allocations to tracemalloc
    before = tracemalloc.get_traced_memory()[0]
    snapshot = _synthetic_snapshot(entries, rng)
    replica = Replica()
    replica.load(snapshot, Policy())
    registered = snapshot.whitelist_keys  # the replica holds this very array: no extra memory
    del snapshot
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    total = sum(replica.sizes().values())
    per_imei = held / total
    figures = [
        Figure(
            f"replica memory per IMEI ({total:,} entries)",
            per_imei,
            "bytes",
            f"<= {MEMORY_TARGET:g}",
            per_imei <= MEMORY_TARGET,
            (
                f"traced by tracemalloc after loading: {held / 2**20:,.1f} MiB; base arrays "
                f"{replica.nbytes() / 2**20:,.1f} MiB",
                "whitelist: uint64 key + uint32 valid-until (Unix s) per IMEI",
            ),
        )
    ]
    # decisions: 90 % registered, 4 % unregistered, 3 % roamers, 3 % stolen
    batch = 100_000
    rounds = 20

    def attaches() -> tuple[np.ndarray, np.ndarray]:
        keys = registered[rng.integers(0, registered.shape[0], batch)]
        keys[: batch // 25] = rng.integers(10**13, 10**14, batch // 25, dtype=np.uint64)
        # each device's own SIM (from its key), 2 % after a SIM swap, 3 % roamers
        imsis = imsi_code("510100000000000") + keys % np.uint64(10**9)
        swapped = rng.random(batch) < 0.02
        imsis[swapped] += np.uint64(10**9)
        imsis[-batch // 33 :] = imsi_code("525011234567890")
        return keys, imsis

    # fresh devices every batch: the clone tracker keeps learning new IMEIs
    batches = [attaches() for _ in range(rounds)]
    clones = CloneTracker()
    started = time.perf_counter()
    for keys, imsis in batches:
        now = time.time_ns() // 1_000
        with replica.lock:
            rules.decide(replica, clones, keys, imsis, now)
    elapsed = time.perf_counter() - started
    rate = rounds * batch / elapsed
    keys, imsis = batches[0]
    imeis = np.array([full_imei(int(k)).encode() for k in keys.tolist()], dtype="S16")
    started = time.perf_counter()
    for _ in range(5):
        parsed = imei_keys(imeis)
        with replica.lock:
            rules.decide(replica, clones, parsed, imsis, time.time_ns() // 1_000)
    with_parsing = 5 * batch / (time.perf_counter() - started)
    figures.append(
        Figure(
            "local decisions per second (batches of 100,000)",
            rate,
            "decisions/s",
            f">= {DECISIONS_TARGET:,.0f}",
            rate >= DECISIONS_TARGET,
            (
                f"against {entries:,} whitelist entries, {rounds} batches of fresh devices, "
                f"with clone tracking ({len(clones):,} IMEIs tracked, "
                f"{clones.nbytes() / 2**20:,.0f} MiB)",
                f"{with_parsing:,.0f}/s including parsing 15-digit IMEI strings",
            ),
        )
    )
    return figures


def _import_imeis(admin: Admin, devices: int) -> int:
    """Register ``devices`` devices of 8 slot IMEIs each; the IMEIs registered."""
    rows = []
    for device in range(devices):
        base = 35_000_000_000_000 + device * 8
        rows.append(
            registry_pb.ImportRow(
                row=device,
                device=registry_pb.DeviceRegistration(
                    imeis=[full_imei(base + slot) for slot in range(8)],
                    source=pb.REGISTRATION_SOURCE_TPP_IMPORT,
                ),
            )
        )
    answer = admin.import_rows(KEMENPERIN, rows, "bench")
    return int(answer.rows_accepted) * 8


def server_figures(imeis: int, changes: int, workdir: Path) -> list[Figure]:
    """Figures 3 and 4 against a CEIR in its own process."""
    ceir = EmbeddedCeir(workdir / "sync")
    ceir.start()
    try:
        tokens = ceir.create_organisations()
        admin = Admin(ceir.address, tokens)
        report.progress(f"registering {imeis:,} IMEIs for the snapshot figure")
        registered = _import_imeis(admin, imeis // 8)
        link = GrpcLink(ceir.address, tokens["telkomsel"])
        best = node_side = 0.0
        for _ in range(3):
            replica = Replica()
            started = time.perf_counter()
            bootstrap(link, replica, chunk_size=262_144)
            best = max(best, registered / (time.perf_counter() - started))
            chunks = list(link.snapshot(262_144))  # the same transfer, split in two:
            started = time.perf_counter()  # what the node does with the chunks
            assembled = read_snapshot(iter(chunks))
            Replica().load(assembled, Policy())
            node_side = max(node_side, registered / (time.perf_counter() - started))
        link.close()
        snapshot = Figure(
            f"snapshot transfer CEIR -> node ({registered:,} IMEIs)",
            best,
            "IMEIs/s",
            f">= {SNAPSHOT_TARGET:,.0f}",
            best >= SNAPSHOT_TARGET,
            (
                "GetSnapshot streamed, assembled and loaded into a replica; best of 3",
                f"the node's part alone (assemble the chunks, load the replica): "
                f"{node_side:,.0f} IMEIs/s; the rest is the CEIR producing the stream",
            ),
        )
        report.progress(f"propagating {changes} changes to five nodes")
        nodes = [SyncNode(op, GrpcLink(ceir.address, tokens[op.name])) for op in OPERATORS]
        for node in nodes:
            node.start()
            node.wait_ready(120)
        head = head_sequence(ceir.address, tokens["kominfo"])
        for node in nodes:
            node.follower.wait_for(head, 60)
            del node.propagation[:]
        population = generate(max(changes, 50), seed=3)
        devices = np.flatnonzero(population.sim_operator[population.sim] >= 0)[:changes]
        for device in devices.tolist():
            add_pair(admin, population, device)  # one change, committed alone
            time.sleep(0.01)
        head = head_sequence(ceir.address, tokens["kominfo"])
        for node in nodes:
            node.follower.wait_for(head, 60)
        delays = np.max(
            np.vstack([np.frombuffer(n.propagation, dtype=np.float64)[:changes] for n in nodes]),
            axis=0,
        )
        for node in nodes:
            node.stop()
        admin.close()
        p50, p99 = np.percentile(delays * 1e3, [50, 99])
        propagation = Figure(
            "propagation of one change, commit -> all five replicas, p99",
            float(p99),
            "ms",
            f"< {PROPAGATION_TARGET_MS:g}",
            float(p99) < PROPAGATION_TARGET_MS,
            (f"{len(delays)} changes one at a time; p50 {p50:.1f} ms", "commit time from the feed"),
        )
        return [snapshot, propagation]
    finally:
        ceir.stop()


def simulation_figures(quick: bool, workdir: Path) -> list[Figure]:
    """Figure 5: attaches/s end to end, offered well above what is served."""
    figures = []
    sys.setswitchinterval(0.0005)  # as ``ceir-sim`` runs
    for mode in (Mode.SYNCHRONIZE, Mode.AUTHORIZE):
        config = SimConfig(
            devices=20_000 if quick else 100_000,
            rate=20_000.0 if quick else 150_000.0,
            duration=3.0 if quick else 10.0,
            mode=mode,
            phase="enforce",
            failover=Failover.LAST_KNOWN,
            inject_rate=2.0,
            data_dir=workdir / f"sim-{mode}",
        )
        report.progress(f"simulation, {mode} mode, offered {config.rate:,.0f} attaches/s")
        result = Simulation(config).run()
        served = result.records.at.shape[0] / result.run_seconds
        latency = np.percentile(result.records.latency, [50, 99]) * 1e3
        figures.append(
            Figure(
                f"simulation end to end, {mode} mode",
                served,
                "attaches/s",
                details=(
                    f"{config.devices:,} devices, Poisson offered {config.rate:,.0f}/s for "
                    f"{config.duration:g} s, backlog drained; latency p50 {latency[0]:.1f} ms, "
                    f"p99 {latency[1]:.1f} ms",
                ),
            )
        )
    return figures


def verification_figures(changes: int, per_message: int = 1_000) -> list[Figure]:
    """Feed ``changes`` synthetic but valid changes, a signed checkpoint every
    ``per_message``, through a node's verifier and replica (no network: the
    consistency proofs come from an in-memory prover, as the server's would)."""
    from ceir.audit.keys import generate_signing_key
    from ceir.audit.merkle import verify_consistency
    from ceir.audit.note import Signer
    from operators_sim.fake import SignedLog, change
    from operators_sim.verification import DEFAULT_ORIGIN

    signer = Signer(DEFAULT_ORIGIN, generate_signing_key())
    log = SignedLog(signer)
    rng = np.random.default_rng(7)
    keys = rng.integers(35_000_000_000_000, 36_000_000_000_000, changes, dtype=np.uint64)
    commit = 1_700_000_000
    for sequence, key in enumerate(keys.tolist(), start=1):
        if sequence % 10 == 0:
            item = change(sequence, pb.CHANGE_KIND_BLACKLIST_BLOCKED, key, blacklist_cause=1)
        else:
            item = change(sequence, pb.CHANGE_KIND_WHITELIST_ADDED, key, source=1, device_id="d")
        item.commit_time.FromSeconds(commit + sequence // 1000)
        log.append(item)
    messages = log.messages(per_message)
    trust = Trust((signer.verifier,))
    verifier = LogVerifier(trust, log.consistency_proof, name="bench")
    replica = Replica()
    gc.collect()
    started = time.perf_counter()
    for message in messages:
        replica.apply(verifier.receive(message.changes, message.checkpoint))
    elapsed = time.perf_counter() - started
    replica.close()
    assert replica.sequence == changes and not verifier.stats.alerts
    rate = changes / elapsed
    figures = [
        Figure(
            "node verified apply rate",
            rate,
            "changes/s",
            f">= {VERIFIED_APPLY_TARGET:,.0f}",
            rate >= VERIFIED_APPLY_TARGET,
            (
                f"{changes:,} changes, a signed checkpoint every {per_message:,}: leaf "
                "encoding and hashing, Ed25519 signature, consistency proof, root, replica",
                f"{verifier.stats.checkpoints_verified:,} checkpoints, "
                f"{verifier.stats.consistency_proofs:,} consistency proofs (made in-process)",
            ),
        )
    ]
    pairs = [
        (int(a), int(b))
        for a, b in np.sort(rng.integers(1, changes + 1, (2_000, 2)), axis=1).tolist()
    ]
    proofs = [
        (a, b, log.consistency_proof(a, b), log.prover.root(a), log.prover.root(b))
        for a, b in pairs
    ]
    started = time.perf_counter()
    for a, b, proof, root_a, root_b in proofs:
        verify_consistency(a, b, proof, root_a, root_b)
    checks = len(proofs) / (time.perf_counter() - started)
    figures.append(
        Figure(
            "consistency proof checks per second",
            checks,
            "checks/s",
            "",
            None,
            (f"{len(proofs):,} random pairs of sizes in a log of {changes:,}",),
        )
    )
    return figures


def run(quick: bool) -> list[Figure]:
    """Every figure of this section (``quick``: small sizes, a smoke test)."""
    with tempfile.TemporaryDirectory(prefix="ceir-sim-bench-") as directory:
        workdir = Path(directory)
        report.heading("Operator nodes and simulation")
        report.progress("replica of 10 million entries" if not quick else "replica (quick)")
        figures = replica_figures(200_000 if quick else 10_000_000)
        report.progress("verified apply")
        figures += verification_figures(20_000 if quick else 200_000)
        figures += server_figures(40_000 if quick else 1_000_000, 30 if quick else 200, workdir)
        figures += simulation_figures(quick, workdir)
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sim", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, a short run")
    options = parser.parse_args()
    machine.run()
    results = run(options.quick)
    report.heading("Figures")
    report.figures(results)
    report.summary(results)


if __name__ == "__main__":
    main()

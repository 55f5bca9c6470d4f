"""The register's speed figures (issue "Country scale", the register's speed targets).

1. Unary ``CheckEquipment`` calls/s, the register against the better of two
   bare echo servers (a thread pool, and grpc.aio as the register) answering
   the same message shapes, measured side by side in the same rounds.
2. IMEIs/s through ``CheckEquipmentBatch`` (1,000 checks per request).

The bulk import's figure is benchmarks/bulk.py's; here the register is only
populated for the checks, through ``ImportRegistrations``, untimed.

Every server runs in a process of its own, and so does the load client
(``load_client``): many calls in flight on one grpc.aio channel, requests
serialised beforehand, answers not parsed. docs/benchmarks.md says why a
client in the benchmark's own process reported a kinder ratio.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from ceir.domain.identifiers import full_imei
from ceir.service.orgs import add_organisation
from ceir.storage.database import Database
from ceir.v1 import equipment_check_pb2 as check_pb
from ceir.v1 import registry_pb2 as registry_pb
from ceir.v1 import registry_pb2_grpc as registry_grpc
from ceir.v1 import types_pb2

from . import machine, report
from .load import Rate, drive
from .load_client import LoadClient, Work, work
from .population import Batches, Mix, check, registered_keys
from .servers import ServerProcess, ceir_server, echo_server

UNARY_TARGET = 0.9  # the register's calls/s over the better echo server's
BATCH_TARGET = 100_000  # IMEIs/s through CheckEquipmentBatch

HEADLINE_MIX = Mix(registered=90, stolen=4, roamer=5, malformed=1)
UNREGISTERED_MIX = Mix(registered=85, stolen=4, roamer=5, malformed=1, unregistered=5)
IMPORTER = "kemenperin"
OPERATOR = "telkomsel"
CHECK_METHOD = "/ceir.v1.EquipmentCheckService/CheckEquipment"
BATCH_METHOD = "/ceir.v1.EquipmentCheckService/CheckEquipmentBatch"


@dataclass(frozen=True)
class Sizes:
    """How much work each figure does; ``QUICK`` is for a smoke run."""

    devices: int = 200_000  # registered before the figures, then checked
    chunk_rows: int = 5_000
    stolen: int = 1_000
    seconds: float = 3.0  # per measured run
    warmup: float = 1.0
    rounds: int = 5  # unary rounds (one run per server each); the median counts
    batch_runs: int = 3  # the median counts
    settle: float = 10.0  # seconds to wait, before a round, for other load to end
    unary_in_flight: int = 64
    unary_requests: int = 2_000
    batch_in_flight: int = 4
    batch_size: int = 1_000
    batch_requests: int = 40
    unregistered_batches: int = 40


FULL = Sizes()
QUICK = Sizes(
    devices=20_000,
    stolen=200,
    seconds=1.0,
    warmup=0.5,
    rounds=2,
    batch_runs=1,
    settle=0.0,
    batch_requests=10,
    unregistered_batches=10,
)


@dataclass(frozen=True)
class Tokens:
    importer: tuple[tuple[str, str], ...]
    operator: tuple[tuple[str, str], ...]


def run(sizes: Sizes, workdir: Path) -> list[report.Figure]:
    """Measure the figures; returns them in the issue's order."""
    report.heading('Register (issue "Country scale", the register\'s speed targets)')
    report.facts(
        [
            ("databases", f"SQLite files in {workdir}"),
            (
                "processes",
                "one per server, one for the load client (grpc.aio, pre-serialised "
                "requests), loopback",
            ),
        ]
    )
    db = workdir / "register.db"
    log = str(workdir / "access.log")
    tokens = _prepare(db)
    keys = registered_keys(sizes.devices)
    stolen = keys[:: max(1, len(keys) // sizes.stolen)][: sizes.stolen]
    stolen_set = set(stolen)
    clean = [key for key in keys if key not in stolen_set]
    with LoadClient() as client:
        with ceir_server(str(db), True, log) as ceir:
            populate(ceir, tokens, keys, sizes.chunk_rows)
            report.progress(f"reporting {len(stolen):,} registered IMEIs stolen")
            _report_stolen(ceir, tokens, stolen)
            batches = batch_figures(client, ceir, tokens, clean, stolen, sizes)
        unary = unary_figure(client, db, log, tokens, clean, sizes)
    return [unary, *batches]


def _prepare(db: Path) -> Tokens:
    """A fresh register with an importer and an operator."""
    database = Database(str(db))
    database.migrate()
    importer = add_organisation(database, IMPORTER, "kemenperin", [])
    operator = add_organisation(database, OPERATOR, "operator", ["510-10"])
    database.dispose()
    return Tokens(bearer(importer), bearer(operator))


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """The call metadata that presents ``token``."""
    return (("authorization", f"Bearer {token}"),)


def populate(ceir: ServerProcess, tokens: Tokens, keys: Sequence[int], chunk_rows: int) -> None:
    """Register one device per key through ``ImportRegistrations`` (untimed:
    the import's speed is benchmarks/bulk.py's figure)."""
    report.progress(f"registering {len(keys):,} devices (ImportRegistrations, untimed)")
    with grpc.insecure_channel(ceir.target) as channel:
        stub = registry_grpc.RegistryServiceStub(channel)
        response = stub.ImportRegistrations(
            import_requests(keys, chunk_rows), metadata=tokens.importer, timeout=3600
        )
    if response.rows_accepted != len(keys):
        raise RuntimeError(
            f"the import accepted {response.rows_accepted} of {len(keys)} rows: "
            f"{list(response.rejections[:3])}"
        )


def import_requests(
    keys: Sequence[int], chunk_rows: int
) -> Iterator[registry_pb.ImportRegistrationsRequest]:
    """An ``ImportRegistrations`` stream registering one device per key, as
    a TPP importer would, ``chunk_rows`` rows a message."""
    for start in range(0, len(keys), chunk_rows):
        rows = [
            registry_pb.ImportRow(
                row=number + 1,
                device=registry_pb.DeviceRegistration(
                    imeis=[full_imei(keys[number])],
                    source=types_pb2.REGISTRATION_SOURCE_TPP_IMPORT,
                    reference=f"TPP-2020-{number // 1_000:05d}",
                    brand="Samsung",
                    model=f"Galaxy A{number % 50}",
                ),
            )
            for number in range(start, min(start + chunk_rows, len(keys)))
        ]
        yield registry_pb.ImportRegistrationsRequest(request_id="bench-import", rows=rows)


# --- 1. unary checks against the better echo server -----------------------------------


def unary_figure(
    client: LoadClient, db: Path, log: str, tokens: Tokens, keys: Sequence[int], sizes: Sizes
) -> report.Figure:
    """Rounds of one run per server, back to back, who goes first changing
    from round to round; a round's ratio is the register's rate over the
    better echo server's in that round, and the figure is the median of the
    rounds' ratios, so that load that comes and goes on a shared machine
    weighs on both sides of a round alike."""
    step = max(1, len(keys) // sizes.unary_requests)
    requests = [check(key).SerializeToString() for key in keys[::step][: sizes.unary_requests]]
    names = ("echo", "echo-asyncio", "ceir", "ceir-quiet")
    servers = [
        echo_server("threaded"),
        echo_server("asyncio"),
        ceir_server(str(db), True, log),
        ceir_server(str(db), False, log),
    ]
    runs: dict[str, list[Measured]] = {name: [] for name in names}
    try:
        loads = [
            functools.partial(
                work,
                server.target,
                CHECK_METHOD,
                requests,
                tokens.operator,
                in_flight=sizes.unary_in_flight,
            )
            for server in servers
        ]
        for load in loads:
            client.run(load(seconds=sizes.warmup))
        for number in range(sizes.rounds):
            report.progress(f"unary round {number + 1} of {sizes.rounds}")
            machine.settle(sizes.settle)
            for shift in range(len(names)):
                index = (number + shift) % len(names)
                measured = _metered(client, servers[index], loads[index](seconds=sizes.seconds))
                runs[names[index]].append(measured)
    finally:
        for server in servers:
            server.stop()
    best_echo = [
        max(threaded, asyncio_, key=lambda run: run.rate.calls_per_second)
        for threaded, asyncio_ in zip(runs["echo"], runs["echo-asyncio"], strict=True)
    ]
    ratio = _median_ratio(runs["ceir"], best_echo)
    quiet_ratio = _median_ratio(runs["ceir-quiet"], best_echo)
    return report.Figure(
        name="unary CheckEquipment, CEIR (default: access log on) / better echo server",
        value=ratio,
        unit="x",
        target=f">= {UNARY_TARGET:.2f}x",
        passed=ratio >= UNARY_TARGET,
        details=(
            f"CEIR, access log on:  {_calls(runs['ceir'])}",
            f"CEIR, access log off: {_calls(runs['ceir-quiet'])}; {quiet_ratio:.2f}x echo",
            f"echo server, threads: {_calls(runs['echo'])}",
            f"echo server, asyncio: {_calls(runs['echo-asyncio'])}",
            f"load: one client process (grpc.aio), {sizes.unary_in_flight} calls in flight, "
            f"{len(requests):,} pre-serialised checks of registered IMEIs (15 digits) with "
            f"IMSI and MSISDN; {sizes.rounds} rounds of {sizes.seconds:g} s per server; "
            "figure = median over rounds of CEIR / the round's better echo server",
        ),
    )


def _median_ratio(runs: Sequence[Measured], bases: Sequence[Measured]) -> float:
    return statistics.median(
        run.rate.calls_per_second / base.rate.calls_per_second
        for run, base in zip(runs, bases, strict=True)
    )


@dataclass(frozen=True)
class Measured:
    """A measured run: its rate, the CPU the server and the client used, and
    what else ran."""

    rate: Rate
    server_cpu: float  # seconds the server process used
    client_cpu: float  # seconds the load client process used
    other_cores: float  # cores other processes kept busy meanwhile, on average

    def cpu_per_call(self) -> float:
        return self.server_cpu / max(self.rate.calls, 1)

    def client_per_call(self) -> float:
        return self.client_cpu / max(self.rate.calls, 1)

    def beside(self) -> str:
        return f"{self.other_cores:.2f} cores busy with other processes meanwhile"


def _metered(client: LoadClient, server: ServerProcess, load: Work) -> Measured:
    """Run ``load``, metering the server's and the client's CPU and the machine's other load."""
    busy, own = machine.cpu_busy_seconds(), time.process_time()
    cpu, client_cpu = server.cpu_seconds(), client.cpu_seconds()
    rate = client.run(load)
    cpu = server.cpu_seconds() - cpu
    client_cpu = client.cpu_seconds() - client_cpu
    others = machine.cpu_busy_seconds() - busy - (time.process_time() - own) - cpu - client_cpu
    return Measured(rate, cpu, client_cpu, max(others, 0.0) / rate.seconds)


def _calls(runs: Sequence[Measured]) -> str:
    """Medians of a server's runs: calls/s, its CPU per call, the client's, the other load."""
    rate = statistics.median(run.rate.calls_per_second for run in runs)
    best = max(run.rate.calls_per_second for run in runs)
    cpu = statistics.median(run.cpu_per_call() for run in runs)
    client = statistics.median(run.client_per_call() for run in runs)
    others = statistics.median(run.other_cores for run in runs)
    return (
        f"{rate:7,.0f} calls/s (best {best:,.0f}), server CPU {cpu * 1e6:,.0f} us/call, "
        f"client {client * 1e6:,.0f} us/call, {others:.2f} cores busy elsewhere"
    )


# --- 2. batch checks ------------------------------------------------------------------


def batch_figures(
    client: LoadClient,
    ceir: ServerProcess,
    tokens: Tokens,
    registered: Sequence[int],
    stolen: Sequence[int],
    sizes: Sizes,
) -> list[report.Figure]:
    batches = Batches(registered, stolen)
    headline = [batches.build(HEADLINE_MIX, sizes.batch_size) for _ in range(sizes.batch_requests)]
    fresh = [
        batches.build(UNREGISTERED_MIX, sizes.batch_size) for _ in range(sizes.unregistered_batches)
    ]
    with grpc.insecure_channel(ceir.target) as channel:
        call = channel.unary_unary(
            BATCH_METHOD,
            request_serializer=check_pb.CheckEquipmentBatchRequest.SerializeToString,
            response_deserializer=check_pb.CheckEquipmentBatchResponse.FromString,
        )
        answers = _tally(call(headline[0], metadata=tokens.operator, timeout=60))
        # Each batch is sent once: a second sight of a device is not a first one.
        fresh_answers = _tally(call(fresh[0], metadata=tokens.operator, timeout=60))
    load = functools.partial(
        work,
        ceir.target,
        BATCH_METHOD,
        [request.SerializeToString() for request in headline],
        tokens.operator,
        in_flight=sizes.batch_in_flight,
        items=[len(request.checks) for request in headline],
    )
    report.progress(f"batch checks, {HEADLINE_MIX.describe()}")
    client.run(load(seconds=sizes.warmup))
    measured_runs = []
    for _ in range(sizes.batch_runs):
        machine.settle(sizes.settle)
        measured_runs.append(_metered(client, ceir, load(seconds=sizes.seconds)))
    measured = sorted(measured_runs, key=lambda run: run.rate.items_per_second)[
        len(measured_runs) // 2
    ]
    report.progress(f"batch checks, {UNREGISTERED_MIX.describe()}")
    machine.settle(sizes.settle)
    fresh_measured = _metered(
        client,
        ceir,
        work(
            ceir.target,
            BATCH_METHOD,
            [request.SerializeToString() for request in fresh[1:]],
            tokens.operator,
            in_flight=sizes.batch_in_flight,
            seconds=600,
            items=[len(request.checks) for request in fresh[1:]],
            once=True,
        ),
    )
    rate, fresh_rate = measured.rate, fresh_measured.rate
    loaded = (
        f"load: one client process (grpc.aio), {sizes.batch_in_flight} calls in flight, "
        f"{sizes.batch_size:,} checks per pre-serialised request"
    )
    headline_figure = report.Figure(
        name="CheckEquipmentBatch, registered/stolen/roaming/malformed mix",
        value=rate.items_per_second,
        unit="IMEIs/s",
        target=f">= {BATCH_TARGET:,} IMEIs/s",
        passed=rate.items_per_second >= BATCH_TARGET,
        details=(
            f"mix: {HEADLINE_MIX.describe()}",
            f"answers: {answers}",
            f"{rate.calls_per_second:,.1f} requests/s, "
            f"server CPU {measured.cpu_per_call() * 1e6 / sizes.batch_size:,.2f} us/check, "
            f"{measured.beside()}",
            f"{loaded}, {len(headline)} distinct requests cycled for {sizes.seconds:g} s, "
            f"median of {sizes.batch_runs} run(s)",
        ),
    )
    fresh_figure = report.Figure(
        name="CheckEquipmentBatch, with unregistered devices (notifications written)",
        value=fresh_rate.items_per_second,
        unit="IMEIs/s",
        details=(
            f"mix: {UNREGISTERED_MIX.describe()}",
            f"answers: {fresh_answers}",
            f"{fresh_rate.calls_per_second:,.1f} requests/s, each one write transaction, "
            f"{fresh_measured.beside()}",
            f"{loaded}, {len(fresh) - 1} requests, each sent once",
        ),
    )
    return [headline_figure, fresh_figure]


def _tally(response: check_pb.CheckEquipmentBatchResponse) -> str:
    """What the register answered, e.g. '90.0% WHITELISTED/REGISTERED, ...'."""
    counts = Counter(
        (
            types_pb2.EquipmentStatus.Name(result.status).removeprefix("EQUIPMENT_STATUS_"),
            "+".join(types_pb2.Reason.Name(r).removeprefix("REASON_") for r in result.reasons),
        )
        for result in response.results
    )
    total = len(response.results)
    return ", ".join(
        f"{count * 100 / total:.1f}% {status}/{reasons}"
        for (status, reasons), count in counts.most_common()
    )


def _report_stolen(ceir: ServerProcess, tokens: Tokens, keys: Sequence[int]) -> None:
    requests = [
        registry_pb.ReportStolenRequest(
            request_id=f"stolen-{key}",
            imeis=[full_imei(key)],
            police_report=f"LP/{key}/2020",
            subscriber_imsi=f"51010{key % 10**10:010d}",  # the operator's own (510-10)
        )
        for key in keys
    ]
    with grpc.insecure_channel(ceir.target) as channel:
        stub = registry_grpc.RegistryServiceStub(channel)
        call = functools.partial(stub.ReportStolen, metadata=tokens.operator, timeout=60)
        drive(call, requests, threads=8, seconds=600, max_calls=len(requests))

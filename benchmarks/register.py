"""The register's speed figures (issue "The CEIR register", Speed section).

1. Unary ``CheckEquipment`` calls/s, the register against a bare echo server
   with the same server settings and the same client load.
2. IMEIs/s through ``CheckEquipmentBatch`` (1,000 checks per request).
3. Bulk registration rows/s through ``ImportRegistrations`` into SQLite,
   against raw ``sqlite3.executemany`` of the same rows.

Every figure drives a server in a process of its own over loopback; the
client threads run in this process.
"""

from __future__ import annotations

import functools
import hashlib
import sqlite3
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from ceir.domain.identifiers import full_imei
from ceir.service.orgs import add_organisation
from ceir.storage.database import Database
from ceir.v1 import equipment_check_pb2 as check_pb
from ceir.v1 import equipment_check_pb2_grpc as check_grpc
from ceir.v1 import registry_pb2 as registry_pb
from ceir.v1 import registry_pb2_grpc as registry_grpc
from ceir.v1 import types_pb2

from . import machine, report
from .load import Rate, drive
from .population import Batches, Mix, check, registered_keys
from .servers import ServerProcess, ceir_server, echo_server

UNARY_TARGET = 0.9  # the register's calls/s over the echo server's
BATCH_TARGET = 100_000  # IMEIs/s through CheckEquipmentBatch
IMPORT_TARGET = 0.7  # the register's rows/s over raw executemany's

HEADLINE_MIX = Mix(registered=90, stolen=4, roamer=5, malformed=1)
UNREGISTERED_MIX = Mix(registered=85, stolen=4, roamer=5, malformed=1, unregistered=5)
IMPORTER = "kemenperin"
OPERATOR = "telkomsel"


@dataclass(frozen=True)
class Sizes:
    """How much work each figure does; ``QUICK`` is for a smoke run."""

    devices: int = 200_000  # imported by figure 3, then checked by figures 1 and 2
    chunk_rows: int = 5_000
    stolen: int = 1_000
    seconds: float = 3.0  # per measured run
    warmup: float = 1.0
    rounds: int = 7  # unary rounds (one run per server each); medians count
    batch_runs: int = 3  # the best counts: other load only ever lowers a rate
    settle: float = 10.0  # seconds to wait, before a run, for other load to end
    unary_threads: int = 8
    unary_requests: int = 2_000
    batch_threads: int = 4
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
    """Measure the three figures; returns them in the issue's order."""
    report.heading('Register (issue "The CEIR register", Speed)')
    report.facts(
        [
            ("databases", f"SQLite files in {workdir}"),
            ("server", "one process per server, client threads in this process, loopback"),
        ]
    )
    db = workdir / "register.db"
    log = str(workdir / "access.log")
    tokens = _prepare(db)
    keys = registered_keys(sizes.devices)
    importing = import_figure(db, log, tokens, keys, sizes, workdir)
    stolen = keys[:: max(1, len(keys) // sizes.stolen)][: sizes.stolen]
    stolen_set = set(stolen)
    clean = [key for key in keys if key not in stolen_set]
    with ceir_server(str(db), True, log) as ceir:
        report.progress(f"reporting {len(stolen):,} registered IMEIs stolen")
        _report_stolen(ceir, tokens, stolen)
        batches = batch_figures(ceir, tokens, clean, stolen, sizes)
    unary = unary_figure(db, log, tokens, clean, sizes)
    return [unary, *batches, importing]


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


# --- 1. unary checks against an echo server ------------------------------------------


def unary_figure(
    db: Path, log: str, tokens: Tokens, keys: Sequence[int], sizes: Sizes
) -> report.Figure:
    """Rounds of one run per server, back to back; the ratio is the median of
    the rounds' ratios, so that load that comes and goes on a shared machine
    weighs on both servers of a round alike."""
    step = max(1, len(keys) // sizes.unary_requests)
    requests = [check(key) for key in keys[::step][: sizes.unary_requests]]
    names = ("echo", "echo-asyncio", "ceir", "ceir-quiet")
    servers = [
        echo_server("threaded"),
        echo_server("asyncio"),
        ceir_server(str(db), True, log),
        ceir_server(str(db), False, log),
    ]
    channels = [grpc.insecure_channel(server.target) for server in servers]
    runs: dict[str, list[Measured]] = {name: [] for name in names}
    try:
        calls = [
            functools.partial(
                check_grpc.EquipmentCheckServiceStub(channel).CheckEquipment,
                metadata=tokens.operator,
                timeout=30,
            )
            for channel in channels
        ]
        for call in calls:
            drive(call, requests, threads=sizes.unary_threads, seconds=sizes.warmup)
        for number in range(sizes.rounds):
            report.progress(f"unary round {number + 1} of {sizes.rounds}")
            machine.settle(sizes.settle)
            order = [(number + shift) % len(names) for shift in range(len(names))]
            for index in order:  # who goes first changes from round to round
                run = _metered(
                    servers[index],
                    functools.partial(
                        drive,
                        calls[index],
                        requests,
                        threads=sizes.unary_threads,
                        seconds=sizes.seconds,
                    ),
                    settle=0.0,
                )
                runs[names[index]].append(run)
    finally:
        for channel in channels:
            channel.close()
        for server in servers:
            server.stop()
    # The baseline is the better bare server of each round.
    best_echo = [
        max(threaded, asyncio_, key=lambda run: run.rate.calls / run.rate.seconds)
        for threaded, asyncio_ in zip(runs["echo"], runs["echo-asyncio"], strict=True)
    ]
    ratio = _median_ratio(runs["ceir"], best_echo)
    quiet_ratio = _median_ratio(runs["ceir-quiet"], best_echo)
    return report.Figure(
        name="unary CheckEquipment, CEIR (default: access log on) / best echo server",
        value=ratio,
        unit="x",
        target=f">= {UNARY_TARGET:.2f}x",
        passed=ratio >= UNARY_TARGET,
        details=(
            f"CEIR, access log on:  {_calls(runs['ceir'])}",
            f"CEIR, access log off: {_calls(runs['ceir-quiet'])}; {quiet_ratio:.2f}x echo",
            f"echo server, threads: {_calls(runs['echo'])}",
            f"echo server, asyncio: {_calls(runs['echo-asyncio'])}",
            f"load: {sizes.unary_threads} client threads on one channel per server, "
            f"{len(requests):,} registered IMEIs (15 digits) with IMSI and MSISDN; "
            f"{sizes.rounds} rounds of {sizes.seconds:g} s per server, medians",
        ),
    )


def _median_ratio(runs: Sequence[Measured], bases: Sequence[Measured]) -> float:
    return statistics.median(
        run.rate.calls / run.rate.seconds / (base.rate.calls / base.rate.seconds)
        for run, base in zip(runs, bases, strict=True)
    )


@dataclass(frozen=True)
class Measured:
    """A measured run: its rate, the server's CPU time, and what else ran."""

    rate: Rate
    server_cpu: float  # seconds the server process used
    other_cores: float  # cores other processes kept busy meanwhile, on average

    def cpu_per_call(self) -> float:
        return self.server_cpu / max(self.rate.calls, 1)

    def beside(self) -> str:
        return f"{self.other_cores:.2f} cores busy with other processes meanwhile"


def _measured(
    server: ServerProcess,
    call: Callable[[Any], Any],
    requests: Sequence[Any],
    threads: int,
    sizes: Sizes,
    **limits: Any,
) -> Measured:
    """A warm-up, then a measured run."""
    drive(call, requests, threads=threads, seconds=sizes.warmup)
    return _metered(
        server,
        lambda: drive(call, requests, threads=threads, seconds=sizes.seconds, **limits),
        sizes.settle,
    )


def _metered(server: ServerProcess, run: Callable[[], Rate], settle: float) -> Measured:
    """Run once the machine is quiet (or ``settle`` seconds have passed),
    metering the server's CPU and the machine's other load."""
    machine.settle(settle)
    busy, own, cpu = machine.cpu_busy_seconds(), time.process_time(), server.cpu_seconds()
    rate = run()
    cpu = server.cpu_seconds() - cpu
    others = machine.cpu_busy_seconds() - busy - (time.process_time() - own) - cpu
    return Measured(rate, cpu, max(others, 0.0) / rate.seconds)


def _calls(runs: Sequence[Measured]) -> str:
    """Medians of a server's runs: calls/s, its CPU per call, the other load."""
    rate = statistics.median(run.rate.calls_per_second for run in runs)
    best = max(run.rate.calls_per_second for run in runs)
    cpu = statistics.median(run.cpu_per_call() for run in runs)
    others = statistics.median(run.other_cores for run in runs)
    return (
        f"{rate:7,.0f} calls/s (best {best:,.0f}), server CPU {cpu * 1e6:,.0f} us/call, "
        f"{others:.2f} cores busy elsewhere"
    )


# --- 2. batch checks ------------------------------------------------------------------


def batch_figures(
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
        stub = check_grpc.EquipmentCheckServiceStub(channel)
        call = functools.partial(stub.CheckEquipmentBatch, metadata=tokens.operator, timeout=60)
        answers = _tally(call(headline[0]))
        report.progress(f"batch checks, {HEADLINE_MIX.describe()}")
        measured = max(
            (
                _measured(ceir, call, headline, sizes.batch_threads, sizes, items_per_call=_checks)
                for _ in range(sizes.batch_runs)
            ),
            key=lambda run: run.rate.items_per_second,
        )
        report.progress(f"batch checks, {UNREGISTERED_MIX.describe()}")
        # Each batch is sent once: a second sight of a device is not a first one.
        fresh_answers = _tally(call(fresh[0]))
        fresh_measured = _metered(
            ceir,
            lambda: drive(
                call,
                fresh[1:],
                threads=sizes.batch_threads,
                seconds=600,
                max_calls=len(fresh) - 1,
                items_per_call=_checks,
            ),
            sizes.settle,
        )
    rate, fresh_rate = measured.rate, fresh_measured.rate
    load = (
        f"load: {sizes.batch_threads} client threads on one channel, "
        f"{sizes.batch_size:,} checks per request"
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
            f"{load}, {len(headline)} distinct requests cycled for {sizes.seconds:g} s, "
            f"best of {sizes.batch_runs} run(s)",
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
            f"{load}, {len(fresh) - 1} requests, each sent once",
        ),
    )
    return [headline_figure, fresh_figure]


def _checks(request: check_pb.CheckEquipmentBatchRequest) -> int:
    return len(request.checks)


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


# --- 3. bulk import against raw executemany ------------------------------------------------


def import_figure(
    db: Path, log: str, tokens: Tokens, keys: Sequence[int], sizes: Sizes, workdir: Path
) -> report.Figure:
    chunks = list(import_requests(keys, sizes.chunk_rows))
    report.progress(f"importing {len(keys):,} devices in chunks of {sizes.chunk_rows:,}")
    with ceir_server(str(db), True, log) as ceir, grpc.insecure_channel(ceir.target) as channel:
        stub = registry_grpc.RegistryServiceStub(channel)
        answers: list[registry_pb.ImportRegistrationsResponse] = []

        def run() -> Rate:
            began = time.perf_counter()
            answers.append(
                stub.ImportRegistrations(iter(chunks), metadata=tokens.importer, timeout=3600)
            )
            return Rate(1, len(keys), time.perf_counter() - began)

        measured = _metered(ceir, run, sizes.settle)
    response, seconds, cpu = answers[0], measured.rate.seconds, measured.server_cpu
    if response.rows_accepted != len(keys):
        raise RuntimeError(
            f"the import accepted {response.rows_accepted} of {len(keys)} rows: "
            f"{list(response.rejections[:3])}"
        )
    report.progress("the same rows through raw sqlite3.executemany")
    machine.settle(sizes.settle)
    raw_seconds, raw_others = raw_import(workdir / "raw.db", keys, sizes.chunk_rows)
    rows_per_second = len(keys) / seconds
    raw_per_second = len(keys) / raw_seconds
    ratio = rows_per_second / raw_per_second
    return report.Figure(
        name="ImportRegistrations into SQLite / raw sqlite3.executemany",
        value=ratio,
        unit="x",
        target=f">= {IMPORT_TARGET:.2f}x",
        passed=ratio >= IMPORT_TARGET,
        details=(
            f"CEIR: {rows_per_second:10,.0f} rows/s ({len(keys):,} rows in {seconds:.2f} s, "
            f"server CPU {cpu * 1e6 / len(keys):,.1f} us/row, {measured.beside()})",
            f"raw:  {raw_per_second:10,.0f} rows/s ({raw_seconds:.2f} s, "
            f"{raw_others:.2f} cores busy with other processes meanwhile)",
            "raw: devices, whitelist and changes rows (with a 32-byte leaf hash) by "
            "sqlite3.executemany, prepared before timing, one transaction per chunk",
            f"{len(keys):,} single-IMEI devices in {len(chunks)} client-streamed chunks of "
            f"{sizes.chunk_rows:,}; synchronous=FULL, WAL",
        ),
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


def raw_import(path: Path, keys: Sequence[int], chunk_rows: int) -> tuple[float, float]:
    """Seconds to write the rows the register writes for these devices (devices,
    whitelist, changes), by bare ``executemany`` in the register's schema with
    its pragmas, one transaction per chunk as the register commits them; and
    the cores other processes kept busy meanwhile."""
    database = Database(str(path))
    database.migrate()
    database.dispose()
    now_us = time.time_ns() // 1_000
    chunks = []
    for start in range(0, len(keys), chunk_rows):
        devices, whitelist, changes = [], [], []
        for number in range(start, min(start + chunk_rows, len(keys))):
            key, sequence = keys[number], number + 1
            device_id = f"D{sequence}"
            devices.append(
                (
                    device_id,
                    1,
                    f"TPP-2020-{number // 1_000:05d}",
                    None,
                    "Samsung",
                    f"Galaxy A{number % 50}",
                    IMPORTER,
                    now_us,
                    str(key),
                )
            )
            whitelist.append((key, device_id, None))
            leaf = hashlib.sha256(f"{sequence}:{key}".encode()).digest()  # 32 bytes as stored
            changes.append(
                (
                    *(sequence, 1, key, "", "", 1, None, device_id, None, None, "", ""),
                    *(now_us, IMPORTER, leaf),
                )
            )
        chunks.append((devices, whitelist, changes))
    connection = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=30000"):
        connection.execute(f"PRAGMA {pragma}")
    busy, own, began = machine.cpu_busy_seconds(), time.process_time(), time.perf_counter()
    for devices, whitelist, changes in chunks:
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(
            "INSERT INTO devices (id, source, reference, valid_until_us, brand, model, "
            "registered_by, registered_at_us, imei_keys) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            devices,
        )
        connection.executemany(
            "INSERT INTO whitelist (imei_key, device_id, valid_until_us) VALUES (?, ?, ?)",
            whitelist,
        )
        connection.executemany(
            "INSERT INTO changes (sequence, kind, imei_key, imsi, msisdn, source, "
            "valid_until_us, device_id, blacklist_cause, block_date_us, operator_mcc_mnc, "
            "policy_json, committed_at_us, actor, leaf_hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            changes,
        )
        connection.execute("COMMIT")
    seconds = time.perf_counter() - began
    others = machine.cpu_busy_seconds() - busy - (time.process_time() - own)
    connection.close()
    return seconds, max(others, 0.0) / seconds

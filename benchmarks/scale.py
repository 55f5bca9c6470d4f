"""A register at country scale: memory, database size, import rate, restart
(issue "Country scale": 100,000,000 IMEIs restart to serving in <= 60 s,
<= 16 B of server memory and <= 150 B of database per IMEI).

``make bench-scale`` (or ``python -m benchmarks --only scale``) loads
``--scale-imeis`` single-IMEI TPP registrations (100,000,000; 1,000,000 with
``--quick``) into a fresh SQLite register through the public path: a real
``ceir serve`` process with a signing key, fed by ``ImportRegistrations``
streams of 10,000-row messages built as they are sent. It then stops the
server with SIGTERM (a clean shutdown writes the list checkpoint), starts it
again and prints:

- server memory per IMEI: RSS once serving after the restart, minus the RSS
  of the same server serving an empty register, over the IMEIs;
- database bytes per IMEI (the SQLite file and its WAL; the list checkpoint
  file is printed beside it);
- the import rate, rows/s through ``ImportRegistrations``;
- restart to serving: from starting ``ceir serve`` until the health check
  answers SERVING and a ``CheckEquipment`` of a registered IMEI is answered.

It takes tens of minutes at 100,000,000 (the import dominates) and needs
about 30 GB of disk; its files are removed at the end. CI does not run it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ceir.audit import generate_signing_key, save_private_key
from ceir.domain.identifiers import full_imei
from ceir.service.orgs import add_organisation
from ceir.storage.database import Database
from ceir.v1 import equipment_check_pb2 as check_pb
from ceir.v1 import equipment_check_pb2_grpc as check_grpc
from ceir.v1 import registry_pb2 as registry_pb
from ceir.v1 import registry_pb2_grpc as registry_grpc
from ceir.v1 import types_pb2

from . import machine, report
from .report import Figure
from .servers import CeirServe

FULL_IMEIS = 100_000_000
QUICK_IMEIS = 1_000_000
MEMORY_TARGET = 16.0  # bytes of server memory per IMEI
DB_TARGET = 150.0  # database bytes per IMEI
RESTART_TARGET = 60.0  # seconds at 100,000,000 IMEIs
CHUNK_ROWS = 10_000  # rows per message, the server's limit
STREAM_ROWS = 1_000_000  # rows per ImportRegistrations stream (one request id each)
FIRST_KEY = 35_000_000_000_000
START_TIMEOUT = 3_600.0


def run(imeis: int, workdir: Path) -> list[Figure]:
    report.heading(f"Country scale: {imeis:,} IMEIs (issue: 100,000,000 restart in <= 60 s)")
    folder = workdir / "scale"
    folder.mkdir(parents=True, exist_ok=True)
    db, key = folder / "scale.db", folder / "custodian.pem"
    save_private_key(generate_signing_key(), key)
    database = Database(str(db))
    database.migrate()
    importer = add_organisation(database, "kemenperin", "kemenperin", [])
    operator = add_organisation(database, "telkomsel", "operator", ["510-10"])
    database.dispose()
    report.facts(
        [
            ("database", f"SQLite file {db}"),
            ("server", "`ceir serve --signing-key` in its own process, loopback, plain text"),
            ("rows", f"{imeis:,} single-IMEI TPP registrations, {CHUNK_ROWS:,} per message"),
        ]
    )
    try:
        with CeirServe(db, key, START_TIMEOUT) as server:
            empty = server.rss()
            report.progress(f"empty server: RSS {empty / 1e6:,.0f} MB; importing")
            busy = machine.cpu_busy_seconds()
            seconds = _import(server.port, importer, imeis)
            busy_import = (machine.cpu_busy_seconds() - busy) / seconds
        lists = Path(f"{db}.lists")
        report.progress("stopped (list checkpoint written); restarting")
        busy = machine.cpu_busy_seconds()
        began = time.perf_counter()
        with CeirServe(db, key, START_TIMEOUT) as server:
            _serving(server.port, operator, began)
            restart = time.perf_counter() - began
            busy_restart = (machine.cpu_busy_seconds() - busy) / restart
            rss = server.rss()
            lines = server.stop_and_read()
        database_bytes = sum(
            path.stat().st_size for path in (db, Path(f"{db}-wal")) if path.exists()
        )
        lists_bytes = lists.stat().st_size if lists.exists() else 0
    finally:
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()
    proof = next((line for line in lines if "start-up proof passed" in line), "no proof line")
    memory = (rss - empty) / imeis
    per_row = database_bytes / imeis
    return [
        Figure(
            "server memory per whitelisted IMEI (RSS after restart - empty)",
            memory,
            "B",
            target=f"<= {MEMORY_TARGET:.0f} B",
            passed=memory <= MEMORY_TARGET,
            details=(f"RSS {rss / 1e6:,.0f} MB serving, {empty / 1e6:,.0f} MB empty",),
        ),
        Figure(
            "database bytes per IMEI (SQLite file + WAL)",
            per_row,
            "B",
            target=f"<= {DB_TARGET:.0f} B",
            passed=per_row <= DB_TARGET,
            details=(
                f"{database_bytes / 1e9:,.2f} GB for {imeis:,} IMEIs",
                f"list checkpoint file: {lists_bytes / imeis:,.1f} B per IMEI "
                f"({lists_bytes / 1e9:,.2f} GB)",
            ),
        ),
        Figure(
            "ImportRegistrations rows/s (public path, signing on)",
            imeis / seconds,
            "rows/s",
            details=(
                f"{imeis:,} rows in {seconds:,.0f} s; at 1.2 billion: "
                f"{1.2e9 / (imeis / seconds) / 3600:,.1f} hours",
                f"{busy_import:.2f} of {os.cpu_count()} cores busy meanwhile (server, this "
                "client and any other process)",
            ),
        ),
        Figure(
            "restart to serving (health SERVING + a CheckEquipment answered)",
            restart,
            "s",
            target=f"<= {RESTART_TARGET:.0f} s at {FULL_IMEIS:,} IMEIs",
            passed=restart <= RESTART_TARGET if imeis >= FULL_IMEIS else None,
            details=(
                f"start-up proof: {proof.strip()[:300]}",
                f"{busy_restart:.2f} of {os.cpu_count()} cores busy meanwhile",
            ),
        ),
    ]


def _serving(port: int, token: str, began: float) -> None:
    """Wait for health SERVING, then one CheckEquipment of a registered IMEI."""
    metadata = (("authorization", f"Bearer {token}"),)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                answer = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.RpcError:
                if time.perf_counter() - began > START_TIMEOUT:
                    raise
            time.sleep(0.01)
        check = check_grpc.EquipmentCheckServiceStub(channel).CheckEquipment(
            check_pb.CheckEquipmentRequest(imei=full_imei(FIRST_KEY), imsi="510101000000001"),
            metadata=metadata,
            timeout=30,
        )
        if check.status != types_pb2.EQUIPMENT_STATUS_WHITELISTED:
            raise RuntimeError(f"a registered IMEI is not whitelisted after restart: {check}")


def _import(port: int, token: str, imeis: int) -> float:
    """Seconds to import the rows, a stream of ``STREAM_ROWS`` at a time."""
    metadata = (("authorization", f"Bearer {token}"),)
    began = time.perf_counter()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = registry_grpc.RegistryServiceStub(channel)
        for start in range(0, imeis, STREAM_ROWS):
            count = min(STREAM_ROWS, imeis - start)
            answer = stub.ImportRegistrations(
                _requests(start, count), metadata=metadata, timeout=START_TIMEOUT
            )
            if answer.rows_accepted != count:
                raise RuntimeError(f"{answer.rows_accepted} of {count} rows accepted: {answer}")
            done = start + count
            if done % (10 * STREAM_ROWS) == 0 or done == imeis:
                rate = done / (time.perf_counter() - began)
                report.progress(f"{done:,} imported ({rate:,.0f} rows/s)")
    return time.perf_counter() - began


def _requests(start: int, count: int) -> Iterator[registry_pb.ImportRegistrationsRequest]:
    request_id = f"scale-{start}"
    for first in range(start, start + count, CHUNK_ROWS):
        rows = [
            registry_pb.ImportRow(
                row=number - start + 1,
                device=registry_pb.DeviceRegistration(
                    imeis=[full_imei(FIRST_KEY + number)],
                    source=types_pb2.REGISTRATION_SOURCE_TPP_IMPORT,
                    reference=f"TPP-2020-{number // 1_000:06d}",
                    brand="Samsung",
                    model=f"Galaxy A{number % 50}",
                ),
            )
            for number in range(first, min(first + CHUNK_ROWS, start + count))
        ]
        yield registry_pb.ImportRegistrationsRequest(request_id=request_id, rows=rows)

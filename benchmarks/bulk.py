"""The bulk path (issue "Country scale"): an import against its storage engine.

Side by side in one run, with the same single-IMEI TPP registrations:

1. ``ImportRegistrations`` through a register in a process of its own
   (SQLite, signing on) against raw ``sqlite3.executemany`` of the rows the
   register writes (change with its 32-byte leaf hash, whitelist; a one-slot
   device has no devices row since migration 0007),
   into tables of the same shape, one transaction per chunk;
2. the same on a throwaway PostgreSQL (started as the tests start theirs,
   ``tests.pgserver``) against raw ``COPY`` of those rows;
3. the SQLite database's bytes per registration (``dbstat``: every table
   and index, pages as allocated).

The import's messages are serialised before timing and sent as bytes, so
the client costs next to nothing while the register works; the raw side
makes each chunk's rows before timing its writes.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from ceir.domain.identifiers import full_imei
from ceir.service.orgs import add_organisation
from ceir.storage.database import Database
from ceir.v1 import registry_pb2 as registry_pb
from ceir.v1 import types_pb2

from . import report
from .servers import ceir_server

SQLITE_TARGET = 0.7  # import rows/s over raw executemany's
POSTGRES_TARGET = 0.5  # import rows/s over raw COPY's
BYTES_TARGET = 150  # SQLite bytes per single-IMEI registration
IMPORTER = "kemenperin"
FIRST_KEY = 35_209_900_000_000
STRIDE = 7  # keys spread over the TAC's serial numbers, not one after another


@dataclass(frozen=True)
class Sizes:
    rows: int = 10_000_000
    postgres_rows: int = 1_000_000  # a PostgreSQL import of 10 M takes an hour here
    chunk_rows: int = 10_000


FULL = Sizes()
QUICK = Sizes(rows=200_000, postgres_rows=100_000, chunk_rows=5_000)


def run(sizes: Sizes, workdir: Path) -> list[report.Figure]:
    report.heading("Bulk import against the storage engine")
    speed, size = _sqlite_figures(sizes, workdir)
    postgres = _postgres_figure(sizes)
    return [speed, size, *([postgres] if postgres is not None else [])]


# --- the rows -------------------------------------------------------------------------------


def key_of(number: int) -> int:
    return FIRST_KEY + number * STRIDE


def reference_of(number: int) -> str:
    return f"TPP-2020-{number // 1_000:05d}"


def model_of(number: int) -> str:
    return f"Galaxy A{number % 50}"


def requests(rows: int, chunk_rows: int) -> Iterator[registry_pb.ImportRegistrationsRequest]:
    """One device per row, as a TPP importer sends them, ``chunk_rows`` a message."""
    source = types_pb2.REGISTRATION_SOURCE_TPP_IMPORT
    for start in range(0, rows, chunk_rows):
        message = registry_pb.ImportRegistrationsRequest(
            request_id="bulk-bench" if not start else ""
        )
        for number in range(start, min(start + chunk_rows, rows)):
            row = message.rows.add()
            row.row = number + 1
            device = row.device
            device.imeis.append(full_imei(key_of(number)))
            device.source = source
            device.reference = reference_of(number)
            device.brand = "Samsung"
            device.model = model_of(number)
        yield message


def raw_chunks(
    rows: int, chunk_rows: int, now_us: int
) -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """Per chunk, the change and whitelist rows the register writes for those
    devices, as it stores a one-slot device (migrations 0006 and 0007): a leaf
    hash of 32 bytes, the device's own id and slots stored as '', no devices row."""
    for start in range(0, rows, chunk_rows):
        changes, whitelist = [], []
        for number in range(start, min(start + chunk_rows, rows)):
            key, sequence = key_of(number), number + 1
            leaf = hashlib.sha256(b"%d" % sequence).digest()
            reference, model = reference_of(number), model_of(number)
            changes.append(
                (
                    *(sequence, 1, key, "", "", 1, None, "", None, None, "", "", now_us),
                    *(IMPORTER, leaf, 2, reference, "Samsung", model, "", "", "", None),
                )
            )
            whitelist.append((key, "", None))
        yield changes, whitelist


CHANGE_COLUMNS = (
    "sequence, kind, imei_key, imsi, msisdn, source, valid_until_us, device_id, "
    "blacklist_cause, block_date_us, operator_mcc_mnc, policy_json, committed_at_us, actor, "
    "leaf_hash, leaf_version, reference, brand, model, device_imei_keys, police_report, "
    "reason, subscriber_salt"
)
WHITELIST_COLUMNS = "imei_key, device_id, valid_until_us"


def _import(db: str, token: str, sizes: Sizes, rows: int, log_path: str) -> tuple[float, int]:
    """Seconds to import ``rows`` devices through a register on ``db``; its CPU seconds."""
    # Serialised before timing (about 70 bytes a row): the client then costs
    # the server's two cores next to nothing while it sends.
    messages = [m.SerializeToString() for m in requests(rows, sizes.chunk_rows)]
    with ceir_server(db, True, log_path, ephemeral_signing_key=True) as server:
        metadata = (("authorization", f"Bearer {token}"),)
        with grpc.insecure_channel(server.target) as channel:
            send = channel.stream_unary(
                "/ceir.v1.RegistryService/ImportRegistrations",
                request_serializer=None,
                response_deserializer=registry_pb.ImportRegistrationsResponse.FromString,
            )
            cpu = server.cpu_seconds()
            began = time.perf_counter()
            answer = send(
                _reported(iter(messages), rows, sizes.chunk_rows),
                metadata=metadata,
                timeout=24 * 3600,
            )
            seconds = time.perf_counter() - began
            cpu = server.cpu_seconds() - cpu
    if answer.rows_accepted != rows:
        raise RuntimeError(f"the import accepted {answer.rows_accepted} of {rows} rows")
    return seconds, int(cpu * 1e6 / rows)


def _reported(messages: Iterator[bytes], rows: int, chunk_rows: int) -> Iterator[bytes]:
    step = max(rows // 10 // chunk_rows, 1)
    for number, message in enumerate(messages):
        if number and number % step == 0:
            report.progress(f"{number * chunk_rows:,} of {rows:,} rows sent")
        yield message


def _prepare(url: str) -> str:
    database = Database(url)
    try:
        database.migrate()
        return add_organisation(database, IMPORTER, "kemenperin", [])
    finally:
        database.dispose()


# --- 1 and 3: SQLite ------------------------------------------------------------------------------


def _sqlite_figures(sizes: Sizes, workdir: Path) -> tuple[report.Figure, report.Figure]:
    path = workdir / "bulk.db"
    token = _prepare(f"sqlite:///{path}")
    report.progress(f"importing {sizes.rows:,} devices into SQLite through a register")
    seconds, cpu_us = _import(str(path), token, sizes, sizes.rows, str(workdir / "bulk.log"))
    per_row = _bytes_per_row(path, sizes.rows)
    report.progress("the same rows by raw sqlite3.executemany")
    raw = _raw_sqlite(workdir / "raw.db", sizes)
    ratio = raw / seconds
    speed = report.Figure(
        name="ceir import into SQLite / raw sqlite3.executemany",
        value=ratio,
        unit="x",
        target=f">= {SQLITE_TARGET:.1f}x",
        passed=ratio >= SQLITE_TARGET,
        details=(
            f"ceir import: {sizes.rows / seconds:10,.0f} rows/s ({sizes.rows:,} rows in "
            f"{seconds:.1f} s; server CPU {cpu_us} us/row; signing on)",
            f"raw:         {sizes.rows / raw:10,.0f} rows/s (change + whitelist rows, "
            "one transaction per chunk, WAL, synchronous=FULL)",
            f"{sizes.chunk_rows:,} rows per message / transaction",
        ),
    )
    size = report.Figure(
        name="SQLite bytes per single-IMEI registration",
        value=per_row,
        unit="B",
        target=f"<= {BYTES_TARGET}",
        passed=per_row <= BYTES_TARGET,
        details=(f"every table and index (dbstat), after {sizes.rows:,} registrations",),
    )
    return speed, size


def _bytes_per_row(path: Path, rows: int) -> float:
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (total,) = connection.execute("SELECT sum(pgsize) FROM dbstat").fetchone()
    finally:
        connection.close()
    return float(total) / rows


def _raw_sqlite(path: Path, sizes: Sizes) -> float:
    """Seconds of bare executemany of the register's rows, in its schema and pragmas."""
    Database(f"sqlite:///{path}").migrate()
    connection = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=30000"):
        connection.execute(f"PRAGMA {pragma}")
    statements = (
        f"INSERT INTO changes ({CHANGE_COLUMNS}) VALUES ({', '.join('?' * 23)})",
        f"INSERT INTO whitelist ({WHITELIST_COLUMNS}) VALUES (?, ?, ?)",
    )
    seconds = 0.0
    for tables in raw_chunks(sizes.rows, sizes.chunk_rows, time.time_ns() // 1_000):
        began = time.perf_counter()
        connection.execute("BEGIN IMMEDIATE")
        for statement, rows in zip(statements, tables, strict=True):
            connection.executemany(statement, rows)
        connection.execute("COMMIT")
        seconds += time.perf_counter() - began
    connection.close()
    return seconds


# --- 2: PostgreSQL --------------------------------------------------------------------------------


def _postgres_figure(sizes: Sizes) -> report.Figure | None:
    try:
        from tests.pgserver import PostgresServer
    except ImportError as error:  # run outside the source tree
        report.progress(f"no PostgreSQL figure: {error}")
        return None
    try:
        server = PostgresServer()
        server.start()
    except (RuntimeError, OSError) as error:
        report.progress(f"no PostgreSQL figure: {error}")
        return None
    rows = sizes.postgres_rows
    try:
        url = server.new_database()
        token = _prepare(url)
        report.progress(f"importing {rows:,} devices into PostgreSQL through a register")
        seconds, cpu_us = _import(url, token, sizes, rows, "/dev/null")
        report.progress("the same rows by raw COPY")
        raw = _raw_copy(server.new_database(), sizes, rows)
    finally:
        server.stop()
    ratio = raw / seconds
    return report.Figure(
        name="ceir import into PostgreSQL / raw COPY",
        value=ratio,
        unit="x",
        target=f">= {POSTGRES_TARGET:.1f}x",
        passed=ratio >= POSTGRES_TARGET,
        details=(
            f"ceir import: {rows / seconds:10,.0f} rows/s ({rows:,} rows in {seconds:.1f} s; "
            f"server CPU {cpu_us} us/row; signing on)",
            f"raw COPY:    {rows / raw:10,.0f} rows/s (change + whitelist rows, "
            "one transaction per chunk)",
            "PostgreSQL 15 as the tests run it (fsync off), same machine",
        ),
    )


def _raw_copy(url: str, sizes: Sizes, rows: int) -> float:
    import psycopg

    Database(url).migrate()
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    copies = (
        f"COPY changes ({CHANGE_COLUMNS}) FROM STDIN",
        f"COPY whitelist ({WHITELIST_COLUMNS}) FROM STDIN",
    )
    seconds = 0.0
    with psycopg.connect(dsn) as connection:
        for tables in raw_chunks(rows, sizes.chunk_rows, time.time_ns() // 1_000):
            began = time.perf_counter()
            with connection.transaction(), connection.cursor() as cursor:
                for statement, table in zip(copies, tables, strict=True):
                    with cursor.copy(statement) as copy:
                        for row in table:
                            copy.write_row(row)
            seconds += time.perf_counter() - began
    return seconds

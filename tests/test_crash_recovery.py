"""SIGKILL the server while clients write, restart it on the same database,
and check that nothing acknowledged was lost and nothing was half-written.

The server runs in a subprocess (a real process, killed for real). Clients
stream RegisterDevice calls, each with its own request id, and record every
answer; at a random moment after some hundreds of answers the server is
killed. After a restart: every acknowledged registration is there, the
change feed is gap-free 1..N with ``register_state.last_sequence == N``,
SQLite's integrity check passes, and retrying the calls that had no answer
(same request id, same payload) replays a committed one or registers an
uncommitted one, never twice. A bulk import killed midway and sent again
with the same request id registers every row exactly once, the chunks
committed before the crash being replayed rather than reported as
duplicates.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
import sqlalchemy
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy.pool import NullPool

from ceir.v1 import equipment_check_pb2 as check_pb
from ceir.v1 import registry_pb2, types_pb2

from .helpers import Client, imei

REPO = Path(__file__).resolve().parents[1]
SERVE = """
import sys
from ceir.api.server import ServerConfig, serve
serve(ServerConfig(db=sys.argv[1], address=sys.argv[2], access_log=False, follow_interval=0.2,
                   insecure=True))
"""
READY_WITHIN = 60.0  # seconds for a server process to answer health checks
ACKS_WITHIN = 120.0  # seconds for the clients to collect the acks wanted before the kill
WRITERS = 4
TAC = 35_777_000
IMPORT_TAC = 35_888_000
IMPORT_CHUNKS = 30
IMPORT_CHUNK_ROWS = 200

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``serve()`` in a child process, on a free port, logging to a file."""

    def __init__(self, db_url: str, log: Path) -> None:
        self.db_url = db_url
        self.log_path = log
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start and wait until health says SERVING (a taken port: try another)."""
        for _attempt in range(3):
            self.port = free_port()
            with self.log_path.open("ab") as log:
                self.process = subprocess.Popen(
                    [sys.executable, "-c", SERVE, self.db_url, f"127.0.0.1:{self.port}"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=REPO,
                    env={**os.environ, "PYTHONPATH": str(REPO)},
                )
            if self._wait_until_serving():
                return
        raise AssertionError(f"the server never served; its log:\n{self.log_tail()}")

    def _wait_until_serving(self) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + READY_WITHIN
        with grpc.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    return False  # exited (e.g. the port was taken meanwhile)
                try:
                    answer = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if answer.status == health_pb2.HealthCheckResponse.SERVING:
                        return True
                except grpc.RpcError:
                    pass
                time.sleep(0.05)
        self.kill()
        raise AssertionError(f"no SERVING within {READY_WITHIN} s; log:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, nothing is flushed."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4_000:]


@contextlib.contextmanager
def server_process(db_url: str, log: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(db_url, log)
    try:
        server.start()
        yield server
    finally:
        server.kill()


@contextlib.contextmanager
def client_of(server: ServerProcess, token: str) -> Iterator[Client]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield Client(channel, token)


def registration(index: int, run: str) -> registry_pb2.RegisterDeviceRequest:
    """The index-th request of a stream: one device, its own request id."""
    return registry_pb2.RegisterDeviceRequest(
        request_id=f"{run}-{index}",
        device=registry_pb2.DeviceRegistration(
            imeis=[imei(index, tac=TAC)],
            source=types_pb2.REGISTRATION_SOURCE_TPP_IMPORT,
            reference=f"TPP-{run}-{index}",
            brand="Crash",
            model=f"K{index % 7}",
        ),
    )


@dataclass
class RegistrationStream:
    """Writer threads registering devices 0, 1, 2, ... until the server dies."""

    client: Client
    run: str
    sent: dict[int, registry_pb2.RegisterDeviceRequest] = field(default_factory=dict)
    acked: dict[int, registry_pb2.RegisterDeviceResponse] = field(default_factory=dict)
    lost: dict[int, grpc.StatusCode] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    killing: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _numbers: Iterator[int] = field(default_factory=itertools.count)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for number in range(WRITERS):
            thread = threading.Thread(target=self._write, name=f"writer-{number}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _write(self) -> None:
        while True:
            with self._lock:
                index = next(self._numbers)
                request = registration(index, self.run)
                self.sent[index] = request
            try:
                answer = self.client.call(self.client.registry.RegisterDevice, request)
            except grpc.RpcError as error:
                with self._lock:
                    self.lost[index] = error.code()
                    if not self.killing.is_set():
                        self.unexpected.append(f"#{index}: {error.code()} {error.details()}")
                return
            with self._lock:
                self.acked[index] = answer

    def wait_for_acks(self, count: int) -> None:
        deadline = time.monotonic() + ACKS_WITHIN
        while len(self.acked) < count:
            assert not self.unexpected, self.unexpected[:5]
            assert any(t.is_alive() for t in self._threads), "all writers stopped"
            assert time.monotonic() < deadline, f"only {len(self.acked)} acks in {ACKS_WITHIN} s"
            time.sleep(0.002)

    def join(self) -> None:
        for thread in self._threads:
            thread.join(timeout=60)
            assert not thread.is_alive(), f"{thread.name} still running after the kill"

    @property
    def in_flight(self) -> list[int]:
        """Sent but never answered: the kill came first."""
        return sorted(set(self.sent) - set(self.acked))


# --- looking at the database directly ---------------------------------------------------


def feed_of(engine: sqlalchemy.Engine) -> tuple[list[int], int]:
    """Every change sequence in order, and register_state.last_sequence."""
    with engine.connect() as connection:
        sequences = [
            int(row[0])
            for row in connection.exec_driver_sql("SELECT sequence FROM changes ORDER BY sequence")
        ]
        last = int(
            connection.exec_driver_sql("SELECT last_sequence FROM register_state").scalar_one()
        )
    return sequences, last


def assert_gap_free(engine: sqlalchemy.Engine) -> int:
    """The feed is exactly 1..N and the state says N; returns N."""
    sequences, last = feed_of(engine)
    assert sequences == list(range(1, len(sequences) + 1)), "gap or duplicate in changes"
    assert last == len(sequences), f"last_sequence {last} but {len(sequences)} changes"
    return last


def whitelist_devices(engine: sqlalchemy.Engine, tac: int) -> dict[int, str]:
    """IMEI key -> device id, for the whitelist rows of one TAC (a row's ''
    is the device of the key's latest registration, migration 0007)."""
    low, high = tac * 1_000_000, (tac + 1) * 1_000_000
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT imei_key, CASE WHEN device_id = '' THEN (SELECT 'D' || "
            "CAST(max(sequence) AS TEXT) FROM changes c WHERE c.imei_key = w.imei_key "
            "AND c.kind = 1) ELSE device_id END FROM whitelist w"
            f" WHERE imei_key >= {low} AND imei_key < {high}"
        )
        return {int(row[0]): str(row[1]) for row in rows}


def assert_one_addition_per_imei(engine: sqlalchemy.Engine) -> None:
    with engine.connect() as connection:
        twice = connection.exec_driver_sql(
            "SELECT imei_key, count(*) FROM changes WHERE kind = 1"
            " GROUP BY imei_key HAVING count(*) > 1"
        ).fetchall()
    assert not twice, f"IMEIs whitelisted more than once: {twice[:5]}"


def assert_sqlite_intact(db_url: str) -> None:
    if not db_url.startswith("sqlite"):
        return  # PostgreSQL has no equivalent; its own WAL replay is not ours to test
    path = db_url.removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(path)) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


@pytest.fixture
def inspect(db_url: str) -> Iterator[sqlalchemy.Engine]:
    engine = sqlalchemy.create_engine(db_url, poolclass=NullPool)
    try:
        yield engine
    finally:
        engine.dispose()


def key_of(index: int, tac: int = TAC) -> int:
    return int(imei(index, tac=tac)[:14])


def assert_registered(
    client: Client, acked: dict[int, registry_pb2.RegisterDeviceResponse]
) -> None:
    """Each acknowledged device: WHITELISTED, and its record is the one acknowledged."""
    indexes = sorted(acked)
    for start in range(0, len(indexes), 1_000):
        batch = indexes[start : start + 1_000]
        answers = client.call(
            client.check.CheckEquipmentBatch,
            check_pb.CheckEquipmentBatchRequest(
                checks=[check_pb.CheckEquipmentRequest(imei=imei(i, tac=TAC)) for i in batch]
            ),
        )
        for index, answer in zip(batch, answers.results, strict=True):
            assert answer.status == types_pb2.EQUIPMENT_STATUS_WHITELISTED, (index, answer)
            assert list(answer.reasons) == [types_pb2.REASON_REGISTERED], (index, answer)
    for index in indexes:
        record = client.call(
            client.registry.GetImeiRecord,
            registry_pb2.GetImeiRecordRequest(imei=imei(index, tac=TAC)),
        )
        assert record.registration == acked[index].registration, index


# --- the tests ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("acks_before_kill", "seed"),
    [pytest.param((20, 60), 1, id="early"), pytest.param((250, 450), 2, id="later")],
)
def test_sigkill_loses_no_acknowledged_registration(
    db_url: str,
    tokens: dict[str, str],
    inspect: sqlalchemy.Engine,
    tmp_path: Path,
    acks_before_kill: tuple[int, int],
    seed: int,
) -> None:
    rng = random.Random(seed)
    log = tmp_path / "server.log"
    wanted = rng.randint(*acks_before_kill)

    with server_process(db_url, log) as server, client_of(server, tokens["kemenperin"]) as client:
        stream = RegistrationStream(client, run=f"crash{seed}")
        stream.start()
        stream.wait_for_acks(wanted)
        time.sleep(rng.uniform(0, 0.02))  # a random moment, not right after an answer
        stream.killing.set()
        server.kill()
        stream.join()
    assert not stream.unexpected, stream.unexpected[:5]
    assert set(stream.lost.values()) <= {grpc.StatusCode.UNAVAILABLE}, stream.lost
    assert len(stream.acked) >= wanted

    # The database as the crash left it.
    assert_sqlite_intact(db_url)
    committed = assert_gap_free(inspect)
    assert committed >= len(stream.acked)
    assert max(a.sequence for a in stream.acked.values()) <= committed
    stored = whitelist_devices(inspect, TAC)
    assert committed == len(stored), "a change without its whitelist row, or the reverse"
    for index, answer in stream.acked.items():
        assert stored.get(key_of(index)) == answer.registration.device_id, index
    # Calls that had no answer either committed whole or not at all.
    committed_unacked = {i for i in stream.in_flight if key_of(i) in stored}
    assert set(stored) == {key_of(i) for i in set(stream.acked) | committed_unacked}

    with server_process(db_url, log) as server, client_of(server, tokens["kemenperin"]) as client:
        assert_registered(client, stream.acked)

        # Retrying an answered call replays the very same answer.
        for index in rng.sample(sorted(stream.acked), 20):
            again = client.call(client.registry.RegisterDevice, stream.sent[index])
            assert again == stream.acked[index], index

        # Retrying an unanswered call: a replay if it committed, else registered now.
        for index in stream.in_flight:
            answer = client.call(client.registry.RegisterDevice, stream.sent[index])
            assert answer.registration.imei_keys == [f"{key_of(index):014d}"]
            if index in committed_unacked:
                assert answer.sequence <= committed, f"#{index} registered a second time"
                assert answer.registration.device_id == stored[key_of(index)]
            else:
                assert answer.sequence > committed, f"#{index} answered without committing"

    registered = set(stream.acked) | set(stream.in_flight)
    assert assert_gap_free(inspect) == len(registered)
    assert set(whitelist_devices(inspect, TAC)) == {key_of(i) for i in registered}
    assert_one_addition_per_imei(inspect)
    assert_sqlite_intact(db_url)


def import_chunks(request_id: str) -> list[registry_pb2.ImportRegistrationsRequest]:
    """IMPORT_CHUNKS messages of IMPORT_CHUNK_ROWS rows; the id in the first."""
    chunks = []
    for number in range(IMPORT_CHUNKS):
        chunk = registry_pb2.ImportRegistrationsRequest(
            request_id=request_id if number == 0 else ""
        )
        for offset in range(IMPORT_CHUNK_ROWS):
            row = number * IMPORT_CHUNK_ROWS + offset
            chunk.rows.add(
                row=row + 1,
                device=registry_pb2.DeviceRegistration(
                    imeis=[imei(row, tac=IMPORT_TAC)],
                    source=types_pb2.REGISTRATION_SOURCE_TPP_PRODUCTION,
                    reference=f"TPP-BULK-{row}",
                ),
            )
        chunks.append(chunk)
    return chunks


def run_in_thread(work: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    """Start ``work``; the list receives its result or the exception it raised."""
    outcome: list[object] = []

    def target() -> None:
        try:
            outcome.append(work())
        except Exception as error:
            outcome.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


@pytest.mark.parametrize("chunks_before_kill", [(2, 6), (10, 20)], ids=["early", "later"])
def test_import_killed_midway_and_sent_again_registers_every_row_once(
    db_url: str,
    tokens: dict[str, str],
    inspect: sqlalchemy.Engine,
    tmp_path: Path,
    chunks_before_kill: tuple[int, int],
) -> None:
    rng = random.Random(sum(chunks_before_kill))
    log = tmp_path / "server.log"
    chunks = import_chunks("bulk-2020-09")
    total = IMPORT_CHUNKS * IMPORT_CHUNK_ROWS
    wanted = rng.randint(*chunks_before_kill) * IMPORT_CHUNK_ROWS

    with server_process(db_url, log) as server, client_of(server, tokens["kemenperin"]) as client:
        thread, outcome = run_in_thread(
            lambda: client.call(client.registry.ImportRegistrations, iter(chunks))
        )
        deadline = time.monotonic() + ACKS_WITHIN
        while feed_of(inspect)[1] < wanted:
            assert thread.is_alive(), f"the import ended first: {outcome}"
            assert time.monotonic() < deadline, "the import made no progress"
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.02))
        server.kill()
        thread.join(timeout=60)
    assert len(outcome) == 1 and isinstance(outcome[0], grpc.RpcError), outcome
    assert outcome[0].code() is grpc.StatusCode.UNAVAILABLE

    assert_sqlite_intact(db_url)
    committed = assert_gap_free(inspect)
    assert wanted <= committed < total, "the kill did not land inside the import"
    assert committed % IMPORT_CHUNK_ROWS == 0, "a chunk was half-written"
    before = whitelist_devices(inspect, IMPORT_TAC)
    assert len(before) == committed

    with server_process(db_url, log) as server, client_of(server, tokens["kemenperin"]) as client:
        again = client.call(client.registry.ImportRegistrations, iter(chunks))

    # Committed chunks replay their stored answers: every row counts as
    # accepted and none is rejected as already registered.
    assert again.rows_received == total
    assert again.sequence == total
    assert (again.rows_accepted, again.rows_rejected) == (total, 0), list(again.rejections)[:5]
    assert assert_gap_free(inspect) == total
    after = whitelist_devices(inspect, IMPORT_TAC)
    assert set(after) == {int(imei(row, tac=IMPORT_TAC)[:14]) for row in range(total)}
    assert {key: after[key] for key in before} == before, "committed rows were registered again"
    assert_one_addition_per_imei(inspect)
    assert_sqlite_intact(db_url)

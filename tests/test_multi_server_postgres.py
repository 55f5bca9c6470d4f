"""Two ``ceir serve`` processes on one PostgreSQL database, started at once on a
new database (both migrate it, one after the other).

Both serve writes at once, from threads registering devices, reporting
them stolen, pairing exceptions and checking unregistered devices (whose
notifications are the checks' own writes), while the same request ids are
raced through both. Then: the change table is 1..N without a gap or a
duplicate; both servers' ``WatchChanges`` feeds from 0 are the same
changes, each message's signed checkpoint matching the replay of the
changes before it; both sign the same root at the same size and give the
same inclusion proofs; each write is seen by the other server's checks
(polled with a generous deadline; the bound is measured by
``python -m benchmarks --only multiserver``, not asserted here). Then one
server is SIGKILLed while both take writes: the other keeps answering
checks and writes, and the killed one restarts (its start-up proof
passing while the other keeps writing) and catches up.
"""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psycopg
import pytest
import sqlalchemy
from sqlalchemy.pool import NullPool

from ceir.audit import Frontier, Verifier, open_checkpoint, verify_inclusion
from ceir.audit.checkpoint import Checkpoint
from ceir.domain.model import ChangeKind
from ceir.service.merkle_log import DEFAULT_ORIGIN
from ceir.service.orgs import add_organisation
from ceir.storage.database import WRITE_IDLE_TIMEOUT_MS, Database
from ceir.v1 import equipment_check_pb2 as check_pb
from ceir.v1 import list_sync_pb2 as sync_pb
from ceir.v1 import registry_pb2, transparency_pb2, types_pb2
from operators_sim.leaf import leaf_hash

from .helpers import ORGS, TELKOMSEL_IMSI, Client, imei
from .pgserver import PostgresServer

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

CEIR = str(Path(sys.executable).parent / "ceir")
READY_WITHIN = 120.0  # seconds for a server to log "serving"
SEEN_WITHIN = 60.0  # a generous deadline for one server to see the other's write
# IMEI ranges (TACs), one per kind of write, so each can be counted.
TAC_A, TAC_B, TAC_STOLEN, TAC_PAIRED, TAC_SIGHTED, TAC_RACED, TAC_KILL = (
    35_100_000,
    35_200_000,
    35_300_000,
    35_400_000,
    35_500_000,
    35_600_000,
    35_700_000,
)
PER_WRITER = 60  # registrations per writer thread, two threads per server
STOLEN = PAIRED = 25  # per server
SIGHTED = 25  # unregistered devices checked through both servers at once
RACED = 20  # request ids sent through both servers at once


@pytest.fixture
def pg_url(postgres: PostgresServer) -> str:
    return postgres.new_database()


@pytest.fixture
def tokens(pg_url: str, servers: tuple[Served, Served]) -> dict[str, str]:
    """Organisations added once the servers run (they migrated the new database)."""
    db = Database(pg_url)
    try:
        return {
            name: add_organisation(db, name, kind, codes) for name, (kind, codes) in ORGS.items()
        }
    finally:
        db.dispose()


@pytest.fixture
def log_key(tmp_path: Path) -> tuple[Path, Verifier]:
    """The custodian's key, made by ``ceir audit keygen``: both servers sign with it."""
    path = tmp_path / "log-key.pem"
    made = subprocess.run(
        [CEIR, "audit", "keygen", str(path)], capture_output=True, text=True, check=True
    )
    return path, Verifier.from_vkey(made.stdout.strip())


@pytest.fixture
def inspect(pg_url: str) -> Iterator[sqlalchemy.Engine]:
    engine = sqlalchemy.create_engine(pg_url, poolclass=NullPool)
    yield engine
    engine.dispose()


class Served:
    """``ceir serve`` in a child process on a port of its choosing, logging to a file."""

    def __init__(self, name: str, db_url: str, key: Path, folder: Path) -> None:
        self.name, self.db_url, self.key, self.folder = name, db_url, key, folder
        self.starts = 0
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.channel: grpc.Channel | None = None
        self.log = folder / f"{name}.log"

    def start(self) -> None:
        self.launch()
        self.wait_until_serving()

    def launch(self) -> None:
        self.starts += 1
        self.log = self.folder / f"{self.name}-{self.starts}.log"
        command = [CEIR, "serve", "--db", self.db_url, "--listen", "127.0.0.1:0", "--insecure"]
        command += ["--signing-key", str(self.key), "--no-access-log"]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)

    def wait_until_serving(self) -> None:
        self.port = self._serving_port()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")

    def _serving_port(self) -> int:
        assert self.process is not None
        deadline = time.monotonic() + READY_WITHIN
        while time.monotonic() < deadline:
            for line in self.log.read_text(errors="replace").splitlines():
                if line.startswith("{") and json.loads(line).get("msg") == "serving":
                    return int(json.loads(line)["port"])
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.kill()
        raise AssertionError(f"{self.name} did not serve; its log:\n{self.tail()}")

    def client(self, token: str) -> Client:
        assert self.channel is not None
        return Client(self.channel, token)

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)
        self._close_channel()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_channel()

    def _close_channel(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-6_000:]


@pytest.fixture
def servers(
    pg_url: str, log_key: tuple[Path, Verifier], tmp_path: Path
) -> Iterator[tuple[Served, Served]]:
    """Both started at once on a new database: both migrate it, one after the other."""
    first = Served("a", pg_url, log_key[0], tmp_path)
    second = Served("b", pg_url, log_key[0], tmp_path)
    try:
        first.launch()
        second.launch()
        first.wait_until_serving()
        second.wait_until_serving()
        yield first, second
    finally:
        first.stop()
        second.stop()


# --- requests ------------------------------------------------------------------------------


def registration(tac: int, index: int, request_id: str) -> registry_pb2.RegisterDeviceRequest:
    return registry_pb2.RegisterDeviceRequest(
        request_id=request_id,
        device=registry_pb2.DeviceRegistration(
            imeis=[imei(index, tac=tac)],
            source=types_pb2.REGISTRATION_SOURCE_TPP_IMPORT,
            reference=f"TPP-{tac}-{index}",
            brand="Twin",
            model=f"M{index % 5}",
        ),
    )


@dataclass
class Workload:
    """Threads writing through the servers; every failure is kept, none raised."""

    errors: list[str] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def run(self, name: str, work: Callable[[], None]) -> None:
        def guarded() -> None:
            try:
                work()
            except grpc.RpcError as error:
                self.errors.append(f"{name}: {error.code()} {error.details()}")
            except Exception as error:  # reported by the test, not lost
                self.errors.append(f"{name}: {error!r}")

        thread = threading.Thread(target=guarded, name=name, daemon=True)
        self.threads.append(thread)
        thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=300)
            assert not thread.is_alive(), f"{thread.name} still running"
        assert not self.errors, self.errors[:5]


def register_range(client: Client, tac: int, indexes: range, run: str) -> Callable[[], None]:
    def work() -> None:
        for index in indexes:
            client.call(
                client.registry.RegisterDevice, registration(tac, index, f"{run}-{tac}-{index}")
            )

    return work


def report_stolen(client: Client, indexes: range) -> Callable[[], None]:
    def work() -> None:
        for index in indexes:
            client.call(
                client.registry.ReportStolen,
                registry_pb2.ReportStolenRequest(
                    request_id=f"stolen-{index}",
                    imeis=[imei(index, tac=TAC_STOLEN)],
                    police_report=f"LP/{index}/2026",
                    subscriber_imsi=TELKOMSEL_IMSI,
                ),
            )

    return work


def pair_exceptions(client: Client, indexes: range) -> Callable[[], None]:
    def work() -> None:
        for index in indexes:
            client.call(
                client.registry.AddException,
                registry_pb2.AddExceptionRequest(
                    request_id=f"pair-{index}",
                    imei=imei(index, tac=TAC_PAIRED),
                    imsi=TELKOMSEL_IMSI,
                    reason=f"complaint {index}",
                ),
            )

    return work


def sight_unregistered(client: Client) -> Callable[[], None]:
    """Check every unregistered device once: each first sight is a notification to record."""

    def work() -> None:
        for index in range(SIGHTED):
            answer = client.check_imei(imei(index, tac=TAC_SIGHTED))
            assert answer.status == types_pb2.EQUIPMENT_STATUS_GREYLISTED, answer

    return work


def race_request_ids(
    client: Client,
    barrier: threading.Barrier,
    answers: dict[int, registry_pb2.RegisterDeviceResponse],
) -> Callable[[], None]:
    """Send each raced request at the moment the other server is sent it too."""

    def work() -> None:
        for index in range(RACED):
            request = registration(TAC_RACED, index, f"raced-{index}")
            barrier.wait(timeout=60)
            answers[index] = client.call(client.registry.RegisterDevice, request)

    return work


# --- reading the servers and the database --------------------------------------------------


def statuses(client: Client, imeis: list[str]) -> list[int]:
    statuses: list[int] = []
    for start in range(0, len(imeis), 1_000):
        answer = client.call(
            client.check.CheckEquipmentBatch,
            check_pb.CheckEquipmentBatchRequest(
                checks=[
                    check_pb.CheckEquipmentRequest(imei=value)
                    for value in imeis[start : start + 1_000]
                ]
            ),
        )
        statuses.extend(result.status for result in answer.results)
    return statuses


def eventually_all(client: Client, imeis: list[str], status: int, what: str) -> None:
    """Poll the server's checks until every IMEI has ``status`` (a deadline, not a bound)."""
    deadline = time.monotonic() + SEEN_WITHIN
    while True:
        got = statuses(client, imeis)
        missing = [value for value, seen in zip(imeis, got, strict=True) if seen != status]
        if not missing:
            return
        assert time.monotonic() < deadline, f"{what}: {len(missing)} not seen, e.g. {missing[:3]}"
        time.sleep(0.05)


def head_of(engine: sqlalchemy.Engine) -> int:
    """The database's head, after checking the change table is exactly 1..head."""
    with engine.connect() as connection:
        sequences = [
            int(row[0])
            for row in connection.exec_driver_sql("SELECT sequence FROM changes ORDER BY sequence")
        ]
        last = int(
            connection.exec_driver_sql("SELECT last_sequence FROM register_state").scalar_one()
        )
    assert sequences == list(range(1, len(sequences) + 1)), "a gap or a duplicate sequence"
    assert last == len(sequences), f"last_sequence {last}, {len(sequences)} changes"
    return last


def count_kind(engine: sqlalchemy.Engine, kind: ChangeKind, tac: int) -> dict[int, int]:
    """Changes of ``kind`` per IMEI key of one TAC."""
    low, high = tac * 1_000_000, (tac + 1) * 1_000_000
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT imei_key, count(*) FROM changes WHERE kind = %(kind)s"
            " AND imei_key >= %(low)s AND imei_key < %(high)s GROUP BY imei_key",
            {"kind": int(kind), "low": low, "high": high},
        )
        return {int(key): int(count) for key, count in rows}


def feed(client: Client, head: int, key: Verifier) -> list[bytes]:
    """Every change of the server's WatchChanges from 0 to ``head``, serialised, after
    checking each message's signed checkpoint against the replay of the changes so far."""
    changes: list[bytes] = []
    frontier = Frontier()
    stream = client.sync.WatchChanges(
        sync_pb.WatchChangesRequest(after_sequence=0), metadata=client.metadata, timeout=120
    )
    try:
        for message in stream:
            for change in message.changes:
                assert change.sequence == len(changes) + 1, "the feed skipped or repeated"
                frontier.append(leaf_hash(change))
                changes.append(change.SerializeToString())
            checkpoint = open_checkpoint(message.checkpoint, [key], DEFAULT_ORIGIN)
            assert checkpoint.size == len(changes)
            assert checkpoint.root_hash == frontier.root(), f"root at {len(changes)}"
            if len(changes) >= head:
                break
    finally:
        stream.cancel()  # type: ignore[no-untyped-call]
    assert len(changes) == head
    return changes


def latest_checkpoint(client: Client, key: Verifier) -> Checkpoint:
    answer = client.call(client.log.GetCheckpoint, transparency_pb2.GetCheckpointRequest())
    return open_checkpoint(answer.checkpoint, [key], DEFAULT_ORIGIN)


def until_size(client: Client, key: Verifier, size: int) -> Checkpoint:
    """The server's latest checkpoint, once the server has followed to ``size``."""
    deadline = time.monotonic() + SEEN_WITHIN
    while (checkpoint := latest_checkpoint(client, key)).size < size:
        assert time.monotonic() < deadline, f"stuck at {checkpoint.size}, the head is {size}"
        time.sleep(0.05)
    assert checkpoint.size == size
    return checkpoint


def assert_same_log(first: Client, second: Client, key: Verifier, head: int) -> list[bytes]:
    """Both servers: the same root at ``head``, the same inclusion proofs, the same feed."""
    at_first, at_second = until_size(first, key, head), until_size(second, key, head)
    assert at_first.root_hash == at_second.root_hash
    changes = feed(first, head, key)
    assert feed(second, head, key) == changes, "the two servers' feeds differ"
    for sequence in sorted({1, head // 3, head // 2, head - 1, head} - {0}):
        proofs = [
            client.call(
                client.log.GetInclusionProof,
                transparency_pb2.GetInclusionProofRequest(sequence=sequence, tree_size=head),
            )
            for client in (first, second)
        ]
        assert list(proofs[0].hashes) == list(proofs[1].hashes), sequence
        change = types_pb2.ListChange.FromString(changes[sequence - 1])
        verify_inclusion(
            leaf_hash(change), sequence - 1, head, list(proofs[0].hashes), at_first.root_hash
        )
    return changes


# --- the test ------------------------------------------------------------------------------


def test_two_servers_on_one_database_write_at_once_and_survive_a_kill(
    servers: tuple[Served, Served],
    tokens: dict[str, str],
    log_key: tuple[Path, Verifier],
    inspect: sqlalchemy.Engine,
) -> None:
    a, b = servers
    key = log_key[1]
    registrar = {s.name: s.client(tokens["kemenperin"]) for s in servers}
    operator = {s.name: s.client(tokens["telkomsel"]) for s in servers}

    # 1. Writes through both at once.
    work = Workload()
    raced: dict[str, dict[int, registry_pb2.RegisterDeviceResponse]] = {"a": {}, "b": {}}
    barrier = threading.Barrier(2)
    for offset, (server, tac) in enumerate(((a, TAC_A), (b, TAC_B))):
        name = server.name
        for half in range(2):
            indexes = range(half * PER_WRITER, (half + 1) * PER_WRITER)
            work.run(f"{name}-register-{half}", register_range(registrar[name], tac, indexes, "p1"))
        stolen = range(offset * STOLEN, (offset + 1) * STOLEN)
        work.run(f"{name}-stolen", report_stolen(operator[name], stolen))
        work.run(f"{name}-pair", pair_exceptions(operator[name], stolen))
        work.run(f"{name}-sight", sight_unregistered(operator[name]))
        work.run(f"{name}-race", race_request_ids(registrar[name], barrier, raced[name]))
    work.join()

    # A raced request id has one answer, whichever server was asked.
    assert raced["a"] == raced["b"]
    assert len({answer.sequence for answer in raced["a"].values()}) == RACED
    # Each server's checks see what was written through the other.
    registered_a = [imei(i, tac=TAC_A) for i in range(2 * PER_WRITER)]
    registered_b = [imei(i, tac=TAC_B) for i in range(2 * PER_WRITER)]
    whitelisted, blacklisted = (
        types_pb2.EQUIPMENT_STATUS_WHITELISTED,
        types_pb2.EQUIPMENT_STATUS_BLACKLISTED,
    )
    eventually_all(operator["b"], registered_a, whitelisted, "B, devices registered through A")
    eventually_all(operator["a"], registered_b, whitelisted, "A, devices registered through B")
    stolen_all = [imei(i, tac=TAC_STOLEN) for i in range(2 * STOLEN)]
    for name in ("a", "b"):
        eventually_all(operator[name], stolen_all, blacklisted, f"{name}, stolen devices")

    # Every write is one change, numbered without a gap; each sighting was
    # recorded once though both servers checked it at once.
    head = head_of(inspect)
    added = count_kind(inspect, ChangeKind.WHITELIST_ADDED, TAC_RACED)
    assert sorted(added.values()) == [1] * RACED
    for tac in (TAC_A, TAC_B):
        assert sorted(count_kind(inspect, ChangeKind.WHITELIST_ADDED, tac).values()) == [1] * (
            2 * PER_WRITER
        )
    sighted = count_kind(inspect, ChangeKind.NOTIFICATION_NEW, TAC_SIGHTED)
    assert sorted(sighted.values()) == [1] * SIGHTED
    expected = 4 * PER_WRITER + RACED + 2 * STOLEN + 2 * PAIRED + SIGHTED
    assert head == expected, f"{head} changes for {expected} writes"
    assert_same_log(operator["a"], operator["b"], key, head)

    # 2. A is killed while both take writes; B goes on; A restarts while B writes.
    acked: dict[str, dict[int, registry_pb2.RegisterDeviceResponse]] = {"a": {}, "b": {}}
    stopping = threading.Event()
    killed = threading.Event()
    lost: list[str] = []
    counter = itertools.count()
    lock = threading.Lock()

    def writer(name: str) -> Callable[[], None]:
        def work() -> None:
            while not stopping.is_set():
                with lock:
                    index = next(counter)
                client = registrar[name]
                try:
                    answer = client.call(
                        client.registry.RegisterDevice,
                        registration(TAC_KILL, index, f"kill-{index}"),
                    )
                except grpc.RpcError as error:
                    if name == "a" and killed.is_set():
                        return  # the kill: this call may or may not have committed
                    lost.append(f"{name} #{index}: {error.code()} {error.details()}")
                    return
                acked[name][index] = answer

        return work

    during = Workload()
    for name in ("a", "a", "b", "b"):
        during.run(f"{name}-writer", writer(name))
    wait_for(lambda: len(acked["a"]) >= 30 and len(acked["b"]) >= 30, "acks before the kill")
    killed.set()
    a.kill()
    after_kill = len(acked["b"])
    wait_for(lambda: len(acked["b"]) >= after_kill + 50, "B's writes after the kill")
    # B answers checks of what was written through A before it died.
    eventually_all(operator["b"], [imei(i, tac=TAC_KILL) for i in acked["a"]], whitelisted, "B")

    a.start()  # the start-up proof runs while B writes
    restarted = a.client(tokens["telkomsel"])
    registrar["a"] = a.client(tokens["kemenperin"])
    before_stop = len(acked["b"])
    wait_for(lambda: len(acked["b"]) >= before_stop + 30, "B's writes after A's restart")
    stopping.set()
    during.join()
    assert not lost, lost[:5]

    # A has caught up with everything B took while A was dead or starting.
    every_acked = sorted(set(acked["a"]) | set(acked["b"]))
    eventually_all(restarted, [imei(i, tac=TAC_KILL) for i in every_acked], whitelisted, "A")
    # And takes writes again, which B sees.
    answer = registrar["a"].call(
        registrar["a"].registry.RegisterDevice, registration(TAC_KILL, 10**5, "after-restart")
    )
    assert answer.sequence > head
    eventually_all(operator["b"], [imei(10**5, tac=TAC_KILL)], whitelisted, "B after restart")

    head = head_of(inspect)
    kill_added = count_kind(inspect, ChangeKind.WHITELIST_ADDED, TAC_KILL)
    assert set(kill_added.values()) == {1}
    for index in every_acked:
        assert int(imei(index, tac=TAC_KILL)[:14]) in kill_added, index
    assert_same_log(restarted, operator["b"], key, head)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + SEEN_WITHIN
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_a_server_frozen_holding_the_write_lock_stops_the_others_writes_only_for_a_while(
    servers: tuple[Served, Served], tokens: dict[str, str], pg_url: str
) -> None:
    """A server frozen (SIGSTOP: a hung host, a cut network) right after it took
    the write lock: PostgreSQL ends its idle transaction after
    ``WRITE_IDLE_TIMEOUT_MS`` and the other server writes again; the frozen
    server's write commits nothing, and its retry registers the device once."""
    a, b = servers
    through_a, through_b = a.client(tokens["kemenperin"]), b.client(tokens["kemenperin"])
    frozen_request = registration(TAC_KILL, 1, "frozen")
    outcome: list[str] = []
    dsn = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as holder:
        # Hold the write lock, so A's write waits for it inside its transaction.
        holder.execute("UPDATE register_state SET last_sequence = last_sequence")

        def write_through_a() -> None:
            try:
                through_a.call(through_a.registry.RegisterDevice, frozen_request)
                outcome.append("committed")
            except grpc.RpcError as error:
                outcome.append(str(error.code()))

        writer = threading.Thread(target=write_through_a, daemon=True)
        writer.start()
        wait_for(lambda: _waiting_for_a_lock(holder), "A's write waiting for the lock")
        assert a.process is not None
        a.process.send_signal(signal.SIGSTOP)
        holder.commit()  # A's transaction takes the lock, then A never speaks again
    try:
        # Waits for PostgreSQL to end A's transaction (WRITE_IDLE_TIMEOUT_MS).
        answer = through_b.registry.RegisterDevice(
            registration(TAC_KILL, 2, "while-a-is-frozen"),
            metadata=through_b.metadata,
            timeout=SEEN_WITHIN + WRITE_IDLE_TIMEOUT_MS / 1_000,
        )
        assert answer.sequence == 1
    finally:
        a.process.send_signal(signal.SIGCONT)
    writer.join(timeout=60)
    assert outcome and outcome != ["committed"], outcome
    retried = through_a.call(through_a.registry.RegisterDevice, frozen_request)
    assert retried.sequence == 2
    eventually_all(
        b.client(tokens["telkomsel"]),
        [imei(1, tac=TAC_KILL), imei(2, tac=TAC_KILL)],
        types_pb2.EQUIPMENT_STATUS_WHITELISTED,
        "B",
    )


def _waiting_for_a_lock(holder: psycopg.Connection[tuple[object, ...]]) -> bool:
    """Whether another session waits for a lock (A's write, for the state row)."""
    with psycopg.connect(holder.info.dsn, autocommit=True) as look:
        row = look.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        ).fetchone()
    return row is not None and int(str(row[0])) > 0

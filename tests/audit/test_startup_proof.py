"""The proof a server gives on every start: its own log verifies, its lists are
the log's replay, and ``--repair`` rebuilds differing list rows, never a log.

Every test builds a register through its API on a real database (a SQLite
file, then a throwaway PostgreSQL), changes it behind the server's back, and
starts a server on it.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from ceir.api.server import RunningServer, ServerConfig, create_server
from ceir.audit import encode_change, leaf_hash
from ceir.domain.commands import RevokeRegistration
from ceir.domain.identifiers import full_imei
from ceir.domain.lists import ListState
from ceir.domain.model import Caller, Change, OrgKind
from ceir.service.clock import ManualClock
from ceir.service.list_audit import ListsNotFromLog
from ceir.service.list_repair import ListsNotRepairable
from ceir.service.merkle_log import DEFAULT_ORIGIN
from ceir.service.register import Committed, load_state
from ceir.service.startup_proof import (
    CHUNK_LEVEL,
    PARALLEL_FROM,
    LogNotVerified,
    _Verified,
    verify_and_replay,
)
from ceir.storage import repository as repo
from ceir.storage.database import Database
from ceir.v1 import equipment_check_pb2, types_pb2

from ..helpers import TELKOMSEL_IMSI, Client, imei
from ..test_bulk_import import BEFORE_0007
from ..test_transparency import alter, cli, populate
from .test_audit_lists import (  # noqa: F401  # root_logging is a fixture
    TABLES,
    TAMPERING,
    _audit,
    _key,
    root_logging,
)

KEMENPERIN = Caller("kemenperin", OrgKind.KEMENPERIN)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    """The custodian's signing key (PEM)."""
    from ceir.audit import generate_signing_key, save_private_key

    path = tmp_path / "custodian.pem"
    save_private_key(generate_signing_key(), path)
    return path


@pytest.fixture
def server(
    db_url: str, tokens: dict[str, str], clock: ManualClock, key_file: Path
) -> Iterator[RunningServer]:
    """A server signing with the custodian's key, as in production."""
    running = create_server(_config(db_url, clock=clock, signing_key=key_file))
    yield running
    running.stop(grace=1)
    gc.collect()


def _config(db_url: str, **settings: Any) -> ServerConfig:
    config = ServerConfig(db=db_url, address="127.0.0.1:0", insecure=True, access_log=False)
    return dataclasses.replace(config, **settings)


@pytest.fixture
def register(clients: dict[str, Client], server: RunningServer, db_url: str) -> str:
    """Twelve changes of every list, written through the API; the database URL."""
    populate(clients)
    assert _audit(db_url).ok
    return db_url


def _start(config: ServerConfig) -> None:
    """Start a server on the database and stop it again."""
    create_server(config).stop(grace=0)


def _refused_log(config: ServerConfig) -> LogNotVerified:
    with pytest.raises(LogNotVerified) as refused:
        _start(config)
    return refused.value


def _change(db_url: str, sequence: int) -> Change:
    db = Database(db_url)
    try:
        with db.read() as connection:
            return repo.changes_after(connection, sequence - 1, 1)[0]
    finally:
        db.dispose()


# --- the log verifies itself --------------------------------------------------------------


def test_a_change_row_edited_with_its_leaf_hash_kept_refuses_start_and_fails_the_audit(
    register: str, key_file: Path
) -> None:
    alter(register, "UPDATE changes SET device_id = 'forged' WHERE sequence = 3")
    refused = _refused_log(_config(register, signing_key=key_file))
    assert refused.sequence == 3
    assert "change 3 (WHITELIST_ADDED" in str(refused) and "was altered" in str(refused)
    result = cli("audit", "verify", "--db", register)
    assert result.exit_code == 1, result.output
    assert "change 3 " in result.output


@pytest.mark.usefixtures("root_logging")
def test_ceir_serve_exits_1_naming_an_edited_change(register: str) -> None:
    alter(register, "UPDATE changes SET valid_until_us = 1 WHERE sequence = 4")
    result = cli("serve", "--db", register, "--insecure", "--listen", "127.0.0.1:0")
    assert result.exit_code == 1, result.output
    assert "change 4 (WHITELIST_ADDED" in result.output
    assert "does not verify" in result.output


@pytest.mark.parametrize(("sequence", "named"), [(5, "change 5 is missing"), (12, "deleted")])
def test_a_deleted_change_row_refuses_start_and_fails_the_audit(
    register: str, key_file: Path, sequence: int, named: str
) -> None:
    alter(register, f"DELETE FROM changes WHERE sequence = {sequence}")
    refused = _refused_log(_config(register, signing_key=key_file))
    assert refused.sequence == sequence
    assert named in str(refused)
    assert cli("audit", "verify", "--db", register).exit_code == 1


def test_a_change_row_rewritten_with_a_new_leaf_hash_is_caught_by_the_signed_root(
    register: str, key_file: Path
) -> None:
    """An insider who recomputes the edited change's leaf hash still cannot
    match the root the server signed."""
    edited = dataclasses.replace(_change(register, 3), device_id="forged")
    digest = leaf_hash(encode_change(edited)).hex()
    literal = f"'\\x{digest}'::bytea" if register.startswith("postgresql") else f"X'{digest}'"
    alter(
        register,
        f"UPDATE changes SET device_id = 'forged', leaf_hash = {literal} WHERE sequence = 3",
    )
    refused = _refused_log(_config(register, signing_key=key_file))
    assert "the checkpoint of size 12 signed" in str(refused)
    # Without the key the root is still compared with the stored checkpoint's.
    assert "the checkpoint of size 12" in str(_refused_log(_config(register)))


def test_a_checkpoint_not_signed_by_the_servers_key_refuses_start(
    register: str, tmp_path: Path
) -> None:
    from ceir.audit import generate_signing_key, save_private_key

    other = tmp_path / "other.pem"
    save_private_key(generate_signing_key(), other)
    refused = _refused_log(_config(register, signing_key=other))
    assert "not signed by this server's key" in str(refused)


def _import(server: RunningServer, count: int) -> None:
    """``count`` single-IMEI devices through the register's import path."""
    from benchmarks.trust import _chunk

    outcome = server.register.execute(KEMENPERIN, _chunk(0, 0, count))
    assert isinstance(outcome, Committed) and outcome.value.rows_accepted == count


def test_a_tampered_tree_node_refuses_start(
    db_url: str, server: RunningServer, key_file: Path
) -> None:
    _import(server, 300)  # node (8, 0) covers changes 1 to 256
    alter(
        db_url,
        "UPDATE tree_nodes SET hash = (SELECT leaf_hash FROM changes WHERE sequence = 1) "
        "WHERE level = 8",
    )
    refused = _refused_log(_config(db_url, signing_key=key_file))
    assert refused.sequence == 1
    assert "tree node (8, 0) over changes 1 to 256" in str(refused)
    assert cli("audit", "verify", "--db", db_url).exit_code == 1


def test_a_register_that_verifies_starts_and_answers_from_the_replayed_lists(
    register: str, key_file: Path, tokens: dict[str, str]
) -> None:
    running = create_server(_config(register, signing_key=key_file))
    try:
        assert running.register.state.sequence == 12
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            answer = Client(channel, tokens["telkomsel"]).check_imei(imei(1))
        assert answer.status == types_pb2.EQUIPMENT_STATUS_BLACKLISTED
    finally:
        running.stop(grace=0)


# --- repair -------------------------------------------------------------------------------


@pytest.mark.parametrize("tamper", ["inserted", "deleted", "altered"])
@pytest.mark.parametrize("table", TABLES)
def test_repair_rewrites_a_list_row_from_the_log_reports_it_and_serves(
    register: str, key_file: Path, table: str, tamper: str
) -> None:
    named, statement = TAMPERING[(table, tamper)]
    alter(register, statement)
    with pytest.raises(ListsNotFromLog):
        _start(_config(register, signing_key=key_file))
    lines: list[str] = []
    running = create_server(
        _config(register, signing_key=key_file, repair_lists=True, repair_report=lines.append)
    )
    running.stop(grace=0)
    # An exception pair with another IMSI is a row inserted and one deleted.
    assert any(named in line for line in lines), lines
    assert all(line.split(": ", 1)[0] in ("deleted", "restored", "updated") for line in lines)
    assert _audit(register).ok, _audit(register).problems
    _start(_config(register, signing_key=key_file))  # no repair needed any more


def test_a_repaired_row_names_its_change_and_values(register: str, key_file: Path) -> None:
    alter(register, TAMPERING[("whitelist", "altered")][1])
    alter(register, TAMPERING[("whitelist", "inserted")][1])
    alter(register, TAMPERING[("whitelist", "deleted")][1])
    lines: list[str] = []
    _start(_config(register, signing_key=key_file, repair_lists=True, repair_report=lines.append))
    assert lines == [
        f"restored: whitelist row for IMEI key {_key(0)} deleted behind the log: the table "
        # A one-slot device: '', its latest registration's (migration 0007).
        f"holds no row, the log gives (device_id='', "
        "valid_until_us=None); change 1 (WHITELIST_ADDED) added it and no later change "
        "removed it",
        f"updated: whitelist row for IMEI key {_key(4)} altered behind the log: "
        "valid_until_us is 1600000000000000 in the table, change 5 (WHITELIST_ADDED) set None",
        f"deleted: whitelist row for IMEI key {_key(900)} inserted behind the log: the log "
        "gives no row, the table holds (device_id='D1', valid_until_us=None); no change "
        "explains it",
    ]


def _before_the_log(db_url: str) -> None:
    """Make the register one from before the Merkle log and leaf version 2:
    version 1 changes without stored leaf hashes, tree nodes or checkpoints,
    with device rows and ids as before migration 0007."""
    db = Database(db_url)
    try:
        with db.write() as session:
            for statement in (
                *BEFORE_0007,
                "UPDATE changes SET leaf_version = 1, leaf_hash = NULL",
                "DELETE FROM tree_nodes",
                "DELETE FROM checkpoints",
            ):
                session.connection().exec_driver_sql(statement)
    finally:
        db.dispose()


def test_repair_rebuilds_version_1_rows_in_the_columns_the_log_carries(
    register: str,
) -> None:
    _before_the_log(register)
    alter(register, TAMPERING[("whitelist", "deleted")][1])
    alter(register, TAMPERING[("blacklist", "altered")][1])
    alter(register, "UPDATE blacklist SET police_report = 'P-9' WHERE cause = 1")  # not in v1
    lines: list[str] = []
    _start(_config(register, repair_lists=True, repair_report=lines.append))
    assert [line.split(" behind", 1)[0] for line in lines] == [
        f"restored: whitelist row for IMEI key {_key(0)} deleted",
        f"updated: blacklist row for IMEI key {_key(2)} altered",
    ]
    problems = _audit(register).problems  # the repaired lists; no checkpoint was ever signed
    assert problems == ["the log holds no signed checkpoint"], problems


def test_repair_refuses_a_deleted_row_the_log_cannot_rebuild_and_repairs_nothing(
    register: str,
) -> None:
    _before_the_log(register)
    alter(register, TAMPERING[("whitelist", "deleted")][1])
    alter(register, TAMPERING[("devices", "deleted")][1])  # version 1 carries no device column
    lines: list[str] = []
    with pytest.raises(ListsNotRepairable) as refused:
        _start(_config(register, repair_lists=True, repair_report=lines.append))
    assert lines == []
    assert [row.split(" deleted", 1)[0] for row in refused.value.rows] == [
        "devices row for device D11"
    ]
    assert "leaf version 1 does not carry its other columns" in str(refused.value)
    problems = _audit(register).problems  # nothing was repaired
    assert any(p.startswith(TAMPERING[("whitelist", "deleted")][0]) for p in problems)


def test_the_replayed_lists_are_what_load_state_loads_from_the_tables(
    register: str, key_file: Path, clients: dict[str, Client]
) -> None:
    clients["telkomsel"].check_imei(imei(501), msisdn="+6281100000001")  # a known MSISDN
    db = Database(register)
    try:
        with db.read_snapshot() as connection:
            loaded = load_state(connection)
    finally:
        db.dispose()
    replayed = _verified(register, key_file).state
    # The register has salted pairs and a notified MSISDN: they must reach memory.
    assert loaded.notification_salts and loaded.exception_salts and loaded.msisdns
    assert _plain(replayed) == _plain(loaded)


def _plain(state: ListState) -> dict[str, object]:
    """Every list of a state as plain, comparable values."""
    columns = state.columns()
    plain: dict[str, object] = {
        name: getattr(columns, name).tolist()
        for name in (
            "whitelist_keys",
            "whitelist_valid_until_us",
            "blacklist_keys",
            "blacklist_causes",
            "blacklist_block_date_us",
        )
    }
    plain.update(
        sequence=columns.sequence,
        policy=columns.policy,
        notifications=sorted(columns.notifications),
        exceptions=sorted(columns.exceptions),
        sizes=state.sizes(),
    )
    return plain


def test_repair_refuses_a_log_that_fails_its_own_verification(
    register: str, key_file: Path
) -> None:
    alter(register, TAMPERING[("whitelist", "inserted")][1])
    alter(register, "UPDATE changes SET device_id = 'forged' WHERE sequence = 2")
    lines: list[str] = []
    with pytest.raises(LogNotVerified) as refused:
        _start(
            _config(register, signing_key=key_file, repair_lists=True, repair_report=lines.append)
        )
    assert refused.value.sequence == 2 and "Nothing was repaired" in str(refused.value)
    assert lines == []
    db = Database(register)
    try:
        with db.read() as connection:  # the forged row is still there
            keys = [
                row.imei_key
                for rows in repo.iter_rows(connection, "whitelist", ("imei_key",), 100)
                for row in rows
            ]
        assert int(_key(900)) in keys
    finally:
        db.dispose()


# --- ceir serve --repair, as a process ---------------------------------------------------


def _serve(*args: str) -> subprocess.Popen[str]:
    ceir = str(Path(sys.executable).parent / "ceir")
    command = [ceir, "serve", "--insecure", "--listen", "127.0.0.1:0"]
    return subprocess.Popen(
        [*command, *args], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )


def _until_serving(process: subprocess.Popen[str], timeout: float = 60) -> tuple[int, list[str]]:
    """The port from the ``serving`` log line, and every stderr line before it.

    Reads the pipe's file descriptor in chunks: a selector over the text
    stream would miss lines a ``readline`` had already buffered."""
    assert process.stderr is not None
    descriptor = process.stderr.fileno()
    lines: list[str] = []
    pending = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(descriptor, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(timeout=deadline - time.monotonic()):
                break
            chunk = os.read(descriptor, 65_536)
            if not chunk:
                break
            *complete, pending = (pending + chunk).split(b"\n")
            for raw in complete:
                line = raw.decode() + "\n"
                lines.append(line)
                if line.startswith("{") and json.loads(line).get("msg") == "serving":
                    return int(json.loads(line)["port"]), lines
    process.kill()
    lines.append(pending.decode() + process.communicate()[1])
    raise AssertionError("the server did not start: " + "".join(lines))


def test_ceir_serve_repair_prints_every_row_it_changed_then_serves(
    register: str, tokens: dict[str, str]
) -> None:
    alter(register, TAMPERING[("blacklist", "deleted")][1])  # IMEI 1 was reported stolen
    alter(register, TAMPERING[("whitelist", "inserted")][1])
    process = _serve("--db", register, "--repair", "--no-access-log")
    try:
        port, lines = _until_serving(process)
        repaired = [line for line in lines if line.startswith("repaired: ")]
        assert len(repaired) == 2, lines
        assert repaired[0].startswith(f"repaired: deleted: whitelist row for IMEI key {_key(900)}")
        assert repaired[1].startswith(f"repaired: restored: blacklist row for IMEI key {_key(1)}")
        assert "change 7 (BLACKLIST_BLOCKED) added it" in repaired[1]
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            client = Client(channel, tokens["telkomsel"])
            stolen = client.check_imei(imei(1))
            assert stolen.status == types_pb2.EQUIPMENT_STATUS_BLACKLISTED
            forged = client.call(
                client.check.CheckEquipment,
                equipment_check_pb2.CheckEquipmentRequest(imei=imei(900), imsi=TELKOMSEL_IMSI),
            )
            assert forged.status != types_pb2.EQUIPMENT_STATUS_WHITELISTED
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)  # drains and closes stderr
    assert process.returncode == 0
    assert _audit(register).ok


def test_ceir_serve_help_documents_repair() -> None:
    result = cli("serve", "--help")
    assert "--repair" in result.output
    assert "verifies the stored change log" in " ".join(result.output.split())


# --- the later changes in a second process -------------------------------------------------


@pytest.fixture
def longer(db_url: str, server: RunningServer, clients: dict[str, Client]) -> str:
    """700 imports, then changes of every list and revocations of earlier
    imports, so that the second process's range removes rows of the first's."""
    _import(server, 700)
    populate(clients)
    revoked = tuple(35_000_000_000_000 + n for n in (3, 100, 650))
    server.register.execute(KEMENPERIN, RevokeRegistration(revoked, "test"))
    return db_url


def _verified(db_url: str, key_file: Path, **parallel: int) -> _Verified:
    from ceir.audit import Signer, load_private_key

    verifier = Signer(DEFAULT_ORIGIN, load_private_key(key_file)).verifier
    db = Database(db_url)
    try:
        with db.read_snapshot() as connection:
            return verify_and_replay(
                connection,
                verifier,
                DEFAULT_ORIGIN,
                parallel_from=parallel.get("parallel_from", PARALLEL_FROM),
                chunk_level=parallel.get("chunk_level", CHUNK_LEVEL),
            )
    finally:
        db.dispose()


_IN_TWO = {"parallel_from": 0, "chunk_level": 8}  # split at change 256


def test_two_processes_give_the_log_and_lists_one_process_gives(
    longer: str, key_file: Path
) -> None:
    alone, split = _verified(longer, key_file), _verified(longer, key_file, **_IN_TWO)
    assert (split.size, split.root, split.signature_checked) == (alone.size, alone.root, True)
    assert {name: dict(rows) for name, rows in split.replayed.rows.items()} == {
        name: dict(rows) for name, rows in alone.replayed.rows.items()
    }
    for name in (
        "sequence",
        "policy",
        "exceptions",
        "notified",
        "msisdns",
        "notification_salts",
        "exception_salts",
    ):
        assert getattr(split.state, name) == getattr(alone.state, name), name
    split_lists, alone_lists = split.state.columns(), alone.state.columns()
    for column in (
        "whitelist_keys",
        "whitelist_valid_until_us",
        "blacklist_keys",
        "blacklist_causes",
        "blacklist_block_date_us",
    ):
        assert getattr(split_lists, column).tolist() == getattr(alone_lists, column).tolist()
    assert not split.state.is_whitelisted(int(full_imei(35_000_000_000_000 + 100)[:14]))
    assert split.state.sizes()["whitelist"] == 700 + 8 - 3


@pytest.mark.parametrize("sequence", [10, 600])
def test_two_processes_name_an_edited_change_in_either_range(
    longer: str, key_file: Path, sequence: int
) -> None:
    alter(longer, f"UPDATE changes SET device_id = 'forged' WHERE sequence = {sequence}")
    with pytest.raises(LogNotVerified) as refused:
        _verified(longer, key_file, **_IN_TWO)
    assert refused.value.sequence == sequence


@pytest.mark.parametrize(("level", "index", "first"), [(8, 1, 257), (8, 0, 1)])
def test_two_processes_name_a_tampered_tree_node_in_either_range(
    longer: str, key_file: Path, level: int, index: int, first: int
) -> None:
    alter(
        longer,
        "UPDATE tree_nodes SET hash = (SELECT leaf_hash FROM changes WHERE sequence = 1) "
        f'WHERE level = {level} AND "index" = {index}',
    )
    with pytest.raises(LogNotVerified) as refused:
        _verified(longer, key_file, **_IN_TWO)
    assert refused.value.sequence == first

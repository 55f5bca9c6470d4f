"""A start from a list checkpoint: the lists at a signed tree size, then the log after it.

Every test builds a register through its API on a real database, lets the
server write its list checkpoint to a real file, and starts again; the
checks are on what the start-up proof says it did (sizes, counters, log
lines), never on how long it took.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
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
from ceir.audit import Frontier, Signer, Verifier, generate_signing_key, load_private_key
from ceir.domain.identifiers import imei_key
from ceir.service.list_audit import ListsNotFromLog
from ceir.service.list_checkpoint import load_checkpoint, write_checkpoint
from ceir.service.merkle_log import DEFAULT_ORIGIN, CheckpointSigner
from ceir.service.startup_proof import LogNotVerified, StartupProof, prove_at_start
from ceir.storage.database import Database
from ceir.storage.list_checkpoint_file import columns_digest, read_file
from ceir.v1 import types_pb2

from ..helpers import Client, imei
from ..test_transparency import alter, cli, populate

KEY_NAME = DEFAULT_ORIGIN


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    from ceir.audit import save_private_key

    path = tmp_path / "custodian.pem"
    save_private_key(generate_signing_key(), path)
    return path


@pytest.fixture
def lists_file(tmp_path: Path) -> Path:
    return tmp_path / "ceir.db.lists"


def _config(db_url: str, **settings: Any) -> ServerConfig:
    config = ServerConfig(db=db_url, address="127.0.0.1:0", insecure=True, access_log=False)
    return dataclasses.replace(config, **settings)


@pytest.fixture
def server(db_url: str, tokens: dict[str, str], key_file: Path) -> Iterator[RunningServer]:
    """A server signing with the custodian's key and writing no list checkpoint."""
    running = create_server(_config(db_url, signing_key=key_file))
    yield running
    running.stop(grace=1)
    gc.collect()


def _verifier(key_file: Path) -> Verifier:
    return Signer(KEY_NAME, load_private_key(key_file)).verifier


def _prove(db_url: str, key_file: Path, lists_file: Path | None) -> StartupProof:
    db = Database(db_url)
    try:
        return prove_at_start(db, _verifier(key_file), KEY_NAME, list_checkpoint=lists_file)
    finally:
        db.dispose()


@pytest.fixture
def checkpointed(
    db_url: str, clients: dict[str, Client], server: RunningServer, key_file: Path, lists_file: Path
) -> str:
    """Twelve changes, a list checkpoint of them (written by a server's clean
    shutdown), then two registrations after it; the database URL."""
    populate(clients)
    writer = create_server(_config(db_url, signing_key=key_file, list_checkpoint=lists_file))
    writer.stop(grace=0)
    assert load_checkpoint(lists_file, [_verifier(key_file)], KEY_NAME) is not None
    clients["kemenperin"].register(imei(20))  # changes 13 and 14: the tail
    clients["kemenperin"].register(imei(21))
    return db_url


def test_a_clean_shutdown_writes_the_lists_at_the_log_size(
    checkpointed: str, lists_file: Path, key_file: Path
) -> None:
    loaded = load_checkpoint(lists_file, [_verifier(key_file)], KEY_NAME)
    assert loaded is not None
    assert loaded.statement.size == loaded.columns.sequence == 12
    full = _prove(checkpointed, key_file, None)
    assert Frontier(12, loaded.statement.frontier).size == 12
    assert len(loaded.columns.whitelist_keys) + 2 == full.state.sizes()["whitelist"]


def test_a_start_from_the_checkpoint_replays_only_the_changes_after_it(
    checkpointed: str, lists_file: Path, key_file: Path
) -> None:
    proof = _prove(checkpointed, key_file, lists_file)
    full = _prove(checkpointed, key_file, None)
    assert proof.list_checkpoint_size == 12 and proof.replayed_changes == 2
    assert full.list_checkpoint_size is None and full.replayed_changes == 14
    assert (proof.size, proof.root, proof.frontier) == (full.size, full.root, full.frontier)
    assert columns_digest(proof.state.columns()) == columns_digest(full.state.columns())


def test_ceir_serve_starts_from_the_checkpoint_and_answers(
    checkpointed: str, lists_file: Path, key_file: Path, tokens: dict[str, str]
) -> None:
    from .test_startup_proof import _serve, _until_serving

    process = _serve(
        "--db", checkpointed, "--signing-key", str(key_file), "--list-checkpoint", str(lists_file)
    )
    try:
        port, lines = _until_serving(process)
        passed = [line for line in lines if '"start-up proof passed"' in line]
        assert len(passed) == 1, lines
        assert '"list_checkpoint_size": 12' in passed[0]
        assert '"replayed_changes": 2' in passed[0]
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            answer = Client(channel, tokens["telkomsel"]).check_imei(imei(21))
        assert answer.status == types_pb2.EQUIPMENT_STATUS_WHITELISTED
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    assert process.returncode == 0
    loaded = load_checkpoint(lists_file, [_verifier(key_file)], KEY_NAME)
    assert loaded is not None and loaded.statement.size == 14  # rewritten at shutdown


# --- a checkpoint that fails its checks: an alarm, then the full proof ---------------------


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # the last column's last byte
    path.write_bytes(bytes(data))


def _signed_by_another_key(path: Path, key_file: Path) -> None:
    stored = read_file(path)
    other = CheckpointSigner(KEY_NAME, Signer(KEY_NAME, generate_signing_key()))
    frontier = Frontier(stored.columns.sequence, _statement_frontier(path, key_file))
    write_checkpoint(path, stored.columns, frontier, other)


def _another_root(path: Path, key_file: Path) -> None:
    """A statement, signed with the right key, for a tree the log is not."""
    stored = read_file(path)
    frontier = Frontier(stored.columns.sequence, [bytes(32)] * stored.columns.sequence.bit_count())
    own = CheckpointSigner(KEY_NAME, Signer(KEY_NAME, load_private_key(key_file)))
    write_checkpoint(path, stored.columns, frontier, own)


def _statement_frontier(path: Path, key_file: Path) -> tuple[bytes, ...]:
    loaded = load_checkpoint(path, [_verifier(key_file)], KEY_NAME)
    assert loaded is not None
    return loaded.statement.frontier


@pytest.mark.parametrize(
    ("tamper", "named"),
    [
        (lambda path, _key: _flip_last_byte(path), "the lists in the file were altered"),
        (_signed_by_another_key, "its statement is refused"),
        (_another_root, "is not the one"),
    ],
    ids=["flipped-byte", "wrong-signature", "another-root"],
)
def test_a_tampered_checkpoint_is_refused_with_an_alarm_and_the_full_proof_runs(
    checkpointed: str,
    lists_file: Path,
    key_file: Path,
    tamper: Any,
    named: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tamper(lists_file, key_file)
    with caplog.at_level(logging.INFO, logger="ceir.startup_proof"):
        proof = _prove(checkpointed, key_file, lists_file)
    assert proof.list_checkpoint_size is None and proof.replayed_changes == 14
    assert proof.list_checkpoint_refused is not None and named in proof.list_checkpoint_refused
    alarms = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in alarms] == [
        "list checkpoint refused: the full start-up proof runs instead"
    ]
    assert named in alarms[0].reason  # type: ignore[attr-defined]  # the log record's extra


def test_a_missing_checkpoint_runs_the_full_proof_without_an_alarm(
    checkpointed: str, lists_file: Path, key_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lists_file.unlink()
    with caplog.at_level(logging.INFO, logger="ceir.startup_proof"):
        proof = _prove(checkpointed, key_file, lists_file)
    assert proof.list_checkpoint_refused is None and proof.replayed_changes == 14
    assert "no list checkpoint: the full start-up proof runs" in caplog.messages
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_database_older_than_the_checkpoint_refuses_it(
    checkpointed: str, lists_file: Path, key_file: Path, tmp_path: Path
) -> None:
    # A checkpoint of this log at 14 laid beside the database at 14 is fine;
    # laid beside a fresh database of 0 changes it is refused.
    empty = f"sqlite:///{tmp_path / 'other.db'}"
    if not checkpointed.startswith("sqlite"):
        pytest.skip("one SQLite file is enough to show it")
    db = Database(empty)
    db.migrate()
    db.dispose()
    proof = _prove(empty, key_file, lists_file)
    assert proof.list_checkpoint_refused is not None
    assert "the database is older than the checkpoint" in proof.list_checkpoint_refused
    assert proof.size == 0


# --- what the start from a checkpoint still catches ----------------------------------------


def test_an_edited_list_row_written_after_the_checkpoint_refuses_start(
    checkpointed: str, lists_file: Path, key_file: Path
) -> None:
    key = imei_key(imei(20))
    alter(checkpointed, f"UPDATE whitelist SET valid_until_us = 1 WHERE imei_key = {key}")
    with pytest.raises(ListsNotFromLog) as refused:
        _prove(checkpointed, key_file, lists_file)
    assert f"whitelist row for IMEI key {key:014d} altered behind the log" in str(refused.value)


def test_an_inserted_list_row_refuses_start(
    checkpointed: str, lists_file: Path, key_file: Path
) -> None:
    alter(
        checkpointed,
        "INSERT INTO whitelist (imei_key, device_id, valid_until_us) "
        "VALUES (35209900009000, 'forged', NULL)",
    )
    with pytest.raises(ListsNotFromLog) as refused:
        _prove(checkpointed, key_file, lists_file)
    assert "rows were inserted or deleted behind the log" in str(refused.value)


def test_an_edited_change_after_the_checkpoint_refuses_start(
    checkpointed: str, lists_file: Path, key_file: Path
) -> None:
    alter(checkpointed, "UPDATE changes SET device_id = 'forged' WHERE sequence = 13")
    with pytest.raises(LogNotVerified) as refused:
        _prove(checkpointed, key_file, lists_file)
    assert refused.value.sequence == 13


def test_a_rewritten_leaf_hash_before_the_checkpoint_refuses_the_checkpoint(
    checkpointed: str, lists_file: Path, key_file: Path
) -> None:
    """The stored tree up to the checkpoint must be the signed one; the full
    proof then names the bad change."""
    alter(
        checkpointed,
        "UPDATE changes SET leaf_hash = (SELECT leaf_hash FROM changes WHERE sequence = 11) "
        "WHERE sequence = 12",
    )
    with pytest.raises(LogNotVerified):
        _prove(checkpointed, key_file, lists_file)


# --- writing --------------------------------------------------------------------------------

_KILLED_WRITER = """
import os, sys, time
from pathlib import Path
from ceir.storage import list_checkpoint_file as files
from ceir.service.list_checkpoint import write_checkpoint
from ceir.service.merkle_log import CheckpointSigner
from ceir.audit import Frontier, Signer, load_private_key
path, key = Path(sys.argv[1]), Path(sys.argv[2])
stored = files.read_file(path)
def stop(_descriptor):  # the new file is written, not yet renamed: be killed here
    print("writing", flush=True)
    time.sleep(600)
files.os.fsync = stop
signer = CheckpointSigner(sys.argv[3], Signer(sys.argv[3], load_private_key(key)))
frontier = Frontier(stored.columns.sequence, [bytes(32)] * stored.columns.sequence.bit_count())
write_checkpoint(path, stored.columns, frontier, signer)
"""


def test_a_kill_during_a_checkpoint_write_leaves_the_old_checkpoint_usable(
    checkpointed: str, lists_file: Path, key_file: Path
) -> None:
    before = lists_file.read_bytes()
    writer = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(lists_file), str(key_file), KEY_NAME],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    assert writer.stdout.readline() == "writing\n"
    writer.send_signal(signal.SIGKILL)
    writer.communicate(timeout=30)
    assert lists_file.read_bytes() == before
    abandoned = list(lists_file.parent.glob(f".{lists_file.name}.*.tmp"))
    assert len(abandoned) == 1
    proof = _prove(checkpointed, key_file, lists_file)
    assert proof.list_checkpoint_size == 12 and proof.replayed_changes == 2
    signer = CheckpointSigner(KEY_NAME, Signer(KEY_NAME, load_private_key(key_file)))
    write_checkpoint(lists_file, proof.state.columns(), Frontier(14, proof.frontier), signer)
    assert not abandoned[0].exists()  # the next write removes what the killed one left


def test_the_server_writes_a_checkpoint_every_so_many_changes(
    db_url: str, tokens: dict[str, str], key_file: Path, lists_file: Path
) -> None:
    running = create_server(
        _config(
            db_url,
            signing_key=key_file,
            list_checkpoint=lists_file,
            list_checkpoint_every=3,
            list_checkpoint_min_seconds=0,
        )
    )
    try:
        checkpointer = running.checkpointer
        assert checkpointer is not None
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            client = Client(channel, tokens["kemenperin"])
            for serial in range(4):
                client.register(imei(serial))
        deadline = time.monotonic() + 60  # a bound on waiting, not a timing checked
        while checkpointer.written < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        checkpointer.stop(write=False)  # joins the writer: no write at stop
        assert checkpointer.written >= 3
        loaded = load_checkpoint(lists_file, [_verifier(key_file)], KEY_NAME)
        assert loaded is not None and loaded.statement.size == checkpointer.written
    finally:
        running.checkpointer = None
        running.stop(grace=0)


def test_ceir_audit_list_checkpoint_writes_one_the_next_start_uses(
    checkpointed: str, lists_file: Path, key_file: Path
) -> None:
    result = cli(
        "audit",
        "list-checkpoint",
        "--db",
        checkpointed,
        "--signing-key",
        str(key_file),
        "--file",
        str(lists_file),
    )
    assert result.exit_code == 0, result.output
    assert "list checkpoint of size 14" in result.output
    proof = _prove(checkpointed, key_file, lists_file)
    assert proof.list_checkpoint_size == 14 and proof.replayed_changes == 0


def test_no_checkpoint_is_written_without_a_signing_key(
    db_url: str, tokens: dict[str, str], lists_file: Path
) -> None:
    running = create_server(_config(db_url, list_checkpoint=lists_file))
    assert running.checkpointer is None
    running.stop(grace=0)
    assert not lists_file.exists()


def test_tree_nodes_over_the_checkpoint_size_are_checked_after_it(
    checkpointed: str, lists_file: Path, key_file: Path, server: RunningServer
) -> None:
    from .test_startup_proof import _import

    _import(server, 300)  # changes 15 to 314: node (8, 0) over 1 to 256 straddles 12
    proof = _prove(checkpointed, key_file, lists_file)
    assert proof.list_checkpoint_size == 12 and proof.replayed_changes == 302
    alter(
        checkpointed,
        "UPDATE tree_nodes SET hash = (SELECT leaf_hash FROM changes WHERE sequence = 1) "
        "WHERE level = 8",
    )
    with pytest.raises(LogNotVerified) as refused:
        _prove(checkpointed, key_file, lists_file)
    assert "tree node (8, 0) over changes 1 to 256" in str(refused.value)


def test_the_file_gives_back_the_columns_it_was_written_with(
    tmp_path: Path, key_file: Path
) -> None:
    import numpy as np

    from ceir.domain.lists import NO_DATE, ListColumns
    from ceir.domain.model import Phase, Policy

    columns = ListColumns(
        sequence=5,
        policy=Policy(Phase.ENFORCE, 7, 2, 60, 9, "kominfo"),
        whitelist_keys=np.array([1, 5, 9], dtype=np.uint64),
        whitelist_valid_until_us=np.array([NO_DATE, 1_700_000_000_000_000, NO_DATE]),
        blacklist_keys=np.array([3], dtype=np.uint64),
        blacklist_causes=np.array([1], dtype=np.uint8),
        blacklist_block_date_us=np.array([NO_DATE], dtype=np.int64),
        notifications=[(7, "510101234567890", "6281234567890", 1_800_000_000_000_000, b"s" * 16)],
        exceptions=[(8, "510101234567891", b"")],
    )
    signer = CheckpointSigner(KEY_NAME, Signer(KEY_NAME, load_private_key(key_file)))
    frontier = Frontier(5, [bytes([1]) * 32, bytes([2]) * 32])
    path = tmp_path / "lists"
    write_checkpoint(path, columns, frontier, signer)
    loaded = load_checkpoint(path, [_verifier(key_file)], KEY_NAME)
    assert loaded is not None
    back = loaded.columns
    assert back.whitelist_valid_until_us.tolist() == [NO_DATE, 1_700_000_000_000_000, NO_DATE]
    assert back.whitelist_keys.tolist() == [1, 5, 9] and back.blacklist_keys.tolist() == [3]
    assert (back.policy, back.notifications, back.exceptions) == (
        columns.policy,
        columns.notifications,
        columns.exceptions,
    )
    assert loaded.statement.frontier == frontier.hashes


def test_a_header_claiming_more_than_the_file_holds_is_refused(
    checkpointed: str, lists_file: Path, key_file: Path
) -> None:
    data = lists_file.read_bytes()
    cut = data[: len(data) - 8]  # the last column is 8 bytes short of its count
    lists_file.write_bytes(cut)
    proof = _prove(checkpointed, key_file, lists_file)
    assert proof.list_checkpoint_refused is not None
    assert "more bytes than the file holds" in proof.list_checkpoint_refused


def test_full_proof_ignores_the_checkpoint_and_still_writes_it(
    checkpointed: str, lists_file: Path, key_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = _config(
        checkpointed,
        signing_key=key_file,
        list_checkpoint=lists_file,
        start_from_list_checkpoint=False,
    )
    with caplog.at_level(logging.INFO, logger="ceir.startup_proof"):
        create_server(config).stop(grace=0)
    passed = [r for r in caplog.records if r.getMessage() == "start-up proof passed"]
    assert len(passed) == 1
    assert passed[0].list_checkpoint_size is None  # type: ignore[attr-defined]
    assert passed[0].replayed_changes == 14  # type: ignore[attr-defined]
    loaded = load_checkpoint(lists_file, [_verifier(key_file)], KEY_NAME)
    assert loaded is not None and loaded.statement.size == 14  # written at shutdown


def test_the_default_file_is_beside_a_sqlite_database_only() -> None:
    from ceir.service.list_checkpoint import default_path

    assert default_path("sqlite:////data/ceir.db") == Path("/data/ceir.db.lists")
    assert default_path("sqlite:///:memory:") is None
    assert default_path("postgresql+psycopg://ceir@db/ceir") is None

"""The signed Merkle log of a real server: proofs, checkpoints on the feed, audits, attacks.

Every check here is what a client can do with ``ceir.audit`` and the
custodian's public key only; the attacks change the database behind the
server's back (SQLite and PostgreSQL) and must be caught by the client and
by ``ceir audit verify``.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy
from sqlalchemy.pool import NullPool
from typer.testing import CliRunner, Result

from ceir.api.convert import change_from_pb, leaf_from_pb
from ceir.api.server import RunningServer, ServerConfig, create_server
from ceir.audit import (
    BadProof,
    Checkpoint,
    InconsistentTree,
    Signer,
    UnknownKey,
    Verifier,
    change_leaf_hash,
    generate_signing_key,
    open_checkpoint,
    replay,
    save_private_key,
    save_public_key,
    verifier_from_file,
    verify_consistency,
    verify_inclusion,
)
from ceir.cli import app
from ceir.domain.commands import ImportChunk, ImportRow
from ceir.domain.model import Caller, Change, DeviceRegistration, OrgKind, RegistrationSource
from ceir.service.clock import ManualClock
from ceir.service.merkle_log import DEFAULT_ORIGIN
from ceir.service.register import Register
from ceir.storage.database import Database
from ceir.v1 import list_sync_pb2 as sync_pb
from ceir.v1 import registry_pb2
from ceir.v1 import transparency_pb2 as log_pb
from ceir.v1 import types_pb2 as pb

from .helpers import TELKOMSEL_IMSI, Client, error_reason, imei

ORIGIN = DEFAULT_ORIGIN


@pytest.fixture
def key_files(tmp_path: Path) -> tuple[Path, Path]:
    """The custodian's private key file and its public key file."""
    key = generate_signing_key()
    private, public = tmp_path / "custodian.pem", tmp_path / "custodian.pub.pem"
    save_private_key(key, private)
    save_public_key(key.public_key(), public)
    return private, public


@pytest.fixture
def verifier(key_files: tuple[Path, Path]) -> Verifier:
    return verifier_from_file(ORIGIN, key_files[1])


@pytest.fixture
def server(
    db_url: str, tokens: dict[str, str], clock: ManualClock, key_files: tuple[Path, Path]
) -> Iterator[RunningServer]:
    running = create_server(
        ServerConfig(
            db=db_url,
            address="127.0.0.1:0",
            clock=clock,
            access_log=False,
            follow_interval=0.2,
            insecure=True,
            signing_key=key_files[0],
        )
    )
    yield running
    running.stop(grace=1)
    gc.collect()


def populate(clients: dict[str, Client]) -> None:
    """Twelve changes of several kinds, in several writes."""
    kemenperin, telkomsel = clients["kemenperin"], clients["telkomsel"]
    for serial in range(6):
        kemenperin.register(imei(serial))
    telkomsel.call(
        telkomsel.registry.ReportStolen,
        registry_pb2.ReportStolenRequest(
            imeis=[imei(1), imei(2)], police_report="P-1", subscriber_imsi=TELKOMSEL_IMSI
        ),
    )
    telkomsel.call(
        telkomsel.registry.AddException,
        registry_pb2.AddExceptionRequest(imei=imei(3), imsi=TELKOMSEL_IMSI),
    )
    telkomsel.check_imei(imei(500))  # a notification
    kemenperin.register(imei(6), imei(7))


def feed(client: Client, after: int = 0) -> list[sync_pb.WatchChangesResponse]:
    """Messages of the change feed after ``after`` up to the head."""
    head = latest(client)[1]
    call: Any = client.sync.WatchChanges(
        sync_pb.WatchChangesRequest(after_sequence=after), metadata=client.metadata, timeout=30
    )
    messages = []
    try:
        for message in call:
            messages.append(message)
            if message.changes[-1].sequence >= head:
                break
    finally:
        call.cancel()
    return messages


def latest(client: Client) -> tuple[str, int]:
    answer = client.call(client.log.GetCheckpoint, log_pb.GetCheckpointRequest())
    return answer.checkpoint, answer.tree_size


def changes_of(messages: list[sync_pb.WatchChangesResponse]) -> list[Change]:
    return [change_from_pb(change) for message in messages for change in message.changes]


def alter(db_url: str, statement: str) -> None:
    """Change the database behind the server's back."""
    engine = sqlalchemy.create_engine(db_url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            assert connection.execute(sqlalchemy.text(statement)).rowcount == 1
    finally:
        engine.dispose()


def cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


# --- proofs and checkpoints -------------------------------------------------------------------


def test_checkpoint_verifies_with_the_custodian_key_and_counts_every_change(
    clients: dict[str, Client], verifier: Verifier
) -> None:
    populate(clients)
    note, size = latest(clients["telkomsel"])
    checkpoint = open_checkpoint(note, [verifier], ORIGIN)
    messages = feed(clients["telkomsel"])
    changes = changes_of(messages)
    assert checkpoint.size == size == len(changes) == changes[-1].sequence
    hashes = [change_leaf_hash(change, index) for index, change in enumerate(changes)]
    replay(hashes, [checkpoint])


def test_inclusion_proofs_from_the_server_verify(
    clients: dict[str, Client], verifier: Verifier
) -> None:
    populate(clients)
    client = clients["kominfo"]
    changes = changes_of(feed(client))
    for tree_size in (1, 5, len(changes), 0):
        for change in changes[: tree_size or len(changes)]:
            proof = client.call(
                client.log.GetInclusionProof,
                log_pb.GetInclusionProofRequest(sequence=change.sequence, tree_size=tree_size),
            )
            checkpoint = open_checkpoint(proof.checkpoint, [verifier], ORIGIN)
            assert checkpoint.size == proof.tree_size == (tree_size or len(changes))
            index = change.sequence - 1
            assert proof.leaf_index == index
            leaf = change_leaf_hash(change, index)
            verify_inclusion(leaf, index, proof.tree_size, list(proof.hashes), checkpoint.root_hash)


def test_consistency_proofs_from_the_server_verify(
    clients: dict[str, Client], verifier: Verifier
) -> None:
    client = clients["kemenperin"]
    signed: list[Checkpoint] = []
    for serial in range(9):
        client.register(imei(100 + serial))
        signed.append(open_checkpoint(latest(client)[0], [verifier], ORIGIN))
    for old in signed:
        for new in signed:
            if old.size > new.size:
                continue
            proof = client.call(
                client.log.GetConsistencyProof,
                log_pb.GetConsistencyProofRequest(first_size=old.size, second_size=new.size),
            )
            assert open_checkpoint(proof.checkpoint, [verifier], ORIGIN).root_hash == new.root_hash
            verify_consistency(old.size, new.size, list(proof.hashes), old.root_hash, new.root_hash)


def test_snapshot_and_feed_carry_checkpoints_that_match_their_changes(
    clients: dict[str, Client], verifier: Verifier
) -> None:
    populate(clients)
    client = clients["xl"]
    chunks = list(client.call(client.sync.GetSnapshot, sync_pb.GetSnapshotRequest(chunk_size=2)))
    snapshot_checkpoint = open_checkpoint(chunks[0].checkpoint, [verifier], ORIGIN)
    assert snapshot_checkpoint.size == chunks[0].sequence
    assert all(chunk.checkpoint == "" for chunk in chunks[1:])
    received: list[pb.ListChange] = []
    checkpoints = []
    for message in feed(client):
        checkpoint = open_checkpoint(message.checkpoint, [verifier], ORIGIN)
        received.extend(message.changes)
        assert checkpoint.size == received[-1].sequence
        checkpoints.append(checkpoint)
    # XL rebuilds every leaf, other operators' subscribers from their commitments.
    assert any(c.subscriber_commitment and not c.imsi for c in received)
    hashes = [change_leaf_hash(leaf_from_pb(c), i) for i, c in enumerate(received)]
    replay(hashes, [*checkpoints, snapshot_checkpoint])
    # The snapshot's lists are what those verified changes produce (a pair's
    # subscriber is its commitment, which XL has for every pair).
    assert snapshot_lists(chunks) == pb_lists_of(received[: snapshot_checkpoint.size])


def test_errors_name_the_field_and_readers_need_permission(clients: dict[str, Client]) -> None:
    populate(clients)
    client = clients["telkomsel"]
    size = latest(client)[1]
    for request, field in (
        (log_pb.GetInclusionProofRequest(sequence=0), "sequence"),
        (log_pb.GetInclusionProofRequest(sequence=3, tree_size=2), "sequence"),
        (log_pb.GetInclusionProofRequest(sequence=1, tree_size=size + 1), "tree_size"),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            client.call(client.log.GetInclusionProof, request)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert field in (caught.value.details() or "")
    with pytest.raises(grpc.RpcError) as caught:
        client.call(
            client.log.GetConsistencyProof,
            log_pb.GetConsistencyProofRequest(first_size=size, second_size=size - 1),
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    customs = clients["customs"]
    with pytest.raises(grpc.RpcError) as caught:
        customs.call(customs.log.GetCheckpoint, log_pb.GetCheckpointRequest())
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED


# --- the attacks ---------------------------------------------------------------------------


def test_a_change_row_altered_in_the_database_is_caught(
    clients: dict[str, Client], verifier: Verifier, db_url: str, key_files: tuple[Path, Path]
) -> None:
    populate(clients)
    client = clients["telkomsel"]
    before = open_checkpoint(latest(client)[0], [verifier], ORIGIN)
    # Change 2 (a whitelisting) gets an expiry it never had.
    alter(db_url, "UPDATE changes SET valid_until_us = 1600000000000000 WHERE sequence = 2")
    clients["kemenperin"].register(imei(300))  # the log goes on

    # The client replaying the feed against the signed checkpoint refuses it.
    changes = changes_of(feed(client))
    hashes = [change_leaf_hash(change, index) for index, change in enumerate(changes)]
    now = open_checkpoint(latest(client)[0], [verifier], ORIGIN)
    with pytest.raises(InconsistentTree):
        replay(hashes, [before, now])
    # So does the inclusion proof of that change.
    proof = client.call(client.log.GetInclusionProof, log_pb.GetInclusionProofRequest(sequence=2))
    with pytest.raises(BadProof):
        verify_inclusion(hashes[1], 1, proof.tree_size, list(proof.hashes), now.root_hash)

    # The offline audit names the first bad leaf.
    result = cli("audit", "verify", "--db", db_url, "--public-key", str(key_files[1]))
    assert result.exit_code == 1, result.output
    assert "first bad leaf: change 2 " in result.output
    assert "WHITELIST_ADDED" in result.output


def test_a_list_row_altered_in_the_database_is_caught(
    clients: dict[str, Client],
    verifier: Verifier,
    db_url: str,
    key_files: tuple[Path, Path],
    server: RunningServer,
) -> None:
    populate(clients)
    stolen = int(imei(1)[:14])
    # Someone unblocks a stolen phone directly in the blacklist table; the
    # server's lists come from the tables the next time it starts.
    alter(db_url, f"DELETE FROM blacklist WHERE imei_key = {stolen}")
    server.register.reload()
    client = clients["indosat"]
    chunks = list(client.call(client.sync.GetSnapshot, sync_pb.GetSnapshotRequest()))
    checkpoint = open_checkpoint(chunks[0].checkpoint, [verifier], ORIGIN)
    # The changes verify against the snapshot's checkpoint...
    received = [c for message in feed(client) for c in message.changes][: checkpoint.size]
    replay([change_leaf_hash(leaf_from_pb(c), i) for i, c in enumerate(received)], [checkpoint])
    # ...but the snapshot is not what they produce.
    assert snapshot_lists(chunks) != pb_lists_of(received)

    result = cli("audit", "verify", "--db", db_url, "--public-key", str(key_files[1]))
    assert result.exit_code == 1, result.output
    assert f"blacklist row for IMEI key {stolen:014d}" in result.output
    assert "the table holds no row" in result.output


def test_a_checkpoint_signed_by_an_unknown_key_is_refused(
    clients: dict[str, Client], db_url: str, tmp_path: Path
) -> None:
    populate(clients)
    note = latest(clients["telkomsel"])[0]
    stranger = generate_signing_key()
    with pytest.raises(UnknownKey):
        open_checkpoint(note, [Signer(ORIGIN, stranger).verifier], ORIGIN)
    save_public_key(stranger.public_key(), tmp_path / "stranger.pem")
    result = cli("audit", "verify", "--db", db_url, "--public-key", str(tmp_path / "stranger.pem"))
    assert result.exit_code == 1
    assert "refused" in result.output


def test_audit_verify_prints_the_verified_checkpoint_from_a_database_and_an_export(
    clients: dict[str, Client], db_url: str, key_files: tuple[Path, Path], tmp_path: Path
) -> None:
    populate(clients)
    size = latest(clients["telkomsel"])[1]
    result = cli("audit", "verify", "--db", db_url, "--public-key", str(key_files[1]))
    assert result.exit_code == 0, result.output
    assert f"verified {size} leaves" in result.output
    assert f"{ORIGIN}\n{size}\n" in result.output
    export = tmp_path / "log.jsonl"
    assert cli("audit", "export", "--db", db_url, str(export)).exit_code == 0
    result = cli("audit", "verify", "--export", str(export), "--public-key", str(key_files[1]))
    assert result.exit_code == 0, result.output
    assert f"verified {size} leaves" in result.output

    # An export whose fifth leaf was edited is refused, naming it.
    lines = export.read_text().splitlines()
    edited = re.sub(r'"leaf": "(0[12])01', r'"leaf": "\g<1>02', lines[5], count=1)
    assert edited != lines[5]  # a WHITELIST_ADDED leaf made a WHITELIST_REMOVED one
    lines[5] = edited
    export.write_text("\n".join(lines) + "\n")
    result = cli("audit", "verify", "--export", str(export), "--public-key", str(key_files[1]))
    assert result.exit_code == 1
    assert "change 5 " in result.output


def test_a_server_without_a_signing_key_keeps_the_log_but_publishes_no_checkpoint(
    db_url: str, tokens: dict[str, str]
) -> None:
    running = create_server(
        ServerConfig(db=db_url, address="127.0.0.1:0", access_log=False, insecure=True)
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            Client(channel, tokens["kemenperin"]).register(imei(1))
            client = Client(channel, tokens["kominfo"])
            with pytest.raises(grpc.RpcError) as caught:
                client.call(client.log.GetCheckpoint, log_pb.GetCheckpointRequest())
            assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
            assert error_reason(caught.value) == "LOG_NOT_SIGNED"
            proof = client.call(
                client.log.GetInclusionProof, log_pb.GetInclusionProofRequest(sequence=1)
            )
            assert proof.tree_size == 1 and proof.checkpoint == ""
    finally:
        running.stop(grace=1)


def test_changes_written_without_the_log_are_hashed_at_start_up(
    db_url: str, tokens: dict[str, str], key_files: tuple[Path, Path]
) -> None:
    db = Database(db_url)
    try:
        register = Register(db, merkle_log=False)
        devices = (
            ImportRow(
                serial, DeviceRegistration((int(imei(serial)[:14]),), RegistrationSource.TPP_IMPORT)
            )
            for serial in range(300)
        )
        register.execute(Caller("kemenperin", OrgKind.KEMENPERIN), ImportChunk(0, tuple(devices)))
        register.close()
        assert (
            db.engine.connect()
            .execute(sqlalchemy.text("SELECT count(*) FROM changes WHERE leaf_hash IS NULL"))
            .scalar_one()
            == 300
        )
        register = Register(db)  # the backfill
        assert register.log.size == 300
        register.close()
    finally:
        db.dispose()
    result = cli("audit", "verify", "--db", db_url)
    assert result.exit_code == 1  # no checkpoint was ever signed
    assert "no signed checkpoint" in result.output


# --- what a replica holds --------------------------------------------------------------------


def pb_lists_of(changes: list[pb.ListChange]) -> dict[str, object]:
    """The lists the received changes produce, each pair keyed by its commitment."""
    lists: dict[str, set[Any]] = {name: set() for name in LIST_OF_KIND.values()}
    for change in changes:
        name = LIST_OF_KIND.get(change.kind)
        if name is None:
            continue
        key = int(change.imei_key)
        entry = key if name in ("whitelist", "blacklist") else (key, change.subscriber_commitment)
        if change.kind in ADDING_KINDS:
            lists[name].add(entry)
        else:
            lists[name].discard(entry)
    return {name: sorted(values) for name, values in lists.items()}


LIST_OF_KIND = {
    pb.CHANGE_KIND_WHITELIST_ADDED: "whitelist",
    pb.CHANGE_KIND_WHITELIST_REMOVED: "whitelist",
    pb.CHANGE_KIND_BLACKLIST_BLOCKED: "blacklist",
    pb.CHANGE_KIND_BLACKLIST_UNBLOCKED: "blacklist",
    pb.CHANGE_KIND_NOTIFICATION_NEW: "notifications",
    pb.CHANGE_KIND_NOTIFICATION_RESOLVED: "notifications",
    pb.CHANGE_KIND_NOTIFICATION_BLACKLISTED: "notifications",
    pb.CHANGE_KIND_EXCEPTION_ADDED: "exceptions",
    pb.CHANGE_KIND_EXCEPTION_REMOVED: "exceptions",
}
ADDING_KINDS = {
    pb.CHANGE_KIND_WHITELIST_ADDED,
    pb.CHANGE_KIND_BLACKLIST_BLOCKED,
    pb.CHANGE_KIND_NOTIFICATION_NEW,
    pb.CHANGE_KIND_EXCEPTION_ADDED,
}


def snapshot_lists(chunks: list[sync_pb.GetSnapshotResponse]) -> dict[str, object]:
    found: dict[str, list[Any]] = {
        "whitelist": [],
        "blacklist": [],
        "exceptions": [],
        "notifications": [],
    }
    for chunk in chunks:
        if chunk.list == sync_pb.SNAPSHOT_LIST_WHITELIST:
            found["whitelist"].extend(chunk.imei_keys)
        elif chunk.list == sync_pb.SNAPSHOT_LIST_BLACKLIST:
            found["blacklist"].extend(chunk.imei_keys)
        elif chunk.list == sync_pb.SNAPSHOT_LIST_EXCEPTION:
            pairs = zip(chunk.imei_keys, chunk.subscriber_commitments, strict=True)
            found["exceptions"].extend(pairs)
        elif chunk.list == sync_pb.SNAPSHOT_LIST_NOTIFICATION:
            pairs = zip(chunk.imei_keys, chunk.subscriber_commitments, strict=True)
            found["notifications"].extend(pairs)
    return {name: sorted(values) for name, values in found.items()}

"""docs/trust.md, "Snapshots: the lists statement": both implementations (the
server's ``ceir.audit.snapshot`` and the node's ``operators_sim.snapshot_check``,
written from the page) reproduce its example byte for byte, and the node's
check refuses every way a snapshot can differ from what was signed."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ceir.audit import errors
from ceir.audit.checkpoint import Checkpoint, open_checkpoint
from ceir.audit.merkle import Frontier, MemoryHashStore, Prover
from ceir.audit.note import Signer
from ceir.audit.snapshot import (
    ListsDigest,
    ListsStatement,
    entry_identity,
    open_statement,
    sign_statement,
)
from ceir.v1 import list_sync_pb2 as sync_pb
from ceir.v1 import types_pb2 as pb
from operators_sim.snapshot_check import SnapshotDigest, check_snapshot
from operators_sim.verification import Trust

DOC = (Path(__file__).parents[2] / "docs" / "trust.md").read_text(encoding="utf-8")
SECTION = DOC[DOC.index("## Snapshots: the lists statement") :]
ORIGIN = "ceir.example/changes"
SIGNER = Signer(
    ORIGIN,
    Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(b"ceir docs example key: public, never use it").digest()
    ),
)
SALT = bytes(range(16))
IMSI, MSISDN = "510101234567890", "6281234567890"
WHITELIST = ([35209900000010, 35209900000028], [0, 1798761600])
STOLEN_KEY = 35209900000036
NOTIFIED_KEY, BLOCK_DATE = 35209900000044, 1767225600


def _blocks() -> list[str]:
    return re.findall(r"```\n(.*?)```", SECTION, flags=re.DOTALL)


def _server_digest() -> ListsDigest:
    digest = ListsDigest(2, 1, 30, 3, 86_400)
    digest.whitelist(*WHITELIST)
    digest.blacklist([STOLEN_KEY], [1], [0])
    digest.notifications([NOTIFIED_KEY], [entry_identity(SALT, IMSI, MSISDN)], [BLOCK_DATE])
    return digest


def _chunks(*, clear: bool = True) -> list[sync_pb.GetSnapshotResponse]:
    policy = pb.Policy(
        phase=pb.PHASE_NOTIFY, grace_days=30, clone_threshold=3, clone_window_seconds=86_400
    )
    commitment = entry_identity(SALT, IMSI, MSISDN)
    return [
        sync_pb.GetSnapshotResponse(
            sequence=2,
            list=sync_pb.SNAPSHOT_LIST_WHITELIST,
            imei_keys=WHITELIST[0],
            valid_until_unix=WHITELIST[1],
            policy=policy,
        ),
        sync_pb.GetSnapshotResponse(
            sequence=2,
            list=sync_pb.SNAPSHOT_LIST_BLACKLIST,
            imei_keys=[STOLEN_KEY],
            blacklist_causes=[pb.BLACKLIST_CAUSE_STOLEN],
            block_dates_unix=[0],
        ),
        sync_pb.GetSnapshotResponse(
            sequence=2,
            list=sync_pb.SNAPSHOT_LIST_NOTIFICATION,
            imei_keys=[NOTIFIED_KEY],
            imsis=[IMSI if clear else ""],
            msisdns=[MSISDN if clear else ""],
            block_dates_unix=[BLOCK_DATE],
            subscriber_commitments=[commitment],
            subscriber_salts=[SALT if clear else b""],
            last=True,
        ),
    ]


def _node_digest(chunks: list[sync_pb.GetSnapshotResponse]) -> bytes:
    digest = SnapshotDigest()
    for chunk in chunks:
        digest.add(chunk)
    return digest.digest()


def test_the_example_commitment_bytes_and_digest_are_the_pages() -> None:
    digest = _server_digest().digest()
    assert entry_identity(SALT, IMSI, MSISDN).hex() in SECTION
    hashed = bytes.fromhex("".join(_blocks()[1].split()))
    assert len(hashed) == 136 and "the 136\nbytes hashed" in SECTION
    assert hashlib.sha256(hashed).digest() == digest
    assert digest.hex() in SECTION


@pytest.mark.parametrize("clear", [True, False], ids=["own-subscriber", "commitment-only"])
def test_the_node_computes_the_same_digest_whether_or_not_it_sees_the_subscriber(
    clear: bool,
) -> None:
    assert _node_digest(_chunks(clear=clear)) == _server_digest().digest()


def test_a_clear_imsi_that_does_not_open_its_commitment_is_refused() -> None:
    chunks = _chunks()
    chunks[2].imsis[0] = "510109999999999"
    with pytest.raises(ValueError, match="does not open its commitment"):
        _node_digest(chunks)


def test_the_example_statement_is_the_signed_note_on_the_page() -> None:
    root = base64.b64decode("ksIT6z6Al4Y0VexQS9lVA1MDzV0QNiDeKdwnpiobSJY=")
    statement = ListsStatement(ORIGIN, 2, root, _server_digest().digest())
    signed = sign_statement(statement, [SIGNER])
    assert signed.strip() in [block.strip() for block in _blocks()]
    assert open_statement(signed, [SIGNER.verifier], ORIGIN) == statement
    with pytest.raises(errors.MalformedCheckpoint):  # never taken for a checkpoint
        open_checkpoint(signed, [SIGNER.verifier], ORIGIN)
    with pytest.raises(errors.MalformedCheckpoint, match="of log"):
        open_statement(signed, [SIGNER.verifier], "another.example/log")


def _signed_log(size: int) -> tuple[Checkpoint, Frontier]:
    store = MemoryHashStore()
    store.extend(hashlib.sha256(bytes([i])).digest() for i in range(size))
    prover = Prover(store)
    return Checkpoint(ORIGIN, size, prover.root(size), 1), prover.frontier(size)


def test_the_node_check_accepts_the_signed_lists_and_refuses_every_difference() -> None:
    checkpoint, frontier = _signed_log(2)
    trust = Trust((SIGNER.verifier,), ORIGIN)
    digest = _node_digest(_chunks())
    note = sign_statement(ListsStatement(ORIGIN, 2, checkpoint.root_hash, digest), [SIGNER])
    got = check_snapshot(trust, checkpoint, 2, digest, note, frontier.hashes)
    assert got.root() == checkpoint.root_hash

    altered = _chunks()
    del altered[0].imei_keys[0], altered[0].valid_until_unix[0]
    with pytest.raises(errors.InconsistentTree, match="not the register's lists"):
        check_snapshot(trust, checkpoint, 2, _node_digest(altered), note, frontier.hashes)
    with pytest.raises(errors.InconsistentTree, match="must be the same"):
        check_snapshot(trust, checkpoint, 3, digest, note, frontier.hashes)
    with pytest.raises(errors.InconsistentTree, match="frontier"):
        check_snapshot(trust, checkpoint, 2, digest, note, [bytes(32)])
    other_root = ListsStatement(ORIGIN, 2, bytes(32), digest)
    with pytest.raises(errors.InconsistentTree, match="another root"):
        check_snapshot(
            trust, checkpoint, 2, digest, sign_statement(other_root, [SIGNER]), frontier.hashes
        )
    forged = note.replace(base64.b64encode(digest).decode(), base64.b64encode(bytes(32)).decode())
    with pytest.raises(errors.BadSignature):
        check_snapshot(trust, checkpoint, 2, bytes(32), forged, frontier.hashes)
    with pytest.raises(errors.MalformedCheckpoint, match="of log"):
        check_snapshot(
            Trust((SIGNER.verifier,), "another.example/log"),
            checkpoint,
            2,
            digest,
            note,
            frontier.hashes,
        )

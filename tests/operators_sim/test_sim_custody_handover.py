"""One operator node following a real handover across two registers, through real
sockets: it walks to policy 1 and reports readiness, records the freeze, moves to the
incoming register once its handover note, first checkpoint and consistency proofs
verify, follows the log there under the new key from its own cursor, keeps deciding
throughout, and leaves evidence that ``ceir custody verify`` accepts.

The incoming register starts on a copy of the frozen register's database (the
standby's pull is ``ceir.service.standby``'s, tested there), as in
``tests/custody/test_handover_servers.py``."""

from __future__ import annotations

import base64
import gc
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from ceir.api.server import RunningServer
from ceir.audit.checkpoint import open_checkpoint
from ceir.audit.merkle import verify_consistency
from ceir.custody import CustodyPolicy, cosign, split_note, verify_cosignatures, verify_handover
from ceir.service.clock import ManualClock
from ceir.service.orgs import add_organisation
from ceir.storage.database import Database
from ceir.v1 import custody_pb2 as pb
from ceir.v1 import registry_pb2 as registry_pb
from ceir.v1 import transparency_pb2, types_pb2
from operators_sim.custody_follower import CustodySetup
from operators_sim.custody_state import CustodyTrust, note_text
from operators_sim.decision import Source
from operators_sim.loader import Admin
from operators_sim.node import OPERATORS, SyncNode
from operators_sim.transport import GrpcLink

from ..custody.ceremony import YEAR, Keys, custody, now_s, signed, start
from ..custody.test_ceremony_server import NOTICE_S, announce, freeze, report, submit
from ..custody.test_handover_servers import CopiedLog, copy_database
from ..helpers import ORGS, Client, imei


def eventually(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Wait for the node's own threads; no timing is asserted."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def check_evidence(directory: Path, v0: CustodyPolicy, v1: CustodyPolicy, n: int) -> None:
    """The handover evidence, checked from its files alone (``ceir custody verify``
    does the same and more, once the evidence library is merged)."""

    def read(name: str) -> str:
        return (directory / name).read_text()

    handover = verify_handover(read("handover.note"), v0, v1, now_s())
    final = open_checkpoint(read("checkpoint-final.note"), [v0.log_key], v0.origin)
    first = open_checkpoint(read("checkpoint-first.note"), [v1.log_key], v1.origin)
    assert final.size == handover.size == n and final.root_hash == handover.root_hash
    assert verify_cosignatures(read("checkpoint-final.note"), [w.cosigner for w in v0.witnesses])
    assert verify_cosignatures(read("checkpoint-first.note"), [w.cosigner for w in v1.witnesses])
    header, *hashes = read("consistency.txt").splitlines()
    assert header == f"{n} {first.size}"
    proof = [base64.b64decode(line) for line in hashes]
    verify_consistency(n, first.size, proof, final.root_hash, first.root_hash)
    assert note_text(read("policy-1.note")) == v1.text()


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ceir.db'}"


@pytest.fixture
def tokens(url: str) -> dict[str, str]:
    db = Database(url)
    db.migrate()
    try:
        return {
            name: add_organisation(db, name, kind, codes) for name, (kind, codes) in ORGS.items()
        }
    finally:
        db.dispose()


@pytest.fixture
def keys() -> Keys:
    return Keys.make()


@pytest.fixture
def outgoing(
    url: str, tokens: dict[str, str], tmp_path: Path, keys: Keys
) -> Iterator[tuple[RunningServer, ManualClock]]:
    clock = ManualClock()
    running = start(url, tmp_path, clock, keys, keys.policy(0, now_s() + YEAR))
    yield running, clock
    running.stop(grace=1)
    gc.collect()


def test_a_node_follows_the_register_to_its_new_custodian(
    outgoing: tuple[RunningServer, ManualClock],
    url: str,
    tokens: dict[str, str],
    keys: Keys,
    tmp_path: Path,
) -> None:
    old_server, clock = outgoing
    v0: CustodyPolicy = keys.policy(0, now_s() + YEAR)
    v1: CustodyPolicy = keys.policy(1, now_s() + 30 * 86_400)
    old_address = f"127.0.0.1:{old_server.port}"
    endpoints = {v0.endpoint: old_address}
    state = tmp_path / "nodes" / "xl"
    setup = CustodySetup(
        policy_0=(tmp_path / "policy-0.note").read_text(),
        connect=lambda address: GrpcLink(address, tokens["xl"]),
        state_dir=state,
        endpoints=endpoints,  # the incoming register's address is added once it listens
        poll_interval=0.1,
    )
    xl = next(op for op in OPERATORS if op.name == "xl")
    node = SyncNode(xl, GrpcLink(old_address, tokens["xl"]), custody=setup)
    old_channel = grpc.insecure_channel(old_address)
    clients = {name: Client(old_channel, token) for name, token in tokens.items()}
    new_server: RunningServer | None = None
    new_channel: grpc.Channel | None = None
    try:
        node.start()
        assert node.wait_ready(30)
        follower, verifier = node.custody, node.verifier
        assert follower is not None and verifier is not None
        clients["kemenperin"].register(imei(1))
        # ANNOUNCED: the node walks to policy 1 and reports readiness itself.
        announce(clients, keys, v1)
        assert eventually(lambda: follower.stats.readiness_reported == [1])
        for name in ("indosat", "telkomsel"):
            report(clients[name], v1)
        clock.advance(NOTICE_S + 1)
        done = freeze(clients["telkomsel"])
        n = done.final_size
        assert eventually(lambda: follower.trust.frozen is not None)
        assert follower.trust.frozen is not None and follower.trust.frozen.size == n
        assert node.decide(imei(1)).source is Source.REPLICA  # deciding throughout
        # The witness cosigns the final checkpoint; the handover note is signed.
        final = cosign(done.final_checkpoint, keys.kominfo_cosigner, now_s())
        clients["kominfo"].call(
            clients["kominfo"].custody.SubmitCosignature,
            pb.SubmitCosignatureRequest(checkpoint=final),
        )
        text = split_note(done.pending_document)[0]
        submit(
            clients["kominfo"],
            signed(text, *keys.telkomsel[:2], *keys.kemenperin[:2], keys.kominfo),
        )
        standby = CopiedLog(old_channel, tokens["kemenperin"], n)
        new_url = copy_database(url, tmp_path / "incoming.db")
        new_server = start(new_url, tmp_path, clock, keys, v0, incoming=True, standby=standby)
        new_address = f"127.0.0.1:{new_server.port}"
        new_channel = grpc.insecure_channel(new_address)
        kemenperin = Client(new_channel, tokens["kemenperin"])
        kemenperin.call(kemenperin.custody.Transfer, pb.TransferRequest())
        handover = custody(clients["kemenperin"]).handover
        active = kemenperin.call(
            kemenperin.custody.Activate, pb.ActivateRequest(handover=handover)
        ).custody
        # ACTIVE but not yet cosigned: the node does not move.
        endpoints[v1.endpoint] = new_address
        follower.step()
        assert follower.trust.version == 0
        cosigned = cosign(active.first_checkpoint, keys.kominfo_cosigner, now_s())
        first = kemenperin.call(
            kemenperin.custody.SubmitCosignature, pb.SubmitCosignatureRequest(checkpoint=cosigned)
        ).custody.first_checkpoint
        # Now it moves: the handover, the first checkpoint and both proofs verify.
        assert eventually(lambda: follower.link.target == new_address)  # trusted, then moved
        assert follower.trust.version == 1
        assert eventually(lambda: node.applied_sequence == n + 1)  # the ACTIVE leaf
        kemenperin.register(imei(2))
        head = kemenperin.call(
            kemenperin.log.GetCheckpoint, transparency_pb2.GetCheckpointRequest()
        ).tree_size
        assert eventually(lambda: node.applied_sequence == head)
        assert node.decide(imei(2)).source is Source.REPLICA
        assert verifier.stats.alerts == {}
        assert follower.stats.handovers == 1
        # The state survives a restart; the evidence checks out with no server.
        saved = CustodyTrust.load(state / "custody.json", setup.policy_0)
        assert saved.version == 1 and saved.finals[0].size == n
        check_evidence(state / "evidence" / "handover-1", v0, v1, n)
        # The incoming register had the old one retire before it took writes; Telkomsel's
        # own Retire answers RETIRED again. A writer still aimed there follows REGISTER_MOVED.
        proof = kemenperin.call(
            kemenperin.log.GetConsistencyProof,
            transparency_pb2.GetConsistencyProofRequest(first_size=n, second_size=n + 1),
        ).hashes
        telkomsel = clients["telkomsel"]
        assert custody(telkomsel).state_name == "RETIRED"
        telkomsel.call(
            telkomsel.custody.Retire,
            pb.RetireRequest(
                handover=active.handover, first_checkpoint=first, consistency_proof=proof
            ),
        )
        # The writers act for the brief's organisations; these three write nothing here.
        unused = {name: "unused" for name in ("tri", "smartfren", "bea-cukai")}
        admin = Admin(old_address, {**tokens, **unused}, endpoints=endpoints, retry_for=30)
        try:
            written = admin.send(
                "kemenperin",
                "RegisterDevice",
                registry_pb.RegisterDeviceRequest(
                    request_id="handover-register-3",
                    device=registry_pb.DeviceRegistration(
                        imeis=[imei(3)],
                        source=types_pb2.REGISTRATION_SOURCE_TPP_IMPORT,
                        reference="TPP-3",
                        brand="b",
                        model="m",
                    ),
                ),
                f"registered {imei(3)}",
            )
            stats = admin.ledger.stats
            assert (stats.refused_moved, stats.moved, stats.acknowledged) == (1, 1, 1)
            assert admin.target == new_address and admin.ledger.writes[0].target == new_address
        finally:
            admin.close()
        assert eventually(lambda: node.applied_sequence == written.sequence)
        assert node.decide(imei(3)).source is Source.REPLICA
        assert verifier.stats.alerts == {}
    finally:
        node.stop()
        node.link.close()
        old_channel.close()
        if new_channel is not None:
            new_channel.close()
        if new_server is not None:
            new_server.stop(grace=1)

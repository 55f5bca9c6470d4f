"""A node and the simulation's writers through a custody ceremony on a real register
(real sockets, a SQLite file): the node walks to the announced policy and reports
readiness itself, records the freeze at the final size, refuses nothing, accepts the
officers' verified abort; a write sent while frozen is retried with its request id
until the abort lets it through, acknowledged once."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from google.protobuf.duration_pb2 import Duration

from ceir.api.server import RunningServer, ServerConfig, create_server
from ceir.audit.note import sign_note
from ceir.custody import CustodyPolicy, policy_sha256
from ceir.organisations import BRIEF_ORGANISATIONS
from ceir.service.clock import ManualClock
from ceir.service.orgs import add_organisation
from ceir.storage.database import Database
from ceir.v1 import custody_pb2 as custody_pb
from ceir.v1 import custody_pb2_grpc as custody_grpc
from ceir.v1 import registry_pb2 as registry_pb
from operators_sim.custody_follower import STATE_FILE, CustodySetup
from operators_sim.custody_state import CustodyTrust
from operators_sim.loader import Admin
from operators_sim.node import OPERATORS, SyncNode
from operators_sim.transport import GrpcLink, open_channel

from ..custody.ceremony import YEAR, Keys, now_s

NOTICE_S = 60


def eventually(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Wait for ``condition`` (the node works in its own threads); no timing is asserted."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def keys() -> Keys:
    return Keys.make()


@pytest.fixture
def register(
    tmp_path: Path, keys: Keys
) -> Iterator[tuple[RunningServer, dict[str, str], ManualClock, Path]]:
    zero = keys.policy(0, now_s() + YEAR)
    old, _new, note = keys.write_files(tmp_path, zero)
    url = f"sqlite:///{tmp_path / 'ceir.db'}"
    db = Database(url)
    db.migrate()
    try:
        tokens = {
            org.name: add_organisation(db, org.name, org.kind, list(org.mcc_mncs))
            for org in BRIEF_ORGANISATIONS
        }
    finally:
        db.dispose()
    clock = ManualClock()
    running = create_server(
        ServerConfig(
            db=url,
            address="127.0.0.1:0",
            clock=clock,
            access_log=False,
            follow_interval=0.2,
            insecure=True,
            signing_key=old,
            custody_policy=note,
            custody_expiry_interval=0.2,
        )
    )
    yield running, tokens, clock, note
    running.stop(grace=1)
    gc.collect()


class Custody:
    """The ceremony's steps, each called as the organisation that may take it."""

    def __init__(self, target: str, tokens: dict[str, str]) -> None:
        self.channel = open_channel(target)
        self.stub = custody_grpc.CustodyServiceStub(self.channel)
        self.tokens = tokens

    def call(self, org: str, method: str, request: object) -> custody_pb.Custody:
        metadata = (("authorization", f"Bearer {self.tokens[org]}"),)
        return getattr(self.stub, method)(request, metadata=metadata, timeout=30).custody  # type: ignore[no-any-return]

    def get(self) -> custody_pb.Custody:
        return self.call("kominfo", "GetCustody", custody_pb.GetCustodyRequest())

    def close(self) -> None:
        self.channel.close()


def test_a_node_and_the_writers_follow_a_frozen_then_aborted_ceremony(
    register: tuple[RunningServer, dict[str, str], ManualClock, Path],
    keys: Keys,
    tmp_path: Path,
) -> None:
    running, tokens, clock, note = register
    target = f"127.0.0.1:{running.port}"
    v1: CustodyPolicy = keys.policy(1, now_s() + 30 * 86_400)
    xl = next(op for op in OPERATORS if op.name == "xl")
    state = tmp_path / "nodes" / "xl"
    setup = CustodySetup(
        policy_0=note.read_text(),
        connect=lambda address: GrpcLink(address, tokens["xl"]),
        state_dir=state,
        poll_interval=0.1,
    )
    node = SyncNode(xl, GrpcLink(target, tokens["xl"]), custody=setup)
    ceremony = Custody(target, tokens)
    admin = Admin(target, tokens, retry_for=60)
    try:
        node.start()
        assert node.wait_ready(30)
        assert node.custody is not None and node.verifier is not None
        # Announce: the node walks to policy 1 and reports readiness on its own.
        ceremony.call(
            "telkomsel",
            "ProposePolicy",
            custody_pb.ProposePolicyRequest(policy=v1.text(), notice=Duration(seconds=NOTICE_S)),
        )
        ceremony.call(
            "kominfo",
            "SubmitSignature",
            custody_pb.SubmitSignatureRequest(signed_note=sign_note(v1.text(), keys.approvals())),
        )
        follower = node.custody
        assert eventually(lambda: follower.stats.readiness_reported == [1])
        assert "xl" in ceremony.get().ready_operators
        for op in OPERATORS:
            if op.name != "xl":
                ceremony.call(
                    op.name,
                    "ReportReadiness",
                    custody_pb.ReportReadinessRequest(
                        policy_version=1, policy_sha256=policy_sha256(v1)
                    ),
                )
        assert ceremony.get().state_name == "READY"
        clock.advance(NOTICE_S + 1)
        frozen = ceremony.call("telkomsel", "Freeze", custody_pb.FreezeRequest())
        final = frozen.final_size

        def saved() -> CustodyTrust:
            return CustodyTrust.load(state / STATE_FILE, note.read_text())

        assert eventually(lambda: saved().frozen is not None)
        assert saved().frozen == follower.trust.frozen
        assert follower.trust.frozen is not None and follower.trust.frozen.size == final
        # A write while frozen waits; the node keeps deciding from its lists.
        answer: list[int] = []
        writer = threading.Thread(
            target=lambda: answer.append(
                admin.send(
                    "kemenperin",
                    "RegisterDevice",
                    registry_pb.RegisterDeviceRequest(
                        request_id="drill-register-1",
                        device=registry_pb.DeviceRegistration(
                            imeis=["352099001761481"],
                            source=1,  # type: ignore[arg-type]
                            reference="TPP-1",
                            brand="b",
                            model="m",
                        ),
                    ),
                    "registered 352099001761481",
                ).sequence
            )
        )
        writer.start()
        assert eventually(lambda: admin.ledger.stats.refused_frozen >= 1)
        assert node.decide("352099001761481").source.name in ("REPLICA", "LAST_KNOWN")
        # The officers abort: leaf N + 1 under the old key, verified by the node.
        ceremony.call(
            "kemenperin", "Abort", custody_pb.AbortRequest(abort_note=keys.abort_note(v1))
        )
        writer.join(60)
        assert answer and answer[0] > final + 1  # after the ABORTED leaf
        assert eventually(lambda: node.applied_sequence >= answer[0])
        assert follower.trust.frozen is None
        assert node.verifier.stats.alerts == {}
        stats = admin.ledger.stats
        assert stats.acknowledged == 1 and stats.retried >= 1 and stats.failed == 0
        assert admin.ledger.writes[0].request_id == "drill-register-1"
        assert admin.ledger.conflicts() == []
    finally:
        node.stop()
        node.link.close()  # before the server's teardown collects it mid-poll
        admin.close()
        ceremony.close()

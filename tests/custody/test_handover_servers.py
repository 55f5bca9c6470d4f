"""The handover across two registers, through real sockets: the incoming register
(STANDBY) transfers and activates; once the witness cosigned its first checkpoint it
asks the outgoing one to retire (the commit point), which then sends writers to the
new custodian, and takes writes once it has.

The standby's pull of the log is ``ceir.service.standby``'s (tested there): here
the incoming register starts on a copy of the frozen register's database, and a
stand-in reports that it holds the log, so that what is tested is the ceremony:
the custodian's ceremony read over a real channel, the roots compared, the
handover note, the first checkpoint, the retirement.
"""

from __future__ import annotations

import gc
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest

from ceir.api.server import RunningServer
from ceir.audit import open_checkpoint
from ceir.custody import CustodyPolicy, cosign, split_note
from ceir.service.clock import ManualClock
from ceir.v1 import custody_pb2 as pb
from ceir.v1 import transparency_pb2

from ..helpers import Client, imei
from .ceremony import ORIGIN, YEAR, Keys, custody, error_info, now_s, refused, signed, start
from .test_ceremony_server import checkpoint, frozen, submit


class CopiedLog:
    """Stands in for ``ceir.service.standby.Standby``: the log was copied, the channel is real."""

    def __init__(self, channel: grpc.Channel, token: str, size: int) -> None:
        self.feed = SimpleNamespace(
            channel=channel, metadata=(("authorization", f"Bearer {token}"),)
        )
        self.size = size
        self.error = ""
        self.stopped = False

    def wait_for(self, size: int, timeout: float) -> bool:
        return self.size >= size

    def stop(self) -> None:
        self.stopped = True


@pytest.fixture
def keys() -> Keys:
    return Keys.make()


@pytest.fixture
def policies(keys: Keys) -> tuple[CustodyPolicy, CustodyPolicy]:
    return keys.policy(0, now_s() + YEAR), keys.policy(1, now_s() + 30 * 86_400)


@pytest.fixture
def server(
    db_url: str,
    tokens: dict[str, str],
    clock: ManualClock,
    tmp_path: Path,
    keys: Keys,
    policies: tuple[CustodyPolicy, CustodyPolicy],
) -> Iterator[RunningServer]:
    if not db_url.startswith("sqlite"):
        pytest.skip("the incoming register starts on a copy of the SQLite file")
    running = start(db_url, tmp_path, clock, keys, policies[0])
    yield running
    running.stop(grace=1)
    gc.collect()


def copy_database(source_url: str, target: Path, tamper: bool = False) -> str:
    """A copy of the outgoing register's database without its ceremony (as a standby's)."""
    source = sqlite3.connect(source_url.removeprefix("sqlite:///"))
    copy = sqlite3.connect(target)
    with source, copy:
        source.backup(copy)
        for table in ("custody_ceremony", "custody_policies", "custody_readiness"):
            copy.execute(f"DELETE FROM {table}")
        if tamper:  # a leaf that is not the custodian's
            copy.execute("UPDATE changes SET leaf_hash = zeroblob(32) WHERE sequence = 1")
    source.close()
    copy.close()
    return f"sqlite:///{target}"


def incoming(
    server: RunningServer,
    db_url: str,
    tmp_path: Path,
    clock: ManualClock,
    keys: Keys,
    zero: CustodyPolicy,
    token: str,
    size: int,
    *,
    tamper: bool = False,
) -> tuple[RunningServer, CopiedLog, grpc.Channel]:
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    standby = CopiedLog(channel, token, size)
    url = copy_database(db_url, tmp_path / "incoming.db", tamper)
    running = start(url, tmp_path, clock, keys, zero, incoming=True, standby=standby)
    return running, standby, channel


def test_the_register_is_handed_over_and_the_outgoing_one_retires(
    server: RunningServer,
    db_url: str,
    clients: dict[str, Client],
    keys: Keys,
    policies: tuple[CustodyPolicy, CustodyPolicy],
    clock: ManualClock,
    tmp_path: Path,
) -> None:
    v0, v1 = policies
    clients["kemenperin"].register(imei(1))
    done = frozen(clients, keys, v1, clock)
    n = done.final_size
    text = split_note(done.pending_document)[0]
    submit(
        clients["kominfo"], signed(text, *keys.telkomsel[:2], *keys.kemenperin[:2], keys.kominfo)
    )
    token = clients["kemenperin"].token
    new, standby, custodian = incoming(server, db_url, tmp_path, clock, keys, v0, token, n)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{new.port}") as channel:
            kemenperin = Client(channel, token)
            assert custody(kemenperin).state_name == "STANDBY"
            refusal = refused(kemenperin.register, imei(2))
            assert error_info(refusal)[0] == "NOT_CUSTODIAN"
            assert error_info(refusal)[1]["custodian"] == "telkomsel"
            # Only the incoming custodian transfers.
            xl = Client(channel, clients["xl"].token)
            denied = refused(xl.call, xl.custody.Transfer, pb.TransferRequest())
            assert denied.code() is grpc.StatusCode.PERMISSION_DENIED
            moved = kemenperin.call(kemenperin.custody.Transfer, pb.TransferRequest()).custody
            assert (moved.state_name, moved.transferred_size, moved.policy_version) == (
                "TRANSFERRED",
                n,
                1,
            )

            handover = (
                clients["kemenperin"]
                .call(clients["kemenperin"].custody.GetCustody, pb.GetCustodyRequest())
                .custody.handover
            )
            request = pb.ActivateRequest(handover=handover)
            active = kemenperin.call(kemenperin.custody.Activate, request).custody
            assert active.state_name == "ACTIVE" and standby.stopped
            first = open_checkpoint(active.first_checkpoint, [keys.new.verifier], ORIGIN)
            assert first.size == n + 1
            assert len(split_note(active.handover)[1]) == 7  # both log keys, 4 officers, witness
            waiting = refused(kemenperin.register, imei(2))
            assert error_info(waiting)[0] == "REGISTER_FROZEN"
            proof = kemenperin.call(
                kemenperin.log.GetConsistencyProof,
                transparency_pb2.GetConsistencyProofRequest(first_size=n, second_size=n + 1),
            ).hashes
            # Without the witness quorum on the first checkpoint, no retirement.
            outgoing = clients["telkomsel"]
            bad = pb.RetireRequest(
                handover=active.handover,
                first_checkpoint=active.first_checkpoint,
                consistency_proof=proof,
            )
            short = refused(outgoing.call, outgoing.custody.Retire, bad)
            assert error_info(short)[0] == "WITNESS_QUORUM_NOT_MET"
            assert custody(outgoing).state_name == "FROZEN"

            # The quorum lands: the incoming register has the outgoing one retire, then
            # takes writes.
            cosigned = cosign(active.first_checkpoint, keys.kominfo_cosigner, now_s())
            request_cosign = pb.SubmitCosignatureRequest(checkpoint=cosigned)
            writable = kemenperin.call(kemenperin.custody.SubmitCosignature, request_cosign)
            assert "retired: writes are taken" in writable.custody.detail
            retired = custody(outgoing)
            assert (retired.state_name, retired.custodian) == ("RETIRED", "kemenperin")
            kemenperin.register(imei(2))
            first_cosigned = writable.custody.first_checkpoint

        # Either custodian may still call Retire: it is done already, and says so.
        retire = pb.RetireRequest(
            handover=active.handover, first_checkpoint=first_cosigned, consistency_proof=proof
        )
        again_retired = outgoing.call(outgoing.custody.Retire, retire).custody
        assert (again_retired.state_name, again_retired.custodian) == ("RETIRED", "kemenperin")
        other = pb.RetireRequest(
            handover=custody(clients["kemenperin"]).policies[1],
            first_checkpoint=first_cosigned,
            consistency_proof=proof,
        )
        assert error_info(refused(outgoing.call, outgoing.custody.Retire, other))[0] == (
            "WRONG_STATE"
        )
        gone = refused(clients["kemenperin"].register, imei(3))
        assert error_info(gone) == (
            "REGISTER_MOVED",
            {"custodian": "kemenperin", "endpoint": v1.endpoint},
        )
        assert checkpoint(outgoing)[1] == n
        # Read-only for good: a restart keeps it retired.
        server.stop(grace=1)
        again = start(db_url, tmp_path, clock, keys, v0)
        try:
            with grpc.insecure_channel(f"127.0.0.1:{again.port}") as channel:
                assert custody(Client(channel, token)).state_name == "RETIRED"
        finally:
            again.stop(grace=1)
    finally:
        new.stop(grace=1)
        custodian.close()


def test_a_log_with_another_root_is_never_activated(
    server: RunningServer,
    db_url: str,
    clients: dict[str, Client],
    keys: Keys,
    policies: tuple[CustodyPolicy, CustodyPolicy],
    clock: ManualClock,
    tmp_path: Path,
) -> None:
    v0, v1 = policies
    clients["kemenperin"].register(imei(1))
    n = frozen(clients, keys, v1, clock).final_size
    token = clients["kemenperin"].token
    new, _standby, custodian = incoming(
        server, db_url, tmp_path, clock, keys, v0, token, n, tamper=True
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{new.port}") as channel:
            kemenperin = Client(channel, token)
            error = refused(kemenperin.call, kemenperin.custody.Transfer, pb.TransferRequest())
            assert error_info(error)[0] == "ROOTS_DIFFER"
            assert custody(kemenperin).state_name == "STANDBY"
            handover = custody(clients["kemenperin"]).handover
            request = pb.ActivateRequest(handover=handover)
            late = refused(kemenperin.call, kemenperin.custody.Activate, request)
            assert error_info(late)[0] == "WRONG_STATE"
    finally:
        new.stop(grace=1)
        custodian.close()


def test_an_abort_before_the_retirement_leaves_the_incoming_register_unwritable(
    server: RunningServer,
    db_url: str,
    clients: dict[str, Client],
    keys: Keys,
    policies: tuple[CustodyPolicy, CustodyPolicy],
    clock: ManualClock,
    tmp_path: Path,
) -> None:
    """The outgoing register's retirement is the commit point: called off before it,
    the handover never gives the incoming register writes, whatever it holds."""
    v0, v1 = policies
    clients["kemenperin"].register(imei(1))
    done = frozen(clients, keys, v1, clock)
    text = split_note(done.pending_document)[0]
    submit(
        clients["kominfo"], signed(text, *keys.telkomsel[:2], *keys.kemenperin[:2], keys.kominfo)
    )
    token = clients["kemenperin"].token
    new, _standby, custodian = incoming(
        server, db_url, tmp_path, clock, keys, v0, token, done.final_size
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{new.port}") as channel:
            kemenperin = Client(channel, token)
            kemenperin.call(kemenperin.custody.Transfer, pb.TransferRequest())
            handover = pb.ActivateRequest(handover=custody(clients["kemenperin"]).handover)
            active = kemenperin.call(kemenperin.custody.Activate, handover).custody
            outgoing = clients["telkomsel"]
            abort = pb.AbortRequest(abort_note=keys.abort_note(v1))
            assert outgoing.call(outgoing.custody.Abort, abort).custody.state_name == "ABORTED"
            clients["kemenperin"].register(imei(2))  # the outgoing one is in charge again

            cosigned = cosign(active.first_checkpoint, keys.kominfo_cosigner, now_s())
            request = pb.SubmitCosignatureRequest(checkpoint=cosigned)
            after = kemenperin.call(kemenperin.custody.SubmitCosignature, request).custody
            assert after.state_name == "ACTIVE"
            assert after.detail.startswith("the custodian did not retire:"), after.detail
            assert "ABORTED" in after.detail
            for _ in range(2):  # asked again on later calls: still no
                assert custody(kemenperin).detail == after.detail
                refusal = refused(kemenperin.register, imei(3))
                assert error_info(refusal)[0] == "REGISTER_FROZEN"
            assert custody(outgoing).state_name == "ABORTED"
    finally:
        new.stop(grace=1)
        custodian.close()

"""The handover across two registers, through real sockets: the incoming register
(STANDBY) transfers, activates and takes writes once the witness cosigned its first
checkpoint; the outgoing one retires and sends writers to the new custodian.

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

            cosigned = cosign(active.first_checkpoint, keys.kominfo_cosigner, now_s())
            request_cosign = pb.SubmitCosignatureRequest(checkpoint=cosigned)
            writable = kemenperin.call(kemenperin.custody.SubmitCosignature, request_cosign)
            assert "writes are taken" in writable.custody.detail
            kemenperin.register(imei(2))
            proof = kemenperin.call(
                kemenperin.log.GetConsistencyProof,
                transparency_pb2.GetConsistencyProofRequest(first_size=n, second_size=n + 1),
            ).hashes
            first_cosigned = writable.custody.first_checkpoint

        outgoing = clients["telkomsel"]
        retire = pb.RetireRequest(
            handover=active.handover, first_checkpoint=first_cosigned, consistency_proof=proof
        )
        bad = pb.RetireRequest(
            handover=active.handover,
            first_checkpoint=active.first_checkpoint,
            consistency_proof=proof,
        )
        short = refused(outgoing.call, outgoing.custody.Retire, bad)
        assert error_info(short)[0] == "WITNESS_QUORUM_NOT_MET"
        retired = outgoing.call(outgoing.custody.Retire, retire).custody
        assert (retired.state_name, retired.custodian) == ("RETIRED", "kemenperin")
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

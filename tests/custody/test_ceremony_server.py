"""The custody ceremony on one register, through real sockets: propose, sign, announce,
readiness, freeze (writes refused, checks answered, the log ends at N), cosign, abort,
expiry, permissions and a restart."""

from __future__ import annotations

import dataclasses
import gc
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.field_mask_pb2 import FieldMask

from ceir.api.server import RunningServer
from ceir.audit import Checkpoint, open_checkpoint
from ceir.audit.note import NoteSignature
from ceir.custody import CustodyPolicy, Handover, cosign, policy_sha256, verify_cosignatures
from ceir.custody import split_note as split
from ceir.service.clock import ManualClock
from ceir.v1 import custody_pb2 as pb
from ceir.v1 import equipment_check_pb2 as check_pb
from ceir.v1 import policy_pb2, transparency_pb2, types_pb2

from ..helpers import TELKOMSEL_IMSI, Client, imei, status_names
from .ceremony import (
    ORIGIN,
    YEAR,
    Keys,
    custody,
    error_info,
    now_s,
    refused,
    retry_delay,
    signed,
    start,
)

OPERATORS = ("indosat", "telkomsel", "xl")
NOTICE_S = 60


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
    running = start(db_url, tmp_path, clock, keys, policies[0])
    yield running
    running.stop(grace=1)
    gc.collect()


# --- steps -----------------------------------------------------------------------------------


def propose(client: Client, policy: str, notice: int = NOTICE_S) -> pb.Custody:
    request = pb.ProposePolicyRequest(policy=policy, notice=Duration(seconds=notice))
    return client.call(client.custody.ProposePolicy, request).custody


def submit(client: Client, note: str) -> pb.Custody:
    request = pb.SubmitSignatureRequest(signed_note=note)
    return client.call(client.custody.SubmitSignature, request).custody


def report(client: Client, policy: CustodyPolicy) -> pb.Custody:
    request = pb.ReportReadinessRequest(
        policy_version=policy.version, policy_sha256=policy_sha256(policy)
    )
    return client.call(client.custody.ReportReadiness, request).custody


def freeze(client: Client) -> pb.Custody:
    return client.call(client.custody.Freeze, pb.FreezeRequest()).custody


def announce(clients: dict[str, Client], keys: Keys, v1: CustodyPolicy) -> pb.Custody:
    telkomsel = clients["telkomsel"]
    propose(telkomsel, v1.text())
    return submit(clients["kominfo"], signed(v1.text(), *keys.approvals()))


def ready(clients: dict[str, Client], v1: CustodyPolicy) -> pb.Custody:
    done = pb.Custody()
    for name in OPERATORS:
        done = report(clients[name], v1)
    return done


def frozen(
    clients: dict[str, Client], keys: Keys, v1: CustodyPolicy, clock: ManualClock
) -> pb.Custody:
    announce(clients, keys, v1)
    ready(clients, v1)
    clock.advance(NOTICE_S + 1)
    return freeze(clients["telkomsel"])


def checkpoint(client: Client) -> tuple[str, int]:
    answer = client.call(client.log.GetCheckpoint, transparency_pb2.GetCheckpointRequest())
    return answer.checkpoint, answer.tree_size


# --- the happy path ------------------------------------------------------------------------


def test_the_ceremony_runs_to_frozen_and_the_log_ends_at_the_final_checkpoint(
    clients: dict[str, Client],
    keys: Keys,
    policies: tuple[CustodyPolicy, CustodyPolicy],
    clock: ManualClock,
) -> None:
    v0, v1 = policies
    kemenperin, telkomsel = clients["kemenperin"], clients["telkomsel"]
    before = kemenperin.register(imei(1), request_id="before-the-freeze")
    start = custody(telkomsel)
    assert (start.state_name, start.policy_version, start.custodian) == (
        "OPERATING",
        0,
        "telkomsel",
    )

    pending = propose(telkomsel, v1.text())
    assert (pending.pending_kind, pending.pending_document) == ("policy", v1.text())
    # Signatures arrive in parts: the outgoing officers alone announce nothing.
    part = submit(kemenperin, signed(v1.text(), *keys.telkomsel[:2]))
    assert part.state_name == "OPERATING"
    assert "THRESHOLD_NOT_MET" in part.detail
    announced = submit(kemenperin, signed(v1.text(), *keys.kemenperin[:2], keys.kominfo))
    assert announced.state_name == "ANNOUNCED"
    assert announced.policy_version == 1 and len(announced.policies) == 2
    assert sorted(announced.waiting_operators) == list(OPERATORS)
    assert announced.notice_ends_at.seconds - announced.announced_at.seconds == NOTICE_S

    for name in OPERATORS[:-1]:
        assert report(clients[name], v1).state_name == "ANNOUNCED"
    assert report(clients["xl"], v1).state_name == "READY"

    early = refused(freeze, telkomsel)
    assert error_info(early)[0] == "NOTICE_PERIOD"
    assert 0 < (retry_delay(early) or 0) <= NOTICE_S
    clock.advance(NOTICE_S + 1)
    done = freeze(telkomsel)
    assert done.state_name == "FROZEN"
    n = done.final_size
    final = open_checkpoint(done.final_checkpoint, [keys.old.verifier], ORIGIN)
    assert final.size == n == checkpoint(telkomsel)[1]
    # The handover note is the pending document, already signed by the old log key.
    text, lines = split(done.pending_document)
    assert done.pending_kind == "handover"
    assert text == Handover.between(v0, v1, n, final.root_hash).text()
    assert [line.name for line in lines] == [ORIGIN]

    # Writes are refused with RetryInfo; a write that committed before is replayed.
    blocked = refused(kemenperin.register, imei(2))
    assert blocked.code() is grpc.StatusCode.FAILED_PRECONDITION
    reason, metadata = error_info(blocked)
    assert reason == "REGISTER_FROZEN"
    assert metadata["custodian"] == "telkomsel" and metadata["next_custodian"] == "kemenperin"
    assert retry_delay(blocked) == 1.0
    policy = refused(
        clients["kominfo"].call,
        clients["kominfo"].policy.UpdatePolicy,
        policy_pb2.UpdatePolicyRequest(
            policy=types_pb2.Policy(grace_days=5), update_mask=FieldMask(paths=["grace_days"])
        ),
    )
    assert error_info(policy)[0] == "REGISTER_FROZEN"
    again = kemenperin.register(imei(1), request_id="before-the-freeze")
    assert again == before

    # Checks are answered, a first sight too; nothing is appended.
    assert status_names(telkomsel.check_imei(imei(1)))[0] == "EQUIPMENT_STATUS_WHITELISTED"
    first_sight = telkomsel.check_imei(imei(99), imsi=TELKOMSEL_IMSI)
    assert status_names(first_sight)[0] == "EQUIPMENT_STATUS_GREYLISTED"
    batch = telkomsel.call(
        telkomsel.check.CheckEquipmentBatch,
        check_pb.CheckEquipmentBatchRequest(
            checks=[check_pb.CheckEquipmentRequest(imei=imei(98), imsi=TELKOMSEL_IMSI)]
        ),
    )
    assert len(batch.results) == 1
    note, size = checkpoint(telkomsel)
    assert size == n
    assert open_checkpoint(note, [keys.old.verifier], ORIGIN).root_hash == final.root_hash

    # Officers and the witness sign the handover note; the witness cosigns the final checkpoint.
    signers = [*keys.telkomsel[:2], *keys.kemenperin[:2], keys.kominfo]
    after = submit(kemenperin, signed(text, *signers))
    assert len(split(after.handover)[1]) == 1 + len(signers)
    cosigned = cosign(done.final_checkpoint, keys.kominfo_cosigner, now_s())
    request = pb.SubmitCosignatureRequest(checkpoint=cosigned)
    answer = kemenperin.call(kemenperin.custody.SubmitCosignature, request).custody
    assert verify_cosignatures(answer.final_checkpoint, [keys.kominfo_cosigner.verifier])
    assert Checkpoint.parse(split(answer.final_checkpoint)[0]).size == n


def test_a_frozen_register_stays_frozen_after_a_restart(
    db_url: str,
    server: RunningServer,
    clients: dict[str, Client],
    keys: Keys,
    policies: tuple[CustodyPolicy, CustodyPolicy],
    clock: ManualClock,
    tmp_path: Path,
) -> None:
    done = frozen(clients, keys, policies[1], clock)
    server.stop(grace=1)
    again = start(db_url, tmp_path, clock, keys, policies[0])
    try:
        with grpc.insecure_channel(f"127.0.0.1:{again.port}") as channel:
            client = Client(channel, clients["kemenperin"].token)
            now = custody(client)
            assert (now.state_name, now.final_size) == ("FROZEN", done.final_size)
            assert now.final_checkpoint == done.final_checkpoint
            assert error_info(refused(client.register, imei(7)))[0] == "REGISTER_FROZEN"
            assert checkpoint(client)[1] == done.final_size
    finally:
        again.stop(grace=1)


# --- signatures ---------------------------------------------------------------------------------


def test_signatures_are_checked_line_by_line(
    clients: dict[str, Client], keys: Keys, policies: tuple[CustodyPolicy, CustodyPolicy]
) -> None:
    v1 = policies[1]
    kominfo = clients["kominfo"]
    propose(clients["telkomsel"], v1.text())
    stranger = Keys.make().telkomsel[0]
    cases = {
        "UNKNOWN_SIGNER": signed(v1.text(), keys.telkomsel[0], stranger),
        "DOCUMENT_MISMATCH": signed(v1.text().replace("version 1", "version 2"), keys.kominfo),
        "NOTE_FORMAT": "not a note",
    }
    for reason, note in cases.items():
        error = refused(submit, kominfo, note)
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(error)[0] == reason
    good = signed(v1.text(), keys.telkomsel[0])
    ayu = keys.telkomsel[0]
    forged = v1.text() + "\n" + NoteSignature(ayu.name, ayu.key_id, bytes(64)).line()
    assert error_info(refused(submit, kominfo, forged))[0] == "BAD_SIGNATURE"
    # Nothing of a refused note was kept; a key signing twice counts once.
    assert "\n\n" not in custody(kominfo).pending_document
    submit(kominfo, good)
    twice = submit(kominfo, good)
    assert len(split(twice.pending_document)[1]) == 1


def test_outgoing_officers_and_the_witness_alone_never_announce(
    clients: dict[str, Client], keys: Keys, policies: tuple[CustodyPolicy, CustodyPolicy]
) -> None:
    v1 = policies[1]
    propose(clients["telkomsel"], v1.text())
    after = submit(clients["kominfo"], signed(v1.text(), *keys.telkomsel, keys.kominfo))
    assert after.state_name == "OPERATING" and after.policy_version == 0
    assert "THRESHOLD_NOT_MET" in after.detail and "kemenperin" in after.detail
    assert error_info(refused(freeze, clients["telkomsel"]))[0] == "WRONG_STATE"


def test_a_proposal_must_be_the_next_unexpired_version(
    clients: dict[str, Client], keys: Keys, policies: tuple[CustodyPolicy, CustodyPolicy]
) -> None:
    v1 = policies[1]
    telkomsel = clients["telkomsel"]
    for policy, reason in (
        (dataclasses.replace(v1, version=2), "WRONG_VERSION"),
        (dataclasses.replace(v1, origin="another.log"), "WRONG_ORIGIN"),
        (dataclasses.replace(v1, expires=now_s() - 1), "POLICY_EXPIRED"),
    ):
        assert error_info(refused(propose, telkomsel, policy.text()))[0] == reason
    assert error_info(refused(propose, telkomsel, "version 1\n"))[0] == "POLICY_FORMAT"
    assert error_info(refused(propose, telkomsel, v1.text(), -1))[0] == "INVALID_ARGUMENT"


# --- readiness and permissions ------------------------------------------------------------------


def test_no_freeze_until_every_operator_is_ready(
    clients: dict[str, Client],
    keys: Keys,
    policies: tuple[CustodyPolicy, CustodyPolicy],
    clock: ManualClock,
) -> None:
    v1 = policies[1]
    announce(clients, keys, v1)
    report(clients["telkomsel"], v1)
    report(clients["telkomsel"], v1)  # once is enough; twice changes nothing
    clock.advance(NOTICE_S + 1)
    error = refused(freeze, clients["telkomsel"])
    assert error_info(error) == ("WRONG_STATE", {"state": "ANNOUNCED"})
    now = custody(clients["xl"])
    assert list(now.ready_operators) == ["telkomsel"]
    assert sorted(now.waiting_operators) == ["indosat", "xl"]
    # The readiness is for the announced text: another digest or version is refused.
    wrong = pb.ReportReadinessRequest(policy_version=1, policy_sha256="0" * 64)
    xl = clients["xl"]
    assert error_info(refused(xl.call, xl.custody.ReportReadiness, wrong))[0] == "POLICY_MISMATCH"


def test_who_may_take_which_step(
    clients: dict[str, Client],
    keys: Keys,
    policies: tuple[CustodyPolicy, CustodyPolicy],
    clock: ManualClock,
) -> None:
    v1 = policies[1]
    for name in ("indosat", "customs"):  # an operator that is not the custodian; customs
        error = refused(propose, clients[name], v1.text())
        assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    announce(clients, keys, v1)
    for name in ("kemenperin", "kominfo", "customs"):  # operators only
        error = refused(report, clients[name], v1)
        assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    ready(clients, v1)
    clock.advance(NOTICE_S + 1)
    for name in ("xl", "kemenperin", "kominfo"):  # the outgoing custodian only
        error = refused(freeze, clients[name])
        assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert freeze(clients["telkomsel"]).state_name == "FROZEN"


# --- abort -------------------------------------------------------------------------------------


def test_the_officers_abort_a_frozen_register_and_writes_resume_with_nothing_lost(
    clients: dict[str, Client],
    keys: Keys,
    policies: tuple[CustodyPolicy, CustodyPolicy],
    clock: ManualClock,
) -> None:
    v1 = policies[1]
    kemenperin = clients["kemenperin"]
    kemenperin.register(imei(1))
    done = frozen(clients, keys, v1, clock)
    # One officer is not enough; the incoming custodian's officers do not count.
    text = keys.abort_note(v1).split("\n\n")[0] + "\n"
    for signers in ((keys.telkomsel[0],), keys.kemenperin[:2]):
        note = pb.AbortRequest(abort_note=signed(text, *signers))
        error = refused(kemenperin.call, kemenperin.custody.Abort, note)
        assert error_info(error)[0] in ("THRESHOLD_NOT_MET", "UNKNOWN_SIGNER")
    aborted = kemenperin.call(
        kemenperin.custody.Abort, pb.AbortRequest(abort_note=keys.abort_note(v1))
    ).custody
    assert aborted.state_name == "ABORTED" and aborted.policy_version == 0
    assert len(aborted.policies) == 1 and aborted.abort_note == keys.abort_note(v1)
    assert checkpoint(kemenperin)[1] == done.final_size + 1  # the ABORTED leaf
    kemenperin.register(imei(2))
    assert status_names(kemenperin.check_imei(imei(1)))[0] == "EQUIPMENT_STATUS_WHITELISTED"
    assert status_names(kemenperin.check_imei(imei(2)))[0] == "EQUIPMENT_STATUS_WHITELISTED"
    # A new proposal may follow; the old abort note does not call off another text.
    other = dataclasses.replace(v1, endpoint="ceir.kemenperin.example:9443")
    assert propose(clients["telkomsel"], other.text()).state_name == "OPERATING"
    stale = refused(
        kemenperin.call, kemenperin.custody.Abort, pb.AbortRequest(abort_note=keys.abort_note(v1))
    )
    assert error_info(stale)[0] == "WRONG_VERSION"


def test_an_announced_policy_that_expires_aborts_the_ceremony(
    clients: dict[str, Client],
    keys: Keys,
    policies: tuple[CustodyPolicy, CustodyPolicy],
    clock: ManualClock,
) -> None:
    v1 = policies[1]
    done = frozen(clients, keys, v1, clock)
    clock.advance(31 * 86_400)
    after = custody(clients["xl"])
    assert after.state_name == "ABORTED" and "expired" in after.detail
    assert checkpoint(clients["xl"])[1] == done.final_size + 1
    clients["kemenperin"].register(imei(3))

"""The witness over a real socket: cosigns what extends its last checkpoint, refuses the rest."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from ceir.audit.checkpoint import Checkpoint, sign_checkpoint
from ceir.audit.errors import KeyFormatError
from ceir.audit.merkle import MemoryHashStore, Prover
from ceir.custody import cosign, sign_policy, verify_cosignatures
from ceir.custody.keyfiles import write_cosigner_key, write_note_key
from ceir.v1 import custody_pb2, custody_pb2_grpc
from ceir.witness import RunningWitness, WitnessConfig, create_witness_server
from ceir.witness.service import MAX_POLICIES

from ..custody.example import (
    AYU,
    BUDI,
    KOMINFO,
    KOMINFO_COSIGNER,
    NEW_LOG,
    OLD_LOG,
    V0,
    V1,
    V1_SIGNERS,
    private_key,
)
from ..custody.handover_example import FREEZE_TIME, checkpoint, leaves, tree
from ..helpers import error_reason, violations

NOW = FREEZE_TIME + 100  # both policies in force


def error_metadata(error: grpc.RpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return dict(info.metadata)
    return {}


@pytest.fixture
def config(tmp_path: Path) -> WitnessConfig:
    write_note_key(tmp_path / "kominfo.key", KOMINFO.name, private_key("kominfo witness note key"))
    write_cosigner_key(
        tmp_path / "kominfo.cosigner", KOMINFO.name, private_key("kominfo witness cosigner key")
    )
    (tmp_path / "policy-0.note").write_text(sign_policy(V0, [AYU, BUDI, KOMINFO]))
    return WitnessConfig(
        name=KOMINFO.name,
        note_key=tmp_path / "kominfo.key",
        cosigner_key=tmp_path / "kominfo.cosigner",
        policy=tmp_path / "policy-0.note",
        state=tmp_path / "witness.json",
        insecure=True,
        clock=lambda: NOW,
    )


@pytest.fixture
def witness(config: WitnessConfig) -> Iterator[RunningWitness]:
    running = create_witness_server(config)
    yield running
    running.stop(grace=1)


@pytest.fixture
def stub(witness: RunningWitness) -> Iterator[custody_pb2_grpc.WitnessServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{witness.port}") as channel:
        yield custody_pb2_grpc.WitnessServiceStub(channel)


def add(
    stub: custody_pb2_grpc.WitnessServiceStub,
    note: str,
    old_size: int = 0,
    proof: list[bytes] | None = None,
    policies: list[str] | None = None,
) -> str:
    request = custody_pb2.AddCheckpointRequest(
        old_size=old_size, consistency_proof=proof or [], checkpoint=note, policies=policies or []
    )
    return stub.AddCheckpoint(request, timeout=10).cosignature


def refusal(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    return caught.value


def proof(size1: int, size2: int) -> list[bytes]:
    return tree(size2)[1].consistency_proof(size1, size2)


def test_the_first_checkpoint_is_cosigned_and_remembered(
    stub: custody_pb2_grpc.WitnessServiceStub, config: WitnessConfig
) -> None:
    note = checkpoint(3, OLD_LOG, FREEZE_TIME)
    line = add(stub, note)
    assert line.startswith(f"— {KOMINFO.name} ") and line.endswith("\n")
    cosigned = verify_cosignatures(note + line, [KOMINFO_COSIGNER.verifier])
    assert [(c.witness, c.timestamp) for c in cosigned] == [(KOMINFO_COSIGNER.verifier.label, NOW)]
    state = json.loads(config.state.read_text())["logs"][V0.origin]
    assert (state["size"], state["epoch"], state["policies"]) == (3, 0, [])
    assert [p.name for p in config.state.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_a_wrong_old_size_is_a_conflict_naming_the_witness_size(
    stub: custody_pb2_grpc.WitnessServiceStub,
) -> None:
    add(stub, checkpoint(3, OLD_LOG, FREEZE_TIME))
    error = refusal(lambda: add(stub, checkpoint(5, OLD_LOG, FREEZE_TIME)))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(error) == "WITNESS_CONFLICT"
    assert error_metadata(error) == {"size": "3"}
    # The caller fetches the proof from the witness's size and asks again.
    add(stub, checkpoint(5, OLD_LOG, FREEZE_TIME), 3, proof(3, 5))


def test_a_wrong_proof_is_inconsistent(stub: custody_pb2_grpc.WitnessServiceStub) -> None:
    add(stub, checkpoint(3, OLD_LOG, FREEZE_TIME))
    bad = proof(3, 5)
    bad[0] = bytes(32)
    error = refusal(lambda: add(stub, checkpoint(5, OLD_LOG, FREEZE_TIME), 3, bad))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(error) == "INCONSISTENT"
    assert violations(error)[0][0] == "consistency_proof"


def test_a_fork_of_the_log_is_refused_and_logged_as_a_split_view(
    stub: custody_pb2_grpc.WitnessServiceStub, caplog: pytest.LogCaptureFixture
) -> None:
    add(stub, checkpoint(3, OLD_LOG, FREEZE_TIME))
    # Same key, same size as a later honest checkpoint, another history.
    forked = MemoryHashStore()
    forked.extend([*leaves(2), bytes(32), *leaves(5)[3:]])
    prover = Prover(forked)
    note = sign_checkpoint(Checkpoint(V0.origin, 5, prover.root(5), 1), [OLD_LOG])
    error = refusal(lambda: add(stub, note, 3, prover.consistency_proof(3, 5)))
    assert error_reason(error) == "INCONSISTENT"
    assert "split view" in caplog.text


def test_a_checkpoint_of_an_unknown_key_is_refused(
    stub: custody_pb2_grpc.WitnessServiceStub,
) -> None:
    error = refusal(lambda: add(stub, checkpoint(3, NEW_LOG, FREEZE_TIME)))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(error) == "UNKNOWN_LOG_KEY"


def test_the_witness_follows_the_chain_to_the_new_key_and_refuses_the_old_one_after(
    stub: custody_pb2_grpc.WitnessServiceStub, config: WitnessConfig
) -> None:
    policy_1 = sign_policy(V1, list(V1_SIGNERS))
    add(stub, checkpoint(5, OLD_LOG, FREEZE_TIME))
    add(stub, checkpoint(6, NEW_LOG, FREEZE_TIME), 5, proof(5, 6), [policy_1])
    state = json.loads(config.state.read_text())["logs"][V0.origin]
    assert (state["size"], state["epoch"], state["policies"]) == (6, 1, [policy_1])
    # The old custodian signing on (a split view) is refused, whatever the proof.
    error = refusal(lambda: add(stub, checkpoint(7, OLD_LOG, FREEZE_TIME), 6, proof(6, 7)))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(error) == "SUPERSEDED_LOG_KEY"
    # Policies it holds may be sent again.
    add(stub, checkpoint(7, NEW_LOG, FREEZE_TIME), 6, proof(6, 7), [policy_1])


def test_a_policy_signed_by_the_outgoing_side_only_is_not_walked(
    stub: custody_pb2_grpc.WitnessServiceStub,
) -> None:
    policy_1 = sign_policy(V1, [AYU, BUDI, KOMINFO])
    error = refusal(lambda: add(stub, checkpoint(6, NEW_LOG, FREEZE_TIME), policies=[policy_1]))
    assert error_reason(error) == "THRESHOLD_NOT_MET"
    assert violations(error)[0][0] == "policies"


def test_too_many_policies_and_long_proofs_are_refused_before_any_work(
    stub: custody_pb2_grpc.WitnessServiceStub,
) -> None:
    note = checkpoint(3, OLD_LOG, FREEZE_TIME)
    error = refusal(lambda: add(stub, note, policies=["x"] * (MAX_POLICIES + 1)))
    assert error_reason(error) == "TOO_LARGE"
    error = refusal(lambda: add(stub, note, 2, [bytes(32)] * 1000))
    assert error_reason(error) == "TOO_LARGE"
    error = refusal(lambda: add(stub, "not a note"))
    assert error_reason(error) == "CHECKPOINT_FORMAT"


def test_a_message_larger_than_the_limit_never_reaches_the_witness(
    stub: custody_pb2_grpc.WitnessServiceStub,
) -> None:
    error = refusal(lambda: add(stub, "x" * (2 << 20)))
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


def test_the_state_survives_a_restart(config: WitnessConfig) -> None:
    first = create_witness_server(config)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{first.port}") as channel:
            add(custody_pb2_grpc.WitnessServiceStub(channel), checkpoint(4, OLD_LOG, FREEZE_TIME))
    finally:
        first.stop(grace=1)
    second = create_witness_server(config)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{second.port}") as channel:
            stub = custody_pb2_grpc.WitnessServiceStub(channel)
            error = refusal(lambda: add(stub, checkpoint(4, OLD_LOG, FREEZE_TIME)))
            assert error_metadata(error) == {"size": "4"}
    finally:
        second.stop(grace=1)


def test_the_witness_answers_health_checks(witness: RunningWitness) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{witness.port}") as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="ceir.v1.WitnessService"), timeout=5
        )
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_keys_of_another_name_are_refused_at_start(config: WitnessConfig) -> None:
    with pytest.raises(KeyFormatError, match="not of --name"):
        create_witness_server(replace(config, name="witness.other.example"))


def test_cosign_adds_the_line_a_witness_returns(
    stub: custody_pb2_grpc.WitnessServiceStub,
) -> None:
    note = checkpoint(3, OLD_LOG, FREEZE_TIME)
    line = add(stub, note)
    assert cosign(note, KOMINFO_COSIGNER, NOW) == note + line

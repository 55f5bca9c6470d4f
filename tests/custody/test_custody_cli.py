"""``ceir custody`` against a real custodian register, a real witness and a second register.

The incoming register's side (standby, transfer, activate) needs A1's
standby; until it lands, the first checkpoint of the new key is made here
the way the incoming register makes it (leaf N + 1 under the new key,
cosigned by the same witness), and everything else goes through the CLI
and the real outgoing register.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from ceir.audit.checkpoint import Checkpoint, sign_checkpoint
from ceir.audit.merkle import MemoryHashStore, Prover, leaf_hash
from ceir.custody import AbortNote, CustodyPolicy, policy_sha256, split_note
from ceir.custody.evidence import consistency_text, policy_text, write_evidence
from ceir.service.merkle_log import DatabaseHashStore
from ceir.v1 import custody_pb2, custody_pb2_grpc, transparency_pb2, transparency_pb2_grpc

from .cli_ceremony import CLEAN_ENV, Ceremony, ceremony, ok, run
from .example import NEW_LOG, ORIGIN


@pytest.fixture
def cer(tmp_path: Path) -> Iterator[Ceremony]:
    with ceremony(tmp_path) as started:
        yield started


def status(cer: Ceremony, org: str = "kominfo", port: int | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(
        ok("custody", "status", "--json", *cer.as_org(org, port)).stdout
    )
    return answer


def announce_and_freeze(cer: Ceremony) -> Path:
    """Policy 1 proposed, signed, announced, every operator ready, frozen: its text file."""
    policy_1 = cer.draft(
        1,
        "kemenperin",
        f"localhost:{cer.incoming.port}",
        cer.keys["new-log"].with_suffix(".key.pub"),
    )
    ok("custody", "propose", policy_1, "--notice", "0s", *cer.as_org("telkomsel"))
    ok("custody", "document", "--out", cer.path("pending.txt"), *cer.as_org("kemenperin"))
    assert cer.path("pending.txt").read_text() == policy_1.read_text()
    signed = cer.sign(cer.path("pending.txt"), "ayu", "budi", "dewi", "eko", "kominfo")
    ok("custody", "submit", signed, *cer.as_org("kemenperin"))
    assert status(cer)["state"] == "ANNOUNCED"
    ok("custody", "ready", "--policy-version", "1", "--policy", policy_1, *cer.as_org("telkomsel"))
    assert status(cer)["state"] == "READY"
    ok("custody", "freeze", *cer.as_org("telkomsel"))
    return policy_1


def first_checkpoint(cer: Ceremony, final_size: int) -> tuple[str, list[bytes]]:
    """The incoming register's first checkpoint (leaf N + 1 under the new key) and the
    consistency proof from N, as the incoming register would make them."""
    store = MemoryHashStore()
    store.extend(DatabaseHashStore(cer.outgoing.register.db).node_hashes(0, 0, final_size))
    store.append(leaf_hash(b"the ACTIVE leaf"))
    prover = Prover(store)
    note = sign_checkpoint(
        Checkpoint(ORIGIN, final_size + 1, prover.root(final_size + 1), 1_800_000_000_000_000),
        [NEW_LOG],
    )
    return note, prover.consistency_proof(final_size, final_size + 1)


def witness_cosigns(
    cer: Ceremony, note: str, old_size: int, proof: list[bytes], policies: list[str]
) -> str:
    with grpc.insecure_channel(cer.witness_address) as channel:
        answer = custody_pb2_grpc.WitnessServiceStub(channel).AddCheckpoint(
            custody_pb2.AddCheckpointRequest(
                old_size=old_size, consistency_proof=proof, checkpoint=note, policies=policies
            ),
            timeout=10,
        )
    return note + answer.cosignature


def test_status_of_a_register_under_policy_0(cer: Ceremony) -> None:
    shown = status(cer)
    assert (shown["state"], shown["policy_version"], shown["custodian"]) == (
        "OPERATING",
        0,
        "telkomsel",
    )
    table = ok("custody", "status", *cer.as_org("telkomsel")).stdout
    assert "OPERATING" in table and "telkomsel" in table


def test_an_officer_cannot_sign_twice_and_sign_sends_nothing(cer: Ceremony) -> None:
    text = cer.path("doc.txt")
    text.write_text(CustodyPolicy.parse(policy_text(status(cer)["policies"][0])).text())
    signed = cer.sign(text, "ayu")
    again = run("custody", "sign", signed, "--key", cer.keys["ayu"])
    assert (
        again.exit_code == 1 and "already signed by officer.telkomsel.example/ayu" in again.stderr
    )
    assert split_note(signed.read_text())[0] == text.read_text()


def test_the_outgoing_ceremony_from_proposal_to_retirement_and_its_evidence(cer: Ceremony) -> None:
    # The witness has cosigned an earlier checkpoint of this log: `cosign` must
    # then bring a consistency proof from that size.
    ok("policy", "set", "--grace-days", "2", *cer.as_org("kominfo"))
    with _tls(cer) as channel:
        earlier = (
            transparency_pb2_grpc.TransparencyServiceStub(channel)
            .GetCheckpoint(transparency_pb2.GetCheckpointRequest(), timeout=10)
            .checkpoint
        )
    assert Checkpoint.parse(split_note(earlier)[0]).size == 1
    policy_1 = announce_and_freeze(cer)
    witness_cosigns(cer, earlier, 0, [], [])
    frozen = status(cer)
    assert frozen["state"] == "FROZEN" and frozen["final_size"] > 0

    refused = run("policy", "set", "--grace-days", "3", "--retry-for", "0", *cer.as_org("kominfo"))
    assert refused.exit_code == 1 and "REGISTER_FROZEN" in refused.stderr

    cosigned = ok("custody", "cosign", "--witness", cer.witness_address, *cer.as_org("kominfo"))
    assert "the witness holds size" in cosigned.stderr
    assert "— witness.kominfo.example " in status(cer)["final_checkpoint"]

    ok("custody", "document", "--out", cer.path("handover.txt"), *cer.as_org("telkomsel"))
    signed = cer.sign(cer.path("handover.txt"), "ayu", "budi", "dewi", "eko", "kominfo")
    ok("custody", "submit", signed, *cer.as_org("telkomsel"))
    shown = status(cer)
    cer.path("handover.note").write_text(shown["handover"])
    handover = cer.sign(cer.path("handover.note"), "new-log")  # the incoming register's key

    first, proof = first_checkpoint(cer, shown["final_size"])
    first = witness_cosigns(cer, first, shown["final_size"], proof, shown["policies"][1:])
    cer.path("first.note").write_text(first)
    cer.path("proof.txt").write_text(
        consistency_text(shown["final_size"], shown["final_size"] + 1, proof)
    )
    ok(
        "custody", "retire", "--handover", handover, "--first-checkpoint", cer.path("first.note"),
        "--proof", cer.path("proof.txt"), *cer.as_org("kemenperin"),
    )  # fmt: skip
    assert status(cer)["state"] == "RETIRED"

    # A write sent to the retired register follows it to policy 1's endpoint.
    moved = ok("policy", "set", "--grace-days", "3", "--json", *cer.as_org("kominfo"))
    assert f"moved to localhost:{cer.incoming.port} (custodian kemenperin)" in moved.stderr
    assert json.loads(moved.stdout)["grace_days"] == 3
    shown_b = json.loads(
        ok("policy", "show", "--json", *cer.as_org("kominfo", cer.incoming.port)).stdout
    )
    assert shown_b["grace_days"] == 3

    evidence = cer.path("evidence")
    write_evidence(
        evidence,
        policy_0=shown["policies"][0],
        policy_1=shown["policies"][1],
        final_checkpoint=status(cer)["final_checkpoint"],
        first_checkpoint=first,
        consistency_proof=proof,
        handover=handover.read_text(),
    )
    verified = ok("custody", "verify", evidence)
    lines = verified.stdout.splitlines()
    assert len(lines) == 9 and all(line.startswith("ok   ") for line in lines), lines
    assert policy_1.read_text() == policy_text(shown["policies"][1])

    keys = evidence / "keys.txt"
    keys.write_text("".join(keys.read_text().splitlines(keepends=True)[1:]))
    failed = run("custody", "verify", evidence)
    assert failed.exit_code == 1
    assert [line[:4] for line in failed.stdout.splitlines()].count("FAIL") == 1


def test_a_write_waits_out_the_freeze_and_lands_when_the_handover_is_called_off(
    cer: Ceremony,
) -> None:
    policy_1 = announce_and_freeze(cer)
    ceir = Path(sys.executable).parent / "ceir"
    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    writer = subprocess.Popen(
        [
            ceir,
            "policy",
            "set",
            "--grace-days",
            "9",
            "--retry-for",
            "120",
            "--json",
            *cer.as_org("kominfo"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert writer.stderr is not None
        waiting = writer.stderr.readline()  # blocks until the writer met the frozen register
        assert "is frozen for a custody handover (custodian telkomsel); resending in 1 s" in waiting
        abort = cer.path("abort.txt")
        parsed = CustodyPolicy.parse(policy_1.read_text())
        abort.write_text(AbortNote(ORIGIN, 1, policy_sha256(parsed)).text())
        ok("custody", "abort", cer.sign(abort, "ayu", "budi"), *cer.as_org("telkomsel"))
        out, _ = writer.communicate(timeout=120)
    finally:
        writer.kill()
    assert writer.returncode == 0
    assert json.loads(out)["grace_days"] == 9
    assert status(cer)["state"] == "ABORTED"


def _tls(cer: Ceremony) -> grpc.Channel:
    client = cer.pki.clients["kominfo"]
    credentials = grpc.ssl_channel_credentials(
        cer.pki.ca.read_bytes(), cer.pki.key(client).read_bytes(), client.read_bytes()
    )
    return grpc.secure_channel(f"localhost:{cer.outgoing.port}", credentials)

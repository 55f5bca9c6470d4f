"""``ceir custody`` commands that run on an officer's or witness's own machine."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from ceir.audit.note import Verifier
from ceir.custody import CustodyPolicy
from ceir.custody.cosignature import CosignatureVerifier
from ceir.custody.keyfiles import read_cosigner_key, read_note_key

from .cli_ceremony import ok, run
from .example import V0

COMMANDS = [
    *(
        [name]
        for name in (
            "officer-key", "witness-key", "draft", "sign", "verify", "status", "document",
            "propose", "submit", "ready", "freeze", "cosign", "transfer", "activate", "retire",
            "abort",
        )
    ),
    ["witness", "serve"],
]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS)
def test_every_custody_command_has_help(command: list[str]) -> None:
    assert "Usage" in ok("custody", *command, "--help").stdout


def test_officer_key_writes_an_owner_only_key_and_its_verifier_line(tmp_path: Path) -> None:
    key = tmp_path / "ayu.key"
    printed = ok("custody", "officer-key", "officer.telkomsel.example/ayu", key).stdout.strip()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert (tmp_path / "ayu.key.pub").read_text().strip() == printed
    assert read_note_key(key).verifier == Verifier.from_vkey(printed)
    again = run("custody", "officer-key", "officer.telkomsel.example/ayu", key)
    assert again.exit_code == 1 and "error:" in again.stderr


def test_witness_key_writes_a_note_key_and_a_cosigner_key(tmp_path: Path) -> None:
    key = tmp_path / "kominfo.key"
    printed = ok("custody", "witness-key", "witness.kominfo.example", key).stdout.strip()
    assert printed == f"{key}.pub:{key}.cosigner.pub"
    cosigner = read_cosigner_key(tmp_path / "kominfo.key.cosigner")
    pub = CosignatureVerifier.from_vkey((tmp_path / "kominfo.key.cosigner.pub").read_text().strip())
    assert cosigner.verifier == pub
    assert read_note_key(key).name == cosigner.verifier.name == "witness.kominfo.example"
    with pytest.raises(ValueError, match="0x01"):
        read_note_key(tmp_path / "kominfo.key.cosigner")


def test_draft_composes_the_docs_policy_0(tmp_path: Path) -> None:
    # Given in any order: the text lists them in the canonical one.
    officers = [
        x for o in reversed(V0.officers) for x in ("--officer", f"telkomsel:{o.verifier.vkey}")
    ]
    witness = V0.witnesses[0]
    text = ok(
        "custody", "draft", "--version", "0", "--origin", V0.origin, "--custodian", "telkomsel",
        "--endpoint", V0.endpoint, "--log-key", V0.log_key.vkey, "--expires", "2023-01-01",
        "--organisation", "telkomsel:2", *officers, "--witness-quorum", "1",
        "--witness", f"{witness.verifier.vkey}:{witness.cosigner.vkey}",
    ).stdout  # fmt: skip
    assert CustodyPolicy.parse(text) == V0 and text == V0.text()


def test_draft_refuses_a_policy_a_verifier_would_refuse(tmp_path: Path) -> None:
    witness = V0.witnesses[0]
    result = run(
        "custody", "draft", "--version", "0", "--custodian", "telkomsel", "--endpoint", "x:1",
        "--log-key", V0.log_key.vkey, "--expires", "0", "--organisation", "telkomsel:3",
        "--officer", f"telkomsel:{V0.officers[0].verifier.vkey}",
        "--witness", f"{witness.verifier.vkey}:{witness.cosigner.vkey}",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "not a valid policy: telkomsel's threshold 3" in result.stderr


def test_verify_of_a_directory_without_evidence_fails_every_line(tmp_path: Path) -> None:
    result = run("custody", "verify", tmp_path)
    assert result.exit_code == 1
    assert all(line.startswith("FAIL ") for line in result.stdout.splitlines())

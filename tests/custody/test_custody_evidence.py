"""The evidence directory of a handover: written from its parts, checked line by line."""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

import pytest

from ceir.custody.evidence import (
    FILES,
    Check,
    consistency_text,
    parse_consistency,
    verify_evidence,
)

from .example import AYU, BUDI, CITRA, KOMINFO, KOMINFO_COSIGNER, V0, V1
from .handover_example import CHECKED_AT, FINAL_SIZE, digest, parts, write

CHAIN = "policy-1.note succeeds policy 0"
FINAL_SIGNED = "checkpoint-final.note is signed by policy 0's log key"
FINAL_COSIGNED = "checkpoint-final.note is cosigned by policy 0's witness quorum"
HANDOVER = "handover.note is signed as policy 1 requires"
FIRST_COSIGNED = "checkpoint-first.note is cosigned by policy 1's witness quorum"
CONSISTENCY = "consistency.txt proves"
KEYS = "keys.txt lists exactly"


def failures(directory: Path) -> list[Check]:
    return [check for check in verify_evidence(directory, CHECKED_AT) if not check.ok]


def failed(directory: Path, prefix: str) -> Check:
    """The one failed check whose description starts with ``prefix``."""
    found = [c for c in failures(directory) if c.what.startswith(prefix)]
    assert len(found) == 1, [c.line() for c in failures(directory)]
    return found[0]


def test_a_generated_evidence_directory_passes_every_check(tmp_path: Path) -> None:
    checks = verify_evidence(write(tmp_path / "evidence"), CHECKED_AT)
    assert [c.line() for c in checks if not c.ok] == []
    assert len(checks) == 9
    assert all(c.line().startswith("ok   ") for c in checks)
    assert sorted(p.name for p in (tmp_path / "evidence").iterdir()) == sorted(FILES)


def test_expiry_is_judged_at_the_handover_not_when_checked(tmp_path: Path) -> None:
    assert V1.expires < CHECKED_AT
    checks = verify_evidence(write(tmp_path / "e"), CHECKED_AT)
    chain = next(c for c in checks if c.what.startswith(CHAIN))
    assert chain.ok and "the first checkpoint's time" in chain.what


def test_writing_never_replaces_existing_evidence(tmp_path: Path) -> None:
    write(tmp_path / "e")
    with pytest.raises(FileExistsError):
        write(tmp_path / "e")


def test_a_changed_byte_of_a_note_fails_its_signature_check(tmp_path: Path) -> None:
    directory = write(tmp_path / "e")
    path = directory / "checkpoint-final.note"
    text = path.read_text()
    root_line = text.split("\n")[2]
    changed = ("A" if root_line[0] != "A" else "B") + root_line[1:]
    path.write_text(text.replace(root_line, changed, 1))
    assert "does not verify" in failed(directory, FINAL_SIGNED).detail


def test_a_changed_byte_of_the_handover_note_fails_it(tmp_path: Path) -> None:
    directory = write(tmp_path / "e")
    path = directory / "handover.note"
    path.write_text(path.read_text().replace(f"size {FINAL_SIZE}", f"size {FINAL_SIZE + 1}"))
    assert "[BAD_SIGNATURE]" in failed(directory, HANDOVER).detail


def test_a_wrong_proof_hash_fails_the_consistency_check(tmp_path: Path) -> None:
    evidence = parts()
    proof = [digest("not a node of this log"), *evidence.consistency_proof[1:]]
    directory = write(tmp_path / "e", dataclasses.replace(evidence, consistency_proof=proof))
    assert failed(directory, CONSISTENCY).detail.startswith("consistency proof from size 5 to 6")


def test_a_missing_cosignature_fails_the_quorum_check(tmp_path: Path) -> None:
    evidence = parts()
    # The last line of the note is Kominfo's cosignature.
    uncosigned = evidence.first_checkpoint.rsplit("— ", 1)[0]
    directory = write(tmp_path / "e", dataclasses.replace(evidence, first_checkpoint=uncosigned))
    assert (
        "1 of policy 1's witnesses must cosign; 0 did" in failed(directory, FIRST_COSIGNED).detail
    )


def test_a_key_missing_from_keys_txt_fails_the_keys_check(tmp_path: Path) -> None:
    directory = write(tmp_path / "e")
    path = directory / "keys.txt"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(line for line in lines if KOMINFO_COSIGNER.verifier.vkey not in line))
    assert failed(directory, KEYS).detail == f"missing {KOMINFO_COSIGNER.verifier.vkey}"


def test_a_key_no_policy_names_in_keys_txt_fails_the_keys_check(tmp_path: Path) -> None:
    directory = write(tmp_path / "e")
    with (directory / "keys.txt").open("a") as file:
        file.write(CITRA.verifier.vkey.replace("citra", "mallory") + "\n")
    assert "not in the policies" in failed(directory, KEYS).detail


def test_policy_1_signed_by_the_outgoing_side_only_fails_the_chain(tmp_path: Path) -> None:
    directory = write(tmp_path / "e", parts(policy_1_signers=(AYU, BUDI, KOMINFO)))
    detail = failed(directory, CHAIN).detail
    assert "[THRESHOLD_NOT_MET]" in detail and "kemenperin" in detail


def test_a_missing_file_fails_and_the_other_checks_still_run(tmp_path: Path) -> None:
    directory = write(tmp_path / "e")
    (directory / "consistency.txt").unlink()
    lines = [c.line() for c in failures(directory)]
    assert lines[0].startswith("FAIL consistency.txt is present")
    assert any(line.startswith(f"FAIL {CONSISTENCY}") for line in lines)
    assert len(lines) == 2


def test_policy_0_is_the_trust_root_in_plain_text_too(tmp_path: Path) -> None:
    evidence = dataclasses.replace(parts(), policy_0=V0.text())
    assert failures(write(tmp_path / "e", evidence)) == []


def test_the_cosignature_of_another_witness_key_does_not_count(tmp_path: Path) -> None:
    from ceir.custody import Cosigner

    from .example import private_key

    impostor = Cosigner(KOMINFO.name, private_key("not kominfo's cosigner key"))
    directory = write(tmp_path / "e", parts(cosigner=impostor))
    assert not failed(directory, FINAL_COSIGNED).ok


def test_consistency_text_round_trips_and_refuses_non_canonical_lines() -> None:
    proof = [digest("a"), digest("b")]
    assert parse_consistency(consistency_text(5, 6, proof)) == (5, 6, proof)
    for bad in (
        "5 6",
        "05 6\n",
        "5  6\n",
        "5 6\nAAAA\n",
        "5 6\n" + base64.b64encode(b"x" * 31).decode() + "\n",
    ):
        with pytest.raises(ValueError):
            parse_consistency(bad)


def test_the_report_lines_start_with_ok_or_fail() -> None:
    assert Check(True, "x", "d").line() == "ok   x (d)"
    assert Check(False, "x", "why").line() == "FAIL x: why"

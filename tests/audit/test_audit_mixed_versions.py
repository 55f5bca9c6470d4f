"""A log that switches from leaf version 1 to version 2 verifies leaf by leaf,
from changes, from what a receiver without the clear subscriber numbers holds,
and from an export; a leaf of an unknown version is refused by name."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from ceir.audit.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from ceir.audit.commitment import new_salt
from ceir.audit.errors import InconsistentTree, LeafEncodingError
from ceir.audit.keys import generate_signing_key
from ceir.audit.leaf import decode_leaf, encode_change, leaf_view
from ceir.audit.merkle import MemoryHashStore, Prover, leaf_hash
from ceir.audit.note import Signer
from ceir.audit.verify import change_leaf_hash, replay
from ceir.domain.model import BlacklistCause, Change, ChangeKind, RegistrationSource
from ceir.service.log_audit import EXPORT_FORMAT, audit_export

ORIGIN = "ceir.example/changes"
CUSTODIAN = Signer(ORIGIN, generate_signing_key())
START_US = 1_587_168_000_000_000
SWITCH = 60  # changes 1 to 60 were written before version 2


def _change(sequence: int) -> Change:
    key = 35_209_900_000_000 + sequence
    moment = START_US + sequence * 1_000
    version = 1 if sequence <= SWITCH else 2
    if sequence % 3 == 0:
        return Change(
            ChangeKind.NOTIFICATION_NEW,
            imei_key=key,
            imsi=f"51010{sequence:010d}",
            msisdn=f"62811{sequence:08d}",
            block_date_us=moment + 30 * 86_400_000_000,
            operator_mcc_mnc="510-10",
            sequence=sequence,
            committed_at_us=moment,
            actor="telkomsel",
            subscriber_salt=b"" if version == 1 else new_salt(),
            leaf_version=version,
        )
    if sequence % 5 == 0:
        return Change(
            ChangeKind.BLACKLIST_BLOCKED,
            imei_key=key - 1,
            blacklist_cause=BlacklistCause.STOLEN,
            sequence=sequence,
            committed_at_us=moment,
            actor="telkomsel",
            police_report="" if version == 1 else f"LP/{sequence}/IV/2020",
            leaf_version=version,
        )
    return Change(
        ChangeKind.WHITELIST_ADDED,
        imei_key=key,
        source=RegistrationSource.TPP_IMPORT,
        device_id=f"dev-{sequence}",
        sequence=sequence,
        committed_at_us=moment,
        actor="kemenperin",
        reference="" if version == 1 else f"TPP-{sequence}",
        device_imei_keys=() if version == 1 else (key,),
        leaf_version=version,
    )


CHANGES = [_change(sequence) for sequence in range(1, 151)]


def _custodian_log() -> MemoryHashStore:
    store = MemoryHashStore()
    store.extend(leaf_hash(encode_change(change)) for change in CHANGES)
    return store


def _checkpoints(store: MemoryHashStore, *sizes: int) -> list[Checkpoint]:
    prover = Prover(store)
    return [Checkpoint(ORIGIN, size, prover.root(size), START_US + size) for size in sizes]


def test_the_log_holds_both_versions() -> None:
    versions = [encode_change(change)[0] for change in CHANGES]
    assert versions == [1] * SWITCH + [2] * (len(CHANGES) - SWITCH)


def test_a_log_that_switches_versions_replays_to_every_checkpoint() -> None:
    store = _custodian_log()
    hashes = [change_leaf_hash(change, index) for index, change in enumerate(CHANGES)]
    frontier = replay(hashes, _checkpoints(store, 1, SWITCH, SWITCH + 1, 128, 150))
    assert frontier.root() == store.root()


def test_a_receiver_with_commitments_only_rebuilds_every_leaf() -> None:
    # What another operator holds: the version 2 leaves without IMSI, MSISDN or salt.
    store = _custodian_log()
    views = [leaf_view(change) for change in CHANGES]
    assert all(view.imsi == "" for view in views[SWITCH:])
    hashes = [change_leaf_hash(view, index) for index, view in enumerate(views)]
    assert replay(hashes, _checkpoints(store, 150)).root() == store.root()


def test_re_encoding_an_old_change_in_version_2_breaks_its_checkpoint() -> None:
    store = _custodian_log()
    upgraded = list(CHANGES)
    upgraded[10] = replace(CHANGES[10], leaf_version=2)  # a whitelist change: encodable in v2
    hashes = [change_leaf_hash(change, index) for index, change in enumerate(upgraded)]
    with pytest.raises(InconsistentTree, match="from 0 to 59 was changed"):
        replay(hashes, _checkpoints(store, SWITCH, 150))


def test_a_leaf_of_an_unknown_version_is_refused_by_name() -> None:
    data = bytearray(encode_change(CHANGES[-1]))
    data[0] = 7
    with pytest.raises(
        LeafEncodingError,
        match=r"^leaf encoding version 7 at offset 0 is not one this verifier knows \(1, 2\)$",
    ):
        decode_leaf(bytes(data))


# --- exports ---------------------------------------------------------------------------


def _export(path: Path, leaves: list[bytes], sizes: tuple[int, ...] = (SWITCH, 150)) -> Path:
    store = _custodian_log()
    lines = [{"format": EXPORT_FORMAT, "origin": ORIGIN, "leaves": len(leaves)}]
    lines += [
        {"sequence": index + 1, "leaf": leaf.hex(), "leaf_hash": recorded.hex()}
        for index, (leaf, recorded) in enumerate(
            zip(leaves, store.node_hashes(0, 0, 150), strict=True)
        )
    ]
    lines += [
        {"checkpoint": sign_checkpoint(checkpoint, [CUSTODIAN])}
        for checkpoint in _checkpoints(store, *sizes)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def test_an_export_that_mixes_versions_verifies(tmp_path: Path) -> None:
    leaves = [encode_change(change) for change in CHANGES]
    report = audit_export(_export(tmp_path / "log.jsonl", leaves), [CUSTODIAN.verifier], ORIGIN)
    assert report.problems == []
    assert (report.leaves, report.checkpoints, report.signature_checked) == (150, 2, True)
    assert report.checkpoint == open_checkpoint(report.note, [CUSTODIAN.verifier], ORIGIN)


def test_an_export_with_a_leaf_of_an_unknown_version_fails_naming_it(tmp_path: Path) -> None:
    leaves = [encode_change(change) for change in CHANGES]
    leaves[99] = b"\x07" + leaves[99][1:]
    report = audit_export(_export(tmp_path / "log.jsonl", leaves), [CUSTODIAN.verifier], ORIGIN)
    assert not report.ok
    assert report.first_bad_sequence == 100
    assert report.problems[0] == (
        "change 100: leaf encoding version 7 at offset 0 is not one this verifier knows (1, 2)"
    )
    # the later leaves keep their positions: no gap reported after it
    assert not any("gap" in problem for problem in report.problems)
    assert report.leaves == 150


def test_an_export_with_an_old_leaf_re_encoded_in_version_2_fails(tmp_path: Path) -> None:
    leaves = [encode_change(change) for change in CHANGES]
    leaves[10] = encode_change(replace(CHANGES[10], leaf_version=2))
    report = audit_export(_export(tmp_path / "log.jsonl", leaves), [CUSTODIAN.verifier], ORIGIN)
    assert report.first_bad_sequence == 11
    assert "first bad leaf: change 11 (leaf 10, WHITELIST_ADDED" in report.problems[0]

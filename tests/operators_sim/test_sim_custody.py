"""A node following a custody handover, driven by hand over scripted registers with
real keys and real signed notes: the chain walk and readiness, key epochs, the
freeze, split views and their evidence, aborts, the verified switch, and the
trust state saved atomically and reloaded."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from ceir.audit.checkpoint import open_checkpoint
from ceir.audit.merkle import MemoryHashStore, Prover, verify_consistency
from ceir.audit.note import sign_note
from ceir.custody import (
    CustodyRefusal,
    cosign,
    policy_sha256,
    verify_cosignatures,
    verify_handover,
)
from ceir.v1 import types_pb2 as pb
from operators_sim.custody_follower import STATE_FILE
from operators_sim.custody_state import CustodyTrust, note_text
from operators_sim.leaf import leaf_hash
from operators_sim.verification import Refused

from ..custody.ceremony import now_s
from .custody_world import NEW, World, officers_only


@pytest.fixture
def world() -> World:
    return World()


def frozen_node(world: World, state: Path | None):  # type: ignore[no-untyped-def]
    """A node that verified the log, the announcement and the freeze."""
    follower, verifier = world.node(state)
    world.lists(5)
    world.feed(verifier)
    world.announce()
    world.lists(3)
    world.feed(verifier)
    follower.step()
    world.freeze()
    world.feed(verifier)
    return follower, verifier


# --- the walk and readiness ---------------------------------------------------------------


def test_an_announced_policy_is_walked_to_and_readiness_reported(
    world: World, tmp_path: Path
) -> None:
    follower, verifier = world.node(tmp_path)
    world.lists(4)
    assert [c.sequence for c in world.feed(verifier)] == [1, 2, 3, 4]
    world.announce()
    world.feed(verifier)
    assert world.old.readiness == []  # the watcher walks, not the feed thread
    follower.step()
    assert world.old.readiness == [(1, policy_sha256(world.v1))]
    assert follower.stats.readiness_reported == [1]
    assert follower.trust.announced == world.one
    assert follower.trust.version == 0  # announced is not in force: the old key still signs
    saved = json.loads((tmp_path / STATE_FILE).read_text())
    assert saved["announced"] == world.one
    assert verifier.stats.alerts == {}


def test_a_policy_without_the_incoming_officers_is_refused_and_never_trusted(
    world: World, tmp_path: Path
) -> None:
    follower, verifier = world.node(tmp_path)
    world.lists(2)
    world.feed(verifier)
    world.announce(officers_only(world))
    world.feed(verifier)
    follower.step()
    assert world.old.readiness == []
    assert verifier.stats.alerts == {"POLICY_REFUSED": 1}
    assert "THRESHOLD_NOT_MET" in verifier.stats.last_alert
    assert follower.trust.announced == ""
    # The register goes ahead anyway (a hostile one): the node never moves.
    world.freeze()
    world.feed(verifier)
    world.one = officers_only(world)
    world.activate()
    assert follower.step() is False
    assert follower.trust.version == 0 and follower.link.current is world.old
    assert verifier.stats.alerts["POLICY_REFUSED"] == 2  # this time at the switch
    follower.step()
    assert verifier.stats.alerts["POLICY_REFUSED"] == 2  # alerted once, not every round


def test_a_published_policy_other_than_the_one_the_leaf_names_is_refused(
    world: World, tmp_path: Path
) -> None:
    follower, verifier = world.node(tmp_path)
    world.announce()
    world.feed(verifier)
    custody = world.old.custody
    assert custody is not None
    custody.policies[1] = world.one + world.one.splitlines(keepends=True)[-1]  # a line more
    follower.step()
    assert world.old.readiness == [] and verifier.stats.alerts == {"POLICY_REFUSED": 1}


# --- key epochs, the freeze and split views -------------------------------------------------


def test_the_freeze_records_the_final_size_and_root(world: World, tmp_path: Path) -> None:
    follower, verifier = frozen_node(world, tmp_path)
    frozen = follower.trust.frozen
    assert frozen is not None and frozen.size == world.final_size == verifier.verified_sequence
    assert frozen.root == world.log.prover.root(world.final_size)
    saved = CustodyTrust.load(tmp_path / STATE_FILE, world.zero)
    assert saved.frozen == frozen and saved.announced == world.one


def test_the_old_key_past_the_final_size_is_a_split_view_with_evidence(
    world: World, tmp_path: Path
) -> None:
    follower, verifier = frozen_node(world, tmp_path)
    world.lists(2)  # the old custodian goes on signing: a second history
    with pytest.raises(Refused) as refused:
        world.feed(verifier)
    assert refused.value.reason == "SPLIT_VIEW"
    assert verifier.stats.alerts == {"SPLIT_VIEW": 1}
    assert verifier.verified_sequence == world.final_size  # nothing past N applied
    # Refused again on the next try, counted once.
    with pytest.raises(Refused) as again:
        world.feed(verifier)
    assert not again.value.counted and verifier.stats.alerts == {"SPLIT_VIEW": 1}
    [directory] = (tmp_path / "evidence").glob("split-view-*")
    files = {p.name for p in directory.iterdir()}
    assert files == {
        "policy-0.note",
        "checkpoint-final.note",
        "checkpoint-conflict.note",
        "consistency.txt",
        "keys.txt",
        "split-view.txt",
    }
    # Portable: the two notes verify under policy 0's key, and the proof links them.
    key = world.v0.log_key
    final = open_checkpoint(
        (directory / "checkpoint-final.note").read_text(), [key], world.v0.origin
    )
    other = open_checkpoint(
        (directory / "checkpoint-conflict.note").read_text(), [key], world.v0.origin
    )
    header, *hashes = (directory / "consistency.txt").read_text().splitlines()
    assert header == f"{final.size} {other.size}" and final.size == world.final_size
    proof = [base64.b64decode(h) for h in hashes]
    verify_consistency(final.size, other.size, proof, final.root_hash, other.root_hash)
    assert key.vkey + "\n" in (directory / "keys.txt").read_text()
    assert follower.stats.split_views and follower.stats.evidence == [str(directory)]


def test_a_verified_abort_reopens_the_epoch(world: World, tmp_path: Path) -> None:
    follower, verifier = frozen_node(world, tmp_path)
    world.abort(world.keys.abort_note(world.v1))
    world.lists(2)  # writes resume under the old key
    released = world.feed(verifier)
    assert released[0].sequence == world.final_size + 1
    assert verifier.stats.alerts == {}
    assert follower.trust.frozen is None and follower.trust.announced == ""
    assert CustodyTrust.load(tmp_path / STATE_FILE, world.zero).frozen is None


def test_an_abort_not_signed_by_the_outgoing_officers_is_a_split_view(
    world: World, tmp_path: Path
) -> None:
    follower, verifier = frozen_node(world, tmp_path)
    keys = world.keys
    text = note_text(keys.abort_note(world.v1))
    world.abort(sign_note(text, list(keys.kemenperin[:2])))
    with pytest.raises(Refused):
        world.feed(verifier)
    assert verifier.stats.alerts == {"SPLIT_VIEW": 1}
    assert follower.trust.frozen is not None


# --- the switch --------------------------------------------------------------------------------


def test_the_node_moves_to_the_new_custodian_once_everything_verifies(
    world: World, tmp_path: Path
) -> None:
    follower, verifier = frozen_node(world, tmp_path)
    restarted: list[bool] = []
    follower.restart = lambda: restarted.append(True)
    assert follower.step() is False  # frozen; nobody is ACTIVE yet
    new = world.activate()
    assert follower.step() is True and restarted == [True]
    trust = follower.trust
    assert trust.version == 1 and trust.endpoint == world.v1.endpoint
    assert follower.link.current is new and follower.link.target == NEW
    assert trust.finals[0].size == world.final_size and trust.frozen is None
    # The feed goes on from the node's own cursor, under the new key.
    released = world.feed(verifier, new)
    assert [c.sequence for c in released] == [world.final_size + 1]
    assert verifier.stats.alerts == {}
    # The old key signing past N after the handover is a split view.
    world.new_log = None
    world.lists(1)
    with pytest.raises(Refused) as refused:
        verifier.open(world.log.checkpoint(world.final_size + 1))
    assert refused.value.reason == "SPLIT_VIEW"
    assert verifier.open(world.log.checkpoint(world.final_size)).size == world.final_size
    # Evidence of the handover, in the format `ceir custody verify` reads.
    directory = tmp_path / "evidence" / "handover-1"
    assert (directory / "handover.note").read_text() == world.handover
    verify_handover(world.handover, world.v0, world.v1, now_s())
    header = (directory / "consistency.txt").read_text().splitlines()[0]
    assert header == f"{world.final_size} {world.final_size + 1}"
    witnesses = [w.cosigner for w in world.v0.witnesses]
    final_note = (directory / "checkpoint-final.note").read_text()
    assert len(verify_cosignatures(final_note, witnesses)) == 1  # the cosigned one, not the feed's
    # Reloaded after a crash: the node starts on the new register directly.
    links_before = dict(world.links)
    again = world.setup(tmp_path).follower(world.old, "xl")
    assert again.trust.version == 1 and again.link.current is links_before[NEW]
    assert again.trust.finals == trust.finals


def test_a_node_that_saw_nothing_of_the_ceremony_switches_on_reconnect(
    world: World, tmp_path: Path
) -> None:
    follower, verifier = world.node(tmp_path)
    world.lists(3)
    world.feed(verifier)  # then offline: announcement and freeze go by unseen
    world.announce()
    world.lists(4)
    world.freeze()
    world.activate()
    follower.moved("")  # a REGISTER_MOVED without an endpoint: ask where to go
    assert follower.step() is True
    assert follower.trust.version == 1
    # Its own checkpoint (size 3) was proven a prefix of the final one.
    assert (3, world.final_size) in world.new.proofs_asked  # type: ignore[union-attr]
    released = world.feed(verifier, world.new)
    assert released[-1].sequence == world.final_size + 1 and verifier.stats.alerts == {}


def test_the_switch_waits_for_the_witnesses(world: World, tmp_path: Path) -> None:
    follower, _ = frozen_node(world, tmp_path)
    new = world.activate(cosigned=False)
    assert follower.step() is False and follower.trust.version == 0
    custody = new.custody
    assert custody is not None
    custody.first_checkpoint = cosign(
        custody.first_checkpoint, world.keys.kominfo_cosigner, now_s() - 1
    )
    assert follower.step() is True


def test_a_handover_note_without_the_incoming_officers_is_refused(
    world: World, tmp_path: Path
) -> None:
    follower, verifier = frozen_node(world, tmp_path)
    keys = world.keys
    note = world.handover_note([keys.old, keys.new, *keys.telkomsel[:2], keys.kominfo])
    world.activate(handover=note)
    assert follower.step() is False
    assert verifier.stats.alerts == {"HANDOVER_INVALID": 1}
    assert "THRESHOLD_NOT_MET" in verifier.stats.last_alert
    assert follower.trust.version == 0 and follower.link.current is world.old


def test_a_new_register_with_another_history_is_refused(world: World, tmp_path: Path) -> None:
    follower, verifier = frozen_node(world, tmp_path)
    new = world.activate()
    # The new register's tree differs (it answers proofs of another log).
    custody = new.custody
    assert custody is not None and world.new_log is not None
    forged = pb.ListChange()
    forged.CopyFrom(world.new_log.changes[2])
    forged.imei_key = "35999999999999"
    world.new_log.changes[2] = forged
    store = MemoryHashStore()
    for existing in world.new_log.changes:
        store.append(leaf_hash(existing))
    world.new_log.store, world.new_log.prover = store, Prover(store)
    custody.first_checkpoint = cosign(
        world.new_log.checkpoint(), world.keys.kominfo_cosigner, now_s() - 1
    )
    assert follower.step() is False
    assert verifier.stats.alerts == {"HANDOVER_INVALID": 1}
    assert follower.trust.version == 0


# --- the state file ------------------------------------------------------------------------------


def test_the_state_is_written_atomically_and_a_failed_write_keeps_the_old(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / STATE_FILE
    trust = CustodyTrust.start(world.zero)
    trust.save(path)
    before = path.read_bytes()
    trust.announce(world.one, now_s())

    def crash(*_args: object) -> None:
        raise OSError("disk gone mid-rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        trust.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [STATE_FILE]  # no temporary file left
    assert CustodyTrust.load(path, world.zero).announced == ""
    trust.save(path)
    assert CustodyTrust.load(path, world.zero).announced == world.one


def test_a_state_file_that_trusts_another_key_is_refused(world: World, tmp_path: Path) -> None:
    path = tmp_path / STATE_FILE
    trust = CustodyTrust.start(world.zero)
    trust.save(path)
    data = json.loads(path.read_text())
    data["policies"].append(officers_only(world))  # a policy 1 that does not walk
    data["finals"].append(
        {"size": 1, "root": base64.b64encode(bytes(32)).decode(), "checkpoint": ""}
    )
    path.write_text(json.dumps(data))
    with pytest.raises(CustodyRefusal) as refused:
        CustodyTrust.load(path, world.zero)
    assert refused.value.reason == "THRESHOLD_NOT_MET"
    other = World()
    with pytest.raises(ValueError, match="another policy 0"):
        CustodyTrust.load(path, other.zero)

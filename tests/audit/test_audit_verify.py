"""The attacks of issue 4, caught by the library: altered, dropped, replayed,
reordered and removed changes, forked histories, and an operator that follows
the log end to end."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ceir.audit.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from ceir.audit.errors import BadLeaf, BadProof, InconsistentTree
from ceir.audit.keys import generate_signing_key
from ceir.audit.leaf import encode_change
from ceir.audit.merkle import (
    Frontier,
    MemoryHashStore,
    Prover,
    verify_consistency,
    verify_inclusion,
)
from ceir.audit.note import Signer
from ceir.audit.verify import change_leaf_hash, check_leaf_hash, check_same_view, replay
from ceir.domain.model import BlacklistCause, Change, ChangeKind, RegistrationSource

ORIGIN = "ceir.example/changes"
CUSTODIAN = Signer(ORIGIN, generate_signing_key())
DAY_US = 86_400_000_000
START_US = 1_587_168_000_000_000  # 18 April 2020


def _change(sequence: int) -> Change:
    key = 35_209_900_000_000 + sequence
    moment = START_US + sequence * 1_000
    if sequence % 5 == 0:
        return Change(
            ChangeKind.BLACKLIST_BLOCKED,
            imei_key=key - 1,
            blacklist_cause=BlacklistCause.STOLEN,
            sequence=sequence,
            committed_at_us=moment,
        )
    return Change(
        ChangeKind.WHITELIST_ADDED,
        imei_key=key,
        source=RegistrationSource.TPP_IMPORT,
        device_id=f"dev-{sequence}",
        sequence=sequence,
        committed_at_us=moment,
    )


CHANGES = [_change(sequence) for sequence in range(1, 301)]


class Log:
    """The custodian's side: leaves, a prover, signed checkpoints."""

    def __init__(self, changes: list[Change]) -> None:
        self.store = MemoryHashStore(tile_height=4)
        self.prover = Prover(self.store, tile_height=4)
        for index, change in enumerate(changes):
            self.store.append(change_leaf_hash(change, index))

    def checkpoint(self, size: int, signer: Signer = CUSTODIAN) -> str:
        time_us = START_US + size * DAY_US
        return sign_checkpoint(Checkpoint(ORIGIN, size, self.prover.root(size), time_us), [signer])


def _hashes(changes: list[Change]) -> list[bytes]:
    return [change_leaf_hash(change, index) for index, change in enumerate(changes)]


def _checkpoints(log: Log, *sizes: int) -> list[Checkpoint]:
    return [open_checkpoint(log.checkpoint(size), [CUSTODIAN.verifier], ORIGIN) for size in sizes]


def test_an_honest_log_replays_to_every_checkpoint() -> None:
    log = Log(CHANGES)
    frontier = replay(_hashes(CHANGES), _checkpoints(log, 0, 1, 100, 257, 300))
    assert frontier.size == 300
    assert frontier.root() == log.store.root()


def test_replay_resumes_from_a_verified_frontier() -> None:
    log = Log(CHANGES)
    first = replay(_hashes(CHANGES[:120]), _checkpoints(log, 120))
    resumed = replay(_hashes(CHANGES)[120:], _checkpoints(log, 200, 300), start=first)
    assert resumed.root() == log.store.root()
    assert first.size == 120


def test_a_row_changed_behind_the_servers_back_names_the_leaf() -> None:
    log = Log(CHANGES)
    altered = list(CHANGES)
    altered[41] = replace(CHANGES[41], device_id="smuggled")
    recorded = log.store.node_hashes(0, 0, 300)
    with pytest.raises(BadLeaf, match=r"^leaf 41 does not hash to") as caught:
        for index, change in enumerate(altered):
            check_leaf_hash(index, encode_change(change), recorded[index])
    assert caught.value.index == 41


def test_a_change_rewritten_with_its_hash_breaks_the_next_checkpoint() -> None:
    log = Log(CHANGES)
    altered = list(CHANGES)
    altered[150] = replace(CHANGES[150], imei_key=CHANGES[150].imei_key + 1)  # type: ignore[operator]
    with pytest.raises(InconsistentTree, match="from 100 to 199 was changed") as caught:
        replay(_hashes(altered), _checkpoints(log, 50, 100, 200, 300))
    assert (caught.value.first, caught.value.end) == (100, 200)


def test_removed_changes_are_caught_by_a_signed_size() -> None:
    log = Log(CHANGES)
    with pytest.raises(InconsistentTree, match=r"ends at 290 leaves.*size 300"):
        replay(_hashes(CHANGES[:290]), _checkpoints(log, 300))


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        (CHANGES[:10] + CHANGES[11:20], "leaf 10 must be change 11, got change 12"),  # dropped
        (CHANGES[:10] + CHANGES[9:20], "leaf 10 must be change 11, got change 10"),  # replayed
        ([*CHANGES[:10], CHANGES[11], CHANGES[10]], "leaf 10 must be change 11, got change 12"),
    ],
    ids=["dropped", "replayed", "reordered"],
)
def test_a_stream_with_a_change_dropped_replayed_or_reordered_is_refused(
    stream: list[Change], message: str
) -> None:
    with pytest.raises(BadLeaf, match=message):
        _hashes(stream)


def test_a_change_altered_in_flight_fails_its_inclusion_proof() -> None:
    log = Log(CHANGES)
    checkpoint = _checkpoints(log, 300)[0]
    proof = log.prover.inclusion_proof(77, 300)
    honest = change_leaf_hash(CHANGES[77], 77)
    verify_inclusion(honest, 77, 300, proof, checkpoint.root_hash)
    in_flight = replace(CHANGES[77], source=RegistrationSource.DIPLOMAT)
    with pytest.raises(BadProof, match="leaf 77"):
        verify_inclusion(change_leaf_hash(in_flight, 77), 77, 300, proof, checkpoint.root_hash)


def test_a_forked_history_is_caught_by_gossip_and_by_consistency() -> None:
    honest = Log(CHANGES)
    fork = Log([*CHANGES[:200], *(replace(c, device_id="fork") for c in CHANGES[200:])])
    seen_by_telkomsel = _checkpoints(honest, 250)[0]
    seen_by_xl = _checkpoints(fork, 250)[0]  # validly signed by the same custodian key
    with pytest.raises(InconsistentTree, match="split view") as caught:
        check_same_view(seen_by_telkomsel, seen_by_xl)
    assert caught.value.end == 250
    # a node that verified the honest checkpoint at 250 refuses the fork's next one
    fork_300 = _checkpoints(fork, 300)[0]
    with pytest.raises(InconsistentTree):
        verify_consistency(
            250,
            300,
            fork.prover.consistency_proof(250, 300),
            seen_by_telkomsel.root_hash,
            fork_300.root_hash,
        )


def test_an_operator_follows_the_log_checkpoint_by_checkpoint() -> None:
    """Verify each checkpoint's signature, its consistency with the last one,
    and that the changes applied hash to its root."""
    log = Log(CHANGES)
    applied = Frontier()
    last = Checkpoint(ORIGIN, 0, applied.root(), 0)
    for size in (1, 2, 64, 65, 200, 300):
        checkpoint = open_checkpoint(log.checkpoint(size), [CUSTODIAN.verifier], ORIGIN)
        proof = log.prover.consistency_proof(last.size, checkpoint.size)
        verify_consistency(last.size, checkpoint.size, proof, last.root_hash, checkpoint.root_hash)
        applied = replay(_hashes(CHANGES)[last.size : size], [checkpoint], start=applied)
        last = checkpoint
    assert applied.size == 300


def test_gossip_between_nodes_of_one_view_passes() -> None:
    log = Log(CHANGES)
    first, second = _checkpoints(log, 300, 300)
    check_same_view(first, second)
    with pytest.raises(ValueError, match="two logs"):
        check_same_view(first, replace(second, origin="other.example/log"))

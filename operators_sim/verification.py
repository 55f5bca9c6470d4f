"""A node's check of the signed change log (``docs/trust.md``), and gossip.

A node configured with the custodian's public key (``Trust``) verifies what
the feed brings before any of it reaches the replica's decisions:

1. the changes of a message follow the last verified sequence, one by one
   (``BadLeaf``);
2. they are staged: their leaf hashes (``operators_sim.leaf``, the node's
   own encoding of the public ``ListChange``) go into a copy of the node's
   frontier, kept from sequence 1;
3. the checkpoint the message carries must be signed by a trusted key
   (``UnknownKey``, ``BadSignature``), be of the configured log
   (``MalformedCheckpoint``) and end where the staged changes end;
4. a consistency proof from the last verified checkpoint to the new one
   (``GetConsistencyProof``) must verify (``BadProof``, ``InconsistentTree``);
5. the staged frontier's root must be the checkpoint's root
   (``InconsistentTree``): the changes are exactly those the custodian signed.

Only then are the staged changes handed to the replica. Whatever fails is
refused: the stage is dropped, the node keeps its last verified state, the
failure is counted by its ``reason`` and logged as an alert, and the
follower reconnects from the last verified sequence.

**Bootstrap.** A snapshot holds lists, not leaves. Its last chunk carries
the custodian's signed lists statement (size, root, digest of the lists)
and the Merkle frontier at its sequence; ``snapshot_check`` recomputes the
digest, checks the statement against the first chunk's signed checkpoint,
and that the frontier hashes to its root. Then the node starts from the
snapshot with that frontier (``adopt``) and verifies the feed after it.
From a server that sends no statement, or when the check fails (an alert,
``SNAPSHOT_MISMATCH``), the node starts from an empty replica (the
register's initial policy) and replays the feed from sequence 0.

**Gossip.** Nodes publish their latest verified checkpoint to a ``Gossip``;
a checkpoint of the same size as a peer's with another root, or one that a
consistency proof cannot link to a peer's, is a split view: the log showed
different histories to different nodes.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ceir.audit.checkpoint import Checkpoint, open_checkpoint
from ceir.audit.errors import AuditError, BadLeaf, InconsistentTree, VerificationError
from ceir.audit.keys import verifier_from_file
from ceir.audit.merkle import Frontier, short, verify_consistency
from ceir.audit.note import Verifier
from ceir.v1 import types_pb2 as pb

from .leaf import LeafError, leaf_hash

log = logging.getLogger("operators_sim.verification")

DEFAULT_ORIGIN = "ceir.kominfo.go.id/register"
SPLIT_VIEW = "SPLIT_VIEW"
NO_CHECKPOINT = "NO_CHECKPOINT"
LINK_FAILED = "PROOF_UNAVAILABLE"
MAX_STAGED = 1_000_000  # changes waiting for a checkpoint before the node gives up on them

ProofSource = Callable[[int, int], Sequence[bytes]]
"""``(first_size, second_size) -> hashes``: GetConsistencyProof on the node's link."""


class CheckpointGuard(Protocol):
    """Who decides which key may sign which checkpoint (``operators_sim.custody``:
    key epochs of the custody policies). Without one, any trusted key signs any size."""

    def open(self, note: str, staged: Sequence[pb.ListChange]) -> Checkpoint:
        """The checkpoint ``note`` states, if its key may sign it, given the changes
        it is to cover (``()`` for a snapshot's); raises ``AuditError`` or ``Refused``."""
        ...

    def accepted(self, note: str, checkpoint: Checkpoint, changes: Sequence[pb.ListChange]) -> None:
        """The checkpoint verified and ``changes`` are released to the replica."""
        ...


@dataclass(frozen=True)
class Trust:
    """What a verifying node is configured with: the log's origin and the
    custodian's verifier keys (two during a handover). ``replay_log``: start
    by replaying and verifying every change from the first, as an auditor
    does, instead of from a snapshot proven against the log."""

    verifiers: tuple[Verifier, ...]
    origin: str = DEFAULT_ORIGIN
    replay_log: bool = False

    @classmethod
    def from_file(cls, path: Path, origin: str = DEFAULT_ORIGIN) -> Trust:
        """A PEM public key file (named like the origin), or a file of
        verifier key lines (``name+id+base64``), one per line."""
        text = Path(path).read_text(encoding="utf-8", errors="replace")
        if "-----BEGIN" in text:
            return cls((verifier_from_file(origin, Path(path)),), origin)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return cls(tuple(Verifier.from_vkey(line) for line in lines), origin)


@dataclass
class VerificationStats:
    checkpoints_verified: int = 0
    consistency_proofs: int = 0  # from the last verified checkpoint to the next
    gossip_proofs: int = 0  # between this node's checkpoint and a peer's
    changes_verified: int = 0
    verified_size: int = 0
    alerts: dict[str, int] = field(default_factory=dict)
    last_alert: str = ""

    def alert(self, reason: str, message: str) -> None:
        self.alerts[reason] = self.alerts.get(reason, 0) + 1
        self.last_alert = f"{reason}: {message}"

    def as_dict(self) -> dict[str, object]:
        return {
            "checkpoints_verified": self.checkpoints_verified,
            "consistency_proofs": self.consistency_proofs,
            "gossip_proofs": self.gossip_proofs,
            "changes_verified": self.changes_verified,
            "verified_size": self.verified_size,
            "alerts": dict(sorted(self.alerts.items())),
            "last_alert": self.last_alert,
        }


class Refused(Exception):
    """The node refused what it received; ``reason`` is the counted alert
    (``counted=False``: refused again for a reason already alerted once)."""

    def __init__(self, reason: str, message: str, *, counted: bool = True) -> None:
        super().__init__(message)
        self.reason = reason
        self.counted = counted


class LogVerifier:
    """Stages changes and releases them once a checkpoint covering them verifies."""

    def __init__(
        self,
        trust: Trust,
        proofs: ProofSource,
        *,
        gossip: Gossip | None = None,
        name: str = "node",
        guard: CheckpointGuard | None = None,
    ) -> None:
        self.trust = trust
        self.proofs = proofs
        self.gossip = gossip
        self.guard = guard
        self.name = name
        self.stats = VerificationStats()
        self.frontier = Frontier()
        self.checkpoint: Checkpoint | None = None  # the last verified one
        self._staged: list[pb.ListChange] = []
        self._stage = Frontier()

    @property
    def verified_sequence(self) -> int:
        return self.frontier.size

    def drop_stage(self) -> None:
        """Forget unverified changes (on a reconnect: the feed resends them)."""
        self._staged = []
        self._stage = self.frontier.copy()

    def adopt(self, checkpoint: Checkpoint, frontier: Frontier) -> None:
        """Start from a verified snapshot: ``frontier`` hashes to the
        checkpoint's root (``snapshot_check``), so the feed after it is
        verified as if every change before it had been received."""
        if frontier.size != checkpoint.size or frontier.root() != checkpoint.root_hash:
            raise ValueError("the frontier is not the checkpoint's")
        self.frontier = frontier
        self._stage = frontier.copy()
        self._staged = []
        self.checkpoint = checkpoint
        self.stats.verified_size = checkpoint.size
        if self.gossip is not None:
            self.gossip.publish(self, checkpoint)

    def open(self, note: str) -> Checkpoint:
        """A checkpoint whose signature and origin verify (``Refused`` if not)."""
        try:
            return self._open(note, ())
        except Refused as error:
            if not error.counted:
                self.drop_stage()
                raise
            raise self.refuse(error.reason, str(error)) from error
        except AuditError as error:
            raise self.refuse(error.reason, str(error)) from error

    def _open(self, note: str, staged: Sequence[pb.ListChange]) -> Checkpoint:
        if self.guard is not None:
            return self.guard.open(note, staged)
        return open_checkpoint(note, self.trust.verifiers, self.trust.origin)

    def refuse(self, reason: str, message: str) -> Refused:
        """Count an alert found outside ``receive`` and return it to raise."""
        self.drop_stage()
        self.stats.alert(reason, message)
        log.warning("%s: ALERT %s, refused: %s", self.name, reason, message)
        return Refused(reason, message)

    def receive(self, changes: Sequence[pb.ListChange], note: str) -> list[pb.ListChange]:
        """Stage ``changes`` and, if ``note`` (a signed checkpoint) is given,
        verify; returns the changes now verified, in order (none while
        waiting for a checkpoint). Raises ``Refused`` after counting it."""
        try:
            self._stage_changes(changes)
            if not note:
                if len(self._staged) > MAX_STAGED:
                    raise Refused(
                        NO_CHECKPOINT,
                        f"{len(self._staged):,} changes arrived without a signed checkpoint",
                    )
                return []
            return self._verify(note)
        except Refused as error:
            if not error.counted:
                self.drop_stage()
                raise
            raise self.refuse(error.reason, str(error)) from error
        except (AuditError, LeafError) as error:
            raise self.refuse(getattr(error, "reason", "LEAF_ENCODING"), str(error)) from error

    def _stage_changes(self, changes: Sequence[pb.ListChange]) -> None:
        stage = self._stage
        for change in changes:
            expected = stage.size + 1
            if change.sequence != expected:
                what = "replayed" if change.sequence < expected else "a gap before it"
                raise BadLeaf(
                    f"change {change.sequence} received where change {expected} was due "
                    f"({what}, or out of order)",
                    expected - 1,
                )
            stage.append(leaf_hash(change))
            self._staged.append(change)

    def _verify(self, note: str) -> list[pb.ListChange]:
        checkpoint = self._open(note, self._staged)
        stage = self._stage
        if checkpoint.size != stage.size:
            raise InconsistentTree(
                f"the checkpoint states size {checkpoint.size} but the changes received "
                f"end at sequence {stage.size}"
            )
        previous = self.checkpoint
        if previous is not None and previous.size > 0:
            self.check_consistency(previous, checkpoint)
        root = stage.root()
        if root != checkpoint.root_hash:
            first = self.frontier.size + 1
            raise InconsistentTree(
                f"changes {first} to {stage.size} hash to root {short(root)}, but the signed "
                f"checkpoint of size {checkpoint.size} states {short(checkpoint.root_hash)}: "
                "a change was altered, dropped or added",
                first - 1,
                stage.size,
            )
        verified, self._staged = self._staged, []
        self.frontier = stage
        self._stage = stage.copy()
        self.checkpoint = checkpoint
        stats = self.stats
        stats.checkpoints_verified += 1
        stats.changes_verified += len(verified)
        stats.verified_size = checkpoint.size
        if self.guard is not None:
            self.guard.accepted(note, checkpoint, verified)
        if self.gossip is not None:
            self.gossip.publish(self, checkpoint)
        return verified

    def check_consistency(
        self, older: Checkpoint, newer: Checkpoint, *, gossip: bool = False
    ) -> None:
        """Ask the CEIR for a consistency proof and verify it (counted)."""
        try:
            proof = self.proofs(older.size, newer.size)
        except Exception as error:  # the link's failure: no proof, nothing verified
            raise Refused(
                LINK_FAILED,
                f"no consistency proof from size {older.size} to {newer.size}: {error}",
            ) from error
        if gossip:
            self.stats.gossip_proofs += 1
        else:
            self.stats.consistency_proofs += 1
        verify_consistency(older.size, newer.size, proof, older.root_hash, newer.root_hash)


class Gossip:
    """The nodes' latest verified checkpoints, compared as they are published.

    In-process for the simulation; between real operators this would be a
    small exchange of signed notes (any channel will do: the notes are signed).
    """

    def __init__(self, proof_interval: float = 1.0) -> None:
        """``proof_interval``: the least time between two consistency proofs
        one node asks for about one peer (checkpoints of equal size are
        compared every time: that needs no proof)."""
        self._lock = threading.Lock()
        self._proof_interval = proof_interval
        self._proved_at: dict[tuple[str, str], float] = {}
        self._latest: dict[str, Checkpoint] = {}
        # (publisher, peer) -> the peer's checkpoint already shown consistent
        # with one of the publisher's of at least its size: consistency along
        # the publisher's own verified chain then covers every later one.
        self._settled: dict[tuple[str, str], Checkpoint] = {}
        self.split_views: list[str] = []

    def latest(self) -> dict[str, Checkpoint]:
        with self._lock:
            return dict(self._latest)

    def publish(self, node: LogVerifier, checkpoint: Checkpoint) -> None:
        """Record ``node``'s new checkpoint and compare it with every peer's;
        a split view is counted on ``node`` (and listed here)."""
        with self._lock:
            self._latest[node.name] = checkpoint
            peers = [(n, c) for n, c in self._latest.items() if n != node.name]
        for peer, theirs in peers:
            pair = (node.name, peer)
            if self._settled.get(pair) == theirs:
                continue
            if theirs.size != checkpoint.size:
                # A proof per feed message per peer would cost the register
                # more than the feed itself: prove at most once an interval.
                now = time.monotonic()
                if now - self._proved_at.get(pair, -math.inf) < self._proof_interval:
                    continue
                self._proved_at[pair] = now
            problem = self._compare(node, checkpoint, theirs)
            if problem is None:
                if theirs.size <= checkpoint.size:
                    self._settled[(node.name, peer)] = theirs
                continue
            message = f"{node.name} and {peer}: {problem}"
            with self._lock:
                self.split_views.append(message)
            node.stats.alert(SPLIT_VIEW, message)
            self._settled[(node.name, peer)] = theirs  # alerted once per peer checkpoint
            log.error("%s: ALERT %s: %s", node.name, SPLIT_VIEW, message)

    @staticmethod
    def _compare(node: LogVerifier, mine: Checkpoint, theirs: Checkpoint) -> str | None:
        if mine.size == theirs.size:
            if mine.root_hash == theirs.root_hash:
                return None
            return (
                f"two signed checkpoints of size {mine.size} with different roots "
                f"({short(mine.root_hash)} and {short(theirs.root_hash)})"
            )
        older, newer = (mine, theirs) if mine.size < theirs.size else (theirs, mine)
        try:
            node.check_consistency(older, newer, gossip=True)
        except VerificationError as error:
            return f"checkpoints of sizes {older.size} and {newer.size} are not consistent: {error}"
        except Refused:
            return None  # no proof now: compare again at the next checkpoint
        return None

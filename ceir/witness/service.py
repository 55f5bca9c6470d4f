"""The witness's decision: cosign a checkpoint only if it extends what it cosigned before.

``Witness.add_checkpoint`` does, in order (each refusal a domain error the
gRPC layer maps to a status, AIP-193):

1. bounds: the note, the policies and the proof are no larger than a real
   request needs (``INVALID_ARGUMENT``, ``TOO_LARGE``);
2. the checkpoint is one of the trusted policy's log (``UNKNOWN_LOG``);
3. the extra policies, in version order, walk the chain on from the last
   policy the witness trusts (``walk_chain``; the refusal's own reason,
   ``THRESHOLD_NOT_MET`` and so on); a version it already holds must have
   the same text (``POLICY_CONFLICT``);
4. the checkpoint is signed by the log key of a policy of the chain
   (``UNKNOWN_LOG_KEY``, ``BAD_SIGNATURE``), and not by the key of an older
   policy than the last one whose key it cosigned (``FAILED_PRECONDITION``,
   ``SUPERSEDED_LOG_KEY``): once the new custodian's checkpoints are
   witnessed, the old key signs nothing more that counts;
5. ``old_size`` is the size it last cosigned (``FAILED_PRECONDITION``,
   ``WITNESS_CONFLICT``, ErrorInfo metadata ``size``: the caller fetches a
   proof from there and asks again);
6. the consistency proof leads from its last root to the new one
   (``INVALID_ARGUMENT``, ``INCONSISTENT``; a failure with a proof of the
   right shape is logged as a possible split view);
7. the new state is saved, then the checkpoint cosigned (``Cosigner``).

One request at a time: the check and the save of a log's state are one step.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ceir.audit.checkpoint import Checkpoint
from ceir.audit.errors import (
    BadProof,
    BadSignature,
    InconsistentTree,
    MalformedCheckpoint,
    MalformedNote,
    UnknownKey,
)
from ceir.audit.merkle import HASH_SIZE, verify_consistency
from ceir.audit.note import Verifier, open_note
from ceir.custody import Cosigner, CustodyPolicy, CustodyRefusal, split_note, walk_chain
from ceir.custody.evidence import policy_text
from ceir.domain.errors import FailedPrecondition, InvalidArgument

from .state import LogState, load_state, save_state

__all__ = ["MAX_CHECKPOINT_BYTES", "MAX_POLICIES", "MAX_PROOF_HASHES", "Witness"]

log = logging.getLogger("ceir.witness")

MAX_CHECKPOINT_BYTES = 16 * 1024  # a checkpoint and 100 signature lines fit in 12 KiB
MAX_POLICIES = 16  # policies to walk in one request; a register has few versions
MAX_POLICY_BYTES = 64 * 1024
MAX_PROOF_HASHES = 128  # a consistency proof of a 2**64 tree has fewer than 130


@dataclass
class Witness:
    """A witness of the log of ``trusted`` (policy 0), cosigning with ``cosigner``."""

    cosigner: Cosigner
    trusted: CustodyPolicy
    state_path: Path
    clock: Callable[[], float] = time.time
    _logs: dict[str, LogState] = field(init=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._logs = load_state(self.state_path)

    def state(self, origin: str) -> LogState:
        """What the witness last cosigned of ``origin``'s log."""
        with self._lock:
            return self._logs.get(origin, LogState())

    def add_checkpoint(
        self, old_size: int, proof: Sequence[bytes], note: str, policies: Sequence[str]
    ) -> str:
        """The cosignature line (newline included) for the signed checkpoint ``note``."""
        _check_bounds(proof, note, policies)
        checkpoint = _parse_checkpoint(note)
        if checkpoint.origin != self.trusted.origin:
            raise InvalidArgument.field(
                "checkpoint",
                f"is of log {checkpoint.origin!r}; this witness witnesses {self.trusted.origin!r}",
                reason="UNKNOWN_LOG",
            )
        now = int(self.clock())
        with self._lock:
            current = self._logs.get(checkpoint.origin, LogState())
            chain = self._walk(current.policies, policies, now)
            epoch = _signed_by(note, chain)
            if epoch < current.epoch:
                raise FailedPrecondition(
                    f"the checkpoint is signed by the log key of policy version {epoch}; this "
                    f"witness has cosigned checkpoints of version {current.epoch}'s key since",
                    reason="SUPERSEDED_LOG_KEY",
                )
            if old_size != current.size:
                raise FailedPrecondition(
                    f"old_size is {old_size}, but the last checkpoint this witness cosigned "
                    f"is at size {current.size}: send a consistency proof from there",
                    reason="WITNESS_CONFLICT",
                    metadata={"size": str(current.size)},
                )
            self._check_consistent(current, checkpoint, proof)
            policy_notes = tuple(policies_after(chain))
            updated = LogState(checkpoint.size, checkpoint.root_hash, epoch, policy_notes)
            logs = {**self._logs, checkpoint.origin: updated}
            save_state(self.state_path, logs)
            self._logs = logs
        return self.cosigner.cosign(split_note(note)[0], now).line()

    def _walk(
        self, held: tuple[str, ...], offered: Sequence[str], now: int
    ) -> list[tuple[CustodyPolicy, str]]:
        """The chain from policy 0: the held notes, then the offered ones that come after."""
        chain: list[tuple[CustodyPolicy, str]] = [(self.trusted, "")]
        for note in held:  # verified when they were walked
            chain.append((CustodyPolicy.parse(policy_text(note)), note))
        newer: list[str] = []
        for index, note in enumerate(offered):
            name = f"policies[{index}]"
            try:
                policy = CustodyPolicy.parse(policy_text(note))
            except (CustodyRefusal, MalformedNote) as error:
                raise InvalidArgument.field(name, str(error), reason="POLICY_FORMAT") from None
            if policy.version < len(chain):
                if policy != chain[policy.version][0]:
                    raise InvalidArgument.field(
                        name,
                        f"policy version {policy.version} differs from the one this witness "
                        "holds: two policies of one version",
                        reason="POLICY_CONFLICT",
                    )
                continue
            newer.append(note)
        if newer:
            try:
                walk_chain(chain[-1][0], newer, now)
            except CustodyRefusal as error:
                raise InvalidArgument.field("policies", str(error), reason=error.reason) from None
            chain.extend((CustodyPolicy.parse(policy_text(note)), note) for note in newer)
        return chain

    def _check_consistent(
        self, current: LogState, checkpoint: Checkpoint, proof: Sequence[bytes]
    ) -> None:
        try:
            verify_consistency(
                current.size, checkpoint.size, list(proof), current.root, checkpoint.root_hash
            )
        except (BadProof, InconsistentTree) as error:
            if isinstance(error, InconsistentTree):
                log.warning(
                    "possible split view: a checkpoint signed by the log does not extend "
                    "the one this witness cosigned",
                    extra={
                        "origin": checkpoint.origin,
                        "cosigned_size": current.size,
                        "cosigned_root": base64.b64encode(current.root).decode(),
                        "offered_size": checkpoint.size,
                        "offered_root": base64.b64encode(checkpoint.root_hash).decode(),
                        "problem": str(error),
                    },
                )
            raise InvalidArgument.field(
                "consistency_proof", str(error), reason="INCONSISTENT"
            ) from None


def policies_after(chain: Sequence[tuple[CustodyPolicy, str]]) -> list[str]:
    """The signed notes of the chain after policy 0, as the state file keeps them."""
    return [note for _, note in chain[1:]]


def _check_bounds(proof: Sequence[bytes], note: str, policies: Sequence[str]) -> None:
    if len(note.encode()) > MAX_CHECKPOINT_BYTES:
        raise _too_large("checkpoint", f"is more than {MAX_CHECKPOINT_BYTES} bytes")
    if len(policies) > MAX_POLICIES:
        raise _too_large("policies", f"more than {MAX_POLICIES} policies in one request")
    for index, policy in enumerate(policies):
        if len(policy.encode()) > MAX_POLICY_BYTES:
            raise _too_large(f"policies[{index}]", f"is more than {MAX_POLICY_BYTES} bytes")
    if len(proof) > MAX_PROOF_HASHES:
        raise _too_large("consistency_proof", f"more than {MAX_PROOF_HASHES} hashes")
    for index, digest in enumerate(proof):
        if len(digest) != HASH_SIZE:
            raise InvalidArgument.field(
                f"consistency_proof[{index}]",
                f"is {len(digest)} bytes, not a {HASH_SIZE}-byte hash",
                reason="INCONSISTENT",
            )


def _too_large(field_name: str, description: str) -> InvalidArgument:
    return InvalidArgument.field(field_name, description, reason="TOO_LARGE")


def _parse_checkpoint(note: str) -> Checkpoint:
    try:
        return Checkpoint.parse(split_note(note)[0])
    except (MalformedNote, MalformedCheckpoint) as error:
        raise InvalidArgument.field("checkpoint", str(error), reason="CHECKPOINT_FORMAT") from None


def _signed_by(note: str, chain: Sequence[tuple[CustodyPolicy, str]]) -> int:
    """The newest policy version whose log key signed ``note``."""
    versions: dict[tuple[str, int], int] = {}
    keys: dict[tuple[str, int], Verifier] = {}
    for policy, _ in chain:
        key = policy.log_key
        versions[(key.name, key.key_id)] = policy.version
        keys[(key.name, key.key_id)] = key
    try:
        opened = open_note(note, keys.values())
    except UnknownKey as error:
        listed = ", ".join(k.label for k in keys.values())
        raise InvalidArgument.field(
            "checkpoint",
            f"signed by no log key of the policies ({listed}): {error}",
            reason="UNKNOWN_LOG_KEY",
        ) from None
    except BadSignature as error:
        raise InvalidArgument.field("checkpoint", str(error), reason="BAD_SIGNATURE") from None
    return max(versions[(s.name, s.key_id)] for s in opened.signatures)

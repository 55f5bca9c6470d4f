"""Verifying a new custodian before a node moves to it.

A node that trusts policy k and holds the log (verified) up to its own last
checkpoint of size m moves to the register of policy k + 1 only when that
register (its ``GetCustody`` and ``GetConsistencyProof``, nothing else) shows:

1. it is ACTIVE, and lists policy k + 1 that walks from policy k (``walk_chain``:
   both officer thresholds, policy k's witness quorum, not expired); the
   same text as the policy the node walked to at ANNOUNCED, if it did;
2. the handover note verifies (``verify_handover``: both log keys, both
   officer thresholds, policy k + 1's witness quorum) and names the final
   size N and root the node itself recorded at the FROZEN leaf, if it did;
3. a checkpoint of the old key at N with that root (the node's, or the
   register's ``final_checkpoint``);
4. a consistency proof from the node's own last checkpoint (m <= N) to N;
5. the first checkpoint (size M > N) signed by the new key and cosigned by
   policy k + 1's witness quorum (``verify_cosignatures``);
6. a consistency proof from N to M.

Anything that contradicts what the node verified raises ``SwitchRefused``
(an alert: ``HANDOVER_INVALID``, or ``POLICY_REFUSED`` for the chain);
what is merely not there yet (not ACTIVE, too few cosignatures) returns
None: the node asks again later.
"""

from __future__ import annotations

from dataclasses import dataclass

from ceir.audit.checkpoint import Checkpoint, open_checkpoint
from ceir.audit.errors import AuditError
from ceir.audit.merkle import verify_consistency
from ceir.custody import (
    CustodyPolicy,
    CustodyRefusal,
    verify_cosignatures,
    verify_handover,
    walk_chain,
)
from ceir.v1 import custody_pb2 as custody_pb

from .custody_state import CustodyTrust, Final, note_text
from .transport import CeirLink

__all__ = ["HANDOVER_INVALID", "POLICY_REFUSED", "Switch", "SwitchRefused", "verify_switch"]

HANDOVER_INVALID = "HANDOVER_INVALID"
POLICY_REFUSED = "POLICY_REFUSED"


class SwitchRefused(Exception):
    """The new register showed something that does not verify: never switch to it."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Switch:
    """Everything verified about the new custodian: what the node will trust."""

    policy_note: str  # the signed note of policy k + 1
    policy: CustodyPolicy
    handover: str  # the handover note, as verified
    final: Final  # the old key's end: N, its root, a checkpoint at N
    final_cosigned: str  # the checkpoint at N with the most witness cosignatures seen (evidence)
    first_checkpoint: str  # the new key's first, cosigned
    first: Checkpoint
    proof_to_first: list[bytes]  # N -> M


def verify_switch(
    trust: CustodyTrust,
    custody: custody_pb.Custody,
    link: CeirLink,
    now: int,
    outgoing: custody_pb.Custody | None = None,
) -> Switch | None:
    """What ``custody`` (the new register's GetCustody, over ``link``) proves, or None (not yet).

    ``outgoing``: the old register's GetCustody, if it answered: its final
    checkpoint may carry more witness cosignatures (kept for the evidence).
    """
    if custody.state != custody_pb.CUSTODY_STATE_ACTIVE:
        return None
    version = trust.version + 1
    if len(custody.policies) <= version:
        return None
    signed_next = custody.policies[version]
    if trust.announced and note_text(trust.announced) != note_text(signed_next):
        raise SwitchRefused(
            HANDOVER_INVALID,
            f"the new register's policy {version} is not the one announced in the log",
        )
    try:
        policy = walk_chain(trust.current, [signed_next], now)
    except CustodyRefusal as error:
        raise SwitchRefused(POLICY_REFUSED, f"{error.reason}: {error}") from None
    try:
        handover = verify_handover(custody.handover, trust.current, policy, now)
    except CustodyRefusal as error:
        raise SwitchRefused(HANDOVER_INVALID, f"{error.reason}: {error}") from None
    final = _final(trust, custody, handover.size, handover.root_hash)
    _prove_own_checkpoint(trust, link, final)
    if not custody.first_checkpoint:
        return None
    try:
        first = open_checkpoint(custody.first_checkpoint, (policy.log_key,), policy.origin)
        cosigned = verify_cosignatures(
            custody.first_checkpoint, [w.cosigner for w in policy.witnesses], now
        )
    except AuditError as error:
        raise SwitchRefused(
            HANDOVER_INVALID, f"the first checkpoint does not verify: {error}"
        ) from None
    if len(cosigned) < policy.witness_quorum:
        return None  # the witnesses have not all cosigned yet
    if first.size <= final.size:
        raise SwitchRefused(
            HANDOVER_INVALID,
            f"the first checkpoint (size {first.size}) is not after the final size {final.size}",
        )
    proof = _proof(link, final.size, first.size)
    try:
        verify_consistency(final.size, first.size, proof, final.root, first.root_hash)
    except AuditError as error:
        raise SwitchRefused(
            HANDOVER_INVALID,
            f"the first checkpoint does not extend the handed-over log: {error}",
        ) from None
    cosigned_final = _best_final(
        trust, final, [custody.final_checkpoint, outgoing.final_checkpoint if outgoing else ""]
    )
    return Switch(
        signed_next,
        policy,
        custody.handover,
        final,
        cosigned_final,
        custody.first_checkpoint,
        first,
        proof,
    )


def _final(trust: CustodyTrust, custody: custody_pb.Custody, size: int, root: bytes) -> Final:
    """The old key's final checkpoint: the node's own, or the register's, at the note's N."""
    recorded = trust.frozen
    if recorded is not None:
        if (recorded.size, recorded.root) != (size, root):
            raise SwitchRefused(
                HANDOVER_INVALID,
                f"the handover note states size {size}; the node saw the log frozen at "
                f"{recorded.size} with another root"
                if recorded.size != size
                else f"the handover note states another root at size {size} than the node verified",
            )
        return recorded
    old = trust.current
    try:
        checkpoint = open_checkpoint(custody.final_checkpoint, (old.log_key,), old.origin)
    except AuditError as error:
        raise SwitchRefused(
            HANDOVER_INVALID, f"no final checkpoint of the old key: {error}"
        ) from None
    if (checkpoint.size, checkpoint.root_hash) != (size, root):
        raise SwitchRefused(HANDOVER_INVALID, "the final checkpoint and the handover note disagree")
    return Final(size, root, custody.final_checkpoint)


def _best_final(trust: CustodyTrust, final: Final, notes: list[str]) -> str:
    """Of the checkpoints at N the registers show, the one with the most witness cosignatures."""
    old = trust.current
    witnesses = [w.cosigner for w in old.witnesses]
    best, most = final.checkpoint, -1
    for note in [final.checkpoint, *notes]:
        try:
            checkpoint = open_checkpoint(note, (old.log_key,), old.origin)
            count = len(verify_cosignatures(note, witnesses))
        except AuditError:
            continue
        if (checkpoint.size, checkpoint.root_hash) == (final.size, final.root) and count > most:
            best, most = note, count
    return best


def _prove_own_checkpoint(trust: CustodyTrust, link: CeirLink, final: Final) -> None:
    """The node's own last verified checkpoint is a prefix of the final one."""
    if not trust.checkpoint:
        return  # a node that verified nothing yet has nothing of its own to compare
    own = trust.open(trust.checkpoint).checkpoint
    if own.size > final.size:
        raise SwitchRefused(
            HANDOVER_INVALID,
            f"the node verified size {own.size} of the old key, past the final size {final.size}",
        )
    if own.size == final.size:
        if own.root_hash != final.root:
            raise SwitchRefused(HANDOVER_INVALID, "the final root is not the one the node verified")
        return
    if own.size == 0:
        return
    proof = _proof(link, own.size, final.size)
    try:
        verify_consistency(own.size, final.size, proof, own.root_hash, final.root)
    except AuditError as error:
        raise SwitchRefused(
            HANDOVER_INVALID,
            f"the node's checkpoint of size {own.size} is not a prefix of the final log: {error}",
        ) from None


def _proof(link: CeirLink, first: int, second: int) -> list[bytes]:
    return list(link.consistency_proof(first, second))

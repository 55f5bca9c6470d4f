"""A whole handover of a small log with the docs' example keys: notes, proof, evidence.

The log has ``FINAL_SIZE`` leaves under the old key (Telkomsel) and one
more, the ACTIVE leaf, under the new key (Kemenperin), as the ceremony
leaves it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ceir.audit.checkpoint import Checkpoint, sign_checkpoint
from ceir.audit.merkle import MemoryHashStore, Prover, leaf_hash
from ceir.audit.note import Signer
from ceir.custody import Cosigner, cosign, sign_handover, sign_policy
from ceir.custody.evidence import write_evidence
from ceir.custody.handover import Handover

from .example import (
    AYU,
    BUDI,
    DEWI,
    EKO,
    KOMINFO,
    KOMINFO_COSIGNER,
    NEW_LOG,
    OLD_LOG,
    ORIGIN,
    V0,
    V1,
    V1_SIGNERS,
)

FINAL_SIZE = 5
FREEZE_TIME = 1_700_000_000  # November 2023: policy 1 (expires 2025) in force
ACTIVATE_TIME = FREEZE_TIME + 60
CHECKED_AT = ACTIVATE_TIME + 86_400 * 700  # nearly two years later: policy 1 has expired


def leaves(count: int) -> list[bytes]:
    """Leaf hashes of a log of ``count`` made-up leaves."""
    return [leaf_hash(f"leaf {i}".encode()) for i in range(count)]


def tree(count: int) -> tuple[MemoryHashStore, Prover]:
    """A log of ``count`` leaves and its prover."""
    store = MemoryHashStore()
    store.extend(leaves(count))
    return store, Prover(store)


def checkpoint(size: int, signer: Signer, time: int) -> str:
    """The signed checkpoint of the example log at ``size``."""
    _, prover = tree(size)
    return sign_checkpoint(Checkpoint(ORIGIN, size, prover.root(size), time * 10**6), [signer])


@dataclass(frozen=True)
class Parts:
    """Everything the evidence directory holds, before it is written."""

    policy_0: str
    policy_1: str
    final_checkpoint: str
    first_checkpoint: str
    consistency_proof: list[bytes]
    handover: str


def parts(
    policy_1_signers: tuple[Signer, ...] = V1_SIGNERS,
    cosigner: Cosigner = KOMINFO_COSIGNER,
) -> Parts:
    """A complete, valid handover from V0 to V1 at ``FINAL_SIZE``."""
    _, prover = tree(FINAL_SIZE + 1)
    final = cosign(checkpoint(FINAL_SIZE, OLD_LOG, FREEZE_TIME), cosigner, FREEZE_TIME + 1)
    first = cosign(checkpoint(FINAL_SIZE + 1, NEW_LOG, ACTIVATE_TIME), cosigner, ACTIVATE_TIME + 1)
    handover = Handover.between(V0, V1, FINAL_SIZE, prover.root(FINAL_SIZE))
    return Parts(
        policy_0=sign_policy(V0, [AYU, BUDI, KOMINFO]),
        policy_1=sign_policy(V1, list(policy_1_signers)),
        final_checkpoint=final,
        first_checkpoint=first,
        consistency_proof=prover.consistency_proof(FINAL_SIZE, FINAL_SIZE + 1),
        handover=sign_handover(handover, [OLD_LOG, NEW_LOG, AYU, BUDI, DEWI, EKO, KOMINFO]),
    )


def write(directory: Path, evidence: Parts | None = None) -> Path:
    """Write the evidence of ``evidence`` (a valid handover by default) to ``directory``."""
    evidence = evidence or parts()
    write_evidence(
        directory,
        policy_0=evidence.policy_0,
        policy_1=evidence.policy_1,
        final_checkpoint=evidence.final_checkpoint,
        first_checkpoint=evidence.first_checkpoint,
        consistency_proof=evidence.consistency_proof,
        handover=evidence.handover,
    )
    return directory


def digest(text: str) -> bytes:
    """SHA-256 of a text, a stand-in hash."""
    return hashlib.sha256(text.encode()).digest()

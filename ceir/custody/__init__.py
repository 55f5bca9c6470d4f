"""Custody of the register: signed custody policies, witness cosignatures, handover notes.

A pure library like ``ceir.audit`` (no database, no protobuf, no gRPC);
``docs/custody.md`` specifies every byte.

================  =============================================================
module            what it holds
================  =============================================================
``policy``        ``CustodyPolicy``: its canonical text and parser
``chain``         signing policies, ``verify_successor``, ``walk_chain``
``cosignature``   c2sp.org/tlog-cosignature v1 (Ed25519) of checkpoints
``handover``      the handover note: body, signing, verification
``abort``         the abort note: the outgoing officers call a handover off
``errors``        the refusals, each with a ``reason`` and a ``version``
``evidence``      the evidence directory of a handover: written, then checked
``keyfiles``      officers' and witnesses' private key files
================  =============================================================
"""

from ._lines import split_note
from .abort import AbortNote, policy_sha256, sign_abort, verify_abort
from .chain import check_not_expired, sign_policy, verify_successor, walk_chain
from .cosignature import (
    Cosignature,
    CosignatureVerifier,
    Cosigner,
    cosign,
    cosignature_message,
    verify_cosignatures,
)
from .errors import (
    BadCustodySignature,
    CosignatureFromFuture,
    CustodyRefusal,
    DuplicateSigner,
    KeyReused,
    LogKeySignatureMissing,
    MalformedAbort,
    MalformedCosignature,
    MalformedHandover,
    MalformedPolicy,
    PolicyExpired,
    ThresholdNotMet,
    UnknownSigner,
    WitnessQuorumNotMet,
    WrongOrigin,
    WrongVersion,
)
from .handover import Handover, sign_handover, verify_handover
from .policy import CustodyPolicy, Officer, Threshold, Witness

__all__ = [
    "AbortNote",
    "BadCustodySignature",
    "Cosignature",
    "CosignatureFromFuture",
    "CosignatureVerifier",
    "Cosigner",
    "CustodyPolicy",
    "CustodyRefusal",
    "DuplicateSigner",
    "Handover",
    "KeyReused",
    "LogKeySignatureMissing",
    "MalformedAbort",
    "MalformedCosignature",
    "MalformedHandover",
    "MalformedPolicy",
    "Officer",
    "PolicyExpired",
    "Threshold",
    "ThresholdNotMet",
    "UnknownSigner",
    "Witness",
    "WitnessQuorumNotMet",
    "WrongOrigin",
    "WrongVersion",
    "check_not_expired",
    "cosign",
    "cosignature_message",
    "policy_sha256",
    "sign_abort",
    "sign_handover",
    "sign_policy",
    "split_note",
    "verify_abort",
    "verify_cosignatures",
    "verify_handover",
    "verify_successor",
    "walk_chain",
]

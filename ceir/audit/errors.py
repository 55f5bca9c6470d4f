"""Errors of the audit library, each saying what failed and where.

::

    AuditError
    ├── LeafEncodingError      a change cannot be encoded, or bytes are not a valid leaf
    ├── KeyFormatError         a key file or verifier key string is malformed
    ├── MissingHashes          the hash store lacks hashes a proof or root needs
    └── VerificationError      something an operator was given does not verify
        ├── MalformedNote          not a signed note (syntax)
        ├── MalformedCheckpoint    a note whose text is not a valid checkpoint
        ├── UnknownKey             no signature from any trusted key
        ├── BadSignature           a trusted key's signature does not verify
        ├── BadProof               an inclusion or consistency proof does not verify
        ├── InconsistentTree       leaves or checkpoints disagree with a signed root
        └── BadLeaf                a leaf does not hash to what the log recorded

A node that follows the log refuses whatever raises ``VerificationError`` and
keeps its last verified state; ``reason`` (UPPER_SNAKE) is what it counts in
its report. The other errors are faults of the caller or of the server's
storage, not evidence about the log.
"""

from __future__ import annotations


class AuditError(Exception):
    """Base of every error raised by ``ceir.audit``."""

    reason = "AUDIT_ERROR"


class LeafEncodingError(AuditError, ValueError):
    """A change cannot be encoded as a leaf, or bytes are not a canonical leaf."""

    reason = "LEAF_ENCODING"


class KeyFormatError(AuditError, ValueError):
    """A key file, signer key or verifier key string is malformed."""

    reason = "KEY_FORMAT"


class MissingHashes(AuditError, LookupError):
    """The hash store does not hold hashes that a root or a proof needs."""

    reason = "MISSING_HASHES"


class VerificationError(AuditError):
    """Something received from the log does not verify: refuse it."""

    reason = "VERIFICATION_FAILED"


class MalformedNote(VerificationError):
    """The text is not a signed note (c2sp.org/signed-note)."""

    reason = "MALFORMED_NOTE"


class MalformedCheckpoint(VerificationError):
    """The note's text is not a checkpoint of the expected log."""

    reason = "MALFORMED_CHECKPOINT"


class UnknownKey(VerificationError):
    """No signature on the note comes from a trusted key.

    ``keys`` names the keys that did sign (``name+hex key ID``).
    """

    reason = "UNKNOWN_KEY"

    def __init__(self, message: str, keys: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.keys = keys


class BadSignature(VerificationError):
    """A signature made under a trusted key's name and ID does not verify."""

    reason = "BAD_SIGNATURE"

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


class BadProof(VerificationError):
    """An inclusion or consistency proof does not lead to the signed root."""

    reason = "BAD_PROOF"


class InconsistentTree(VerificationError):
    """Leaves or checkpoints disagree with a signed root (a rewritten or forked log).

    ``first`` and ``end`` bound the leaf indexes among which the first
    difference lies: ``first <= index < end``.
    """

    reason = "INCONSISTENT_TREE"

    def __init__(self, message: str, first: int = 0, end: int = 0) -> None:
        super().__init__(message)
        self.first = first
        self.end = end


class BadLeaf(VerificationError):
    """Leaf ``index`` does not hash to the hash the log holds for it."""

    reason = "BAD_LEAF"

    def __init__(self, message: str, index: int) -> None:
        super().__init__(message)
        self.index = index

"""Errors of the custody library: why a policy, cosignature or handover note is refused.

::

    VerificationError (ceir.audit.errors)
    └── CustodyRefusal            something received about custody does not verify
        ├── MalformedPolicy           POLICY_FORMAT: not a canonical policy text
        ├── MalformedHandover         HANDOVER_FORMAT: not a canonical handover note body
        ├── MalformedAbort            ABORT_FORMAT: not a canonical abort note body
        ├── MalformedCosignature      COSIGNATURE_FORMAT: not a tlog-cosignature/v1 signature
        ├── WrongVersion              WRONG_VERSION: not the next version, or another policy's note
        ├── WrongOrigin               WRONG_ORIGIN: about another log
        ├── KeyReused                 KEY_REUSED: a key listed before comes back under another role
        ├── BadCustodySignature       BAD_SIGNATURE: a listed key's signature does not verify
        ├── DuplicateSigner           DUPLICATE_SIGNER: a listed key signed twice
        ├── UnknownSigner             UNKNOWN_SIGNER: no signature by any listed key at all
        ├── ThresholdNotMet           THRESHOLD_NOT_MET: too few officers of an organisation
        ├── WitnessQuorumNotMet       WITNESS_QUORUM_NOT_MET: too few distinct witnesses
        ├── LogKeySignatureMissing    LOG_KEY_SIGNATURE_MISSING: a log key did not sign
        ├── PolicyExpired             POLICY_EXPIRED: the policy's expiry has passed
        └── CosignatureFromFuture     COSIGNATURE_FROM_FUTURE: a cosignature dated after now

Every refusal carries ``reason`` (UPPER_SNAKE, what a node counts) and
``version``: the policy version being verified, or ``None`` when the
refusal is about no policy version (a checkpoint's cosignature).
A node refuses what raises, keeps its last trusted policy, and reports the
version and the reason.
"""

from __future__ import annotations

from ceir.audit.errors import VerificationError

__all__ = [
    "BadCustodySignature",
    "CosignatureFromFuture",
    "CustodyRefusal",
    "DuplicateSigner",
    "KeyReused",
    "LogKeySignatureMissing",
    "MalformedAbort",
    "MalformedCosignature",
    "MalformedHandover",
    "MalformedPolicy",
    "PolicyExpired",
    "ThresholdNotMet",
    "UnknownSigner",
    "WitnessQuorumNotMet",
    "WrongOrigin",
    "WrongVersion",
]


class CustodyRefusal(VerificationError):
    """A custody policy, cosignature or handover note does not verify: refuse it."""

    reason = "CUSTODY_REFUSED"

    def __init__(self, message: str, version: int | None = None) -> None:
        prefix = "" if version is None else f"policy version {version}: "
        super().__init__(prefix + message)
        self.version = version


class MalformedPolicy(CustodyRefusal):
    """The text is not a canonical custody policy (or the note around it is malformed)."""

    reason = "POLICY_FORMAT"


class MalformedHandover(CustodyRefusal):
    """The note's body is not a canonical handover statement."""

    reason = "HANDOVER_FORMAT"


class MalformedAbort(CustodyRefusal):
    """The note's body is not a canonical abort note."""

    reason = "ABORT_FORMAT"


class MalformedCosignature(CustodyRefusal):
    """A cosignature line by a trusted witness is not key ID, timestamp and signature."""

    reason = "COSIGNATURE_FORMAT"


class WrongVersion(CustodyRefusal):
    """The policy is not the version that comes next (or a note names another version)."""

    reason = "WRONG_VERSION"


class WrongOrigin(CustodyRefusal):
    """The policy or note is about another log than the trusted policy's."""

    reason = "WRONG_ORIGIN"


class KeyReused(CustodyRefusal):
    """A public key of the trusted policy comes back in the next under another name or role."""

    reason = "KEY_REUSED"


class BadCustodySignature(CustodyRefusal):
    """A signature made under a listed key's name and ID does not verify.

    ``key`` names the key (``name+hex key ID``).
    """

    reason = "BAD_SIGNATURE"

    def __init__(self, message: str, version: int | None, key: str) -> None:
        super().__init__(message, version)
        self.key = key


class DuplicateSigner(CustodyRefusal):
    """One listed key signed the note more than once.

    ``key`` names the key (``name+hex key ID``).
    """

    reason = "DUPLICATE_SIGNER"

    def __init__(self, message: str, version: int | None, key: str) -> None:
        super().__init__(message, version)
        self.key = key


class UnknownSigner(CustodyRefusal):
    """No signature on the note is by a key the policies list.

    ``keys`` names the keys that did sign.
    """

    reason = "UNKNOWN_SIGNER"

    def __init__(self, message: str, version: int | None, keys: tuple[str, ...]) -> None:
        super().__init__(message, version)
        self.keys = keys


class ThresholdNotMet(CustodyRefusal):
    """Fewer distinct listed officers of ``organisation`` signed than its threshold."""

    reason = "THRESHOLD_NOT_MET"

    def __init__(
        self, message: str, version: int | None, organisation: str, needed: int, got: int
    ) -> None:
        super().__init__(message, version)
        self.organisation = organisation
        self.needed = needed
        self.got = got


class WitnessQuorumNotMet(CustodyRefusal):
    """Fewer distinct listed witnesses signed than the quorum."""

    reason = "WITNESS_QUORUM_NOT_MET"

    def __init__(self, message: str, version: int | None, needed: int, got: int) -> None:
        super().__init__(message, version)
        self.needed = needed
        self.got = got


class LogKeySignatureMissing(CustodyRefusal):
    """A handover note lacks the signature of the old or the new log key (``key``)."""

    reason = "LOG_KEY_SIGNATURE_MISSING"

    def __init__(self, message: str, version: int | None, key: str) -> None:
        super().__init__(message, version)
        self.key = key


class PolicyExpired(CustodyRefusal):
    """The policy's expiry (``expires``, Unix seconds) is not after ``now``."""

    reason = "POLICY_EXPIRED"


class CosignatureFromFuture(CustodyRefusal):
    """A witness's cosignature is dated after the verifier's clock."""

    reason = "COSIGNATURE_FROM_FUTURE"

"""The abort note: the outgoing custodian's officers call off a handover before it takes effect.

Its text is four lines, each ending in a newline, fields separated by one space::

    ceir/custody-abort/v1          the format
    origin <log origin>            the log whose handover is called off
    policy <k+1>                   the policy version that will not take effect
    policy-sha256 <hex>            SHA-256 of that policy's text, 64 lowercase hex digits

It is a signed note, accepted only with, over that text, a threshold of the
**outgoing** custodian's officers as v(k) lists them: the organisation that
holds the register may keep it. Counting is as for policies (``chain``):
distinct listed keys, unknown keys ignored, a failing or repeated listed key
refuses the note.

The policy's SHA-256 binds the note to one proposal: a version aborted once
may be proposed again with another text, and the old note must not call off
the new proposal (anyone may submit a note they have seen).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from ceir.audit.errors import MalformedNote
from ceir.audit.note import Signer, sign_note

from ._approvals import require_officers, verified_keys
from ._lines import split_note
from .errors import MalformedAbort, WrongOrigin, WrongVersion
from .policy import CustodyPolicy

__all__ = ["FORMAT", "AbortNote", "sign_abort", "verify_abort"]

FORMAT = "ceir/custody-abort/v1"
_DECIMAL = re.compile(r"[1-9][0-9]{0,18}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_TOKEN = re.compile(r"[!-~]+")


@dataclass(frozen=True)
class AbortNote:
    """What an abort note states: the log, the policy version and the text called off."""

    origin: str
    policy: int
    policy_sha256: str

    def __post_init__(self) -> None:
        if not _TOKEN.fullmatch(self.origin):
            raise ValueError(f"origin {self.origin!r} is empty or not ASCII without spaces")
        if not 1 <= self.policy < 2**63:
            raise ValueError(f"policy version {self.policy} is outside 1 to 2**63 - 1")
        if not _SHA256.fullmatch(self.policy_sha256):
            raise ValueError(f"{self.policy_sha256!r} is not 64 lowercase hex digits")

    @classmethod
    def of(cls, policy: CustodyPolicy) -> AbortNote:
        """The abort of ``policy`` (the proposed version k + 1)."""
        return cls(policy.origin, policy.version, policy_sha256(policy))

    def text(self) -> str:
        """The note text."""
        return (
            f"{FORMAT}\norigin {self.origin}\npolicy {self.policy}\n"
            f"policy-sha256 {self.policy_sha256}\n"
        )

    @classmethod
    def parse(cls, text: str, version: int | None = None) -> AbortNote:
        """The abort a canonical text states; ``MalformedAbort`` otherwise."""
        lines = text[:-1].split("\n") if text.endswith("\n") else []
        if len(lines) != 4 or lines[0] != FORMAT:
            raise MalformedAbort(
                f"the text is not {FORMAT!r} and the lines origin, policy, policy-sha256", version
            )
        values = []
        for number, (keyword, line) in enumerate(
            zip(("origin", "policy", "policy-sha256"), lines[1:], strict=True), 2
        ):
            value = line.removeprefix(keyword + " ")
            if value == line:
                raise MalformedAbort(f"line {number}, {line!r}, is not {keyword!r}", version)
            values.append(value)
        origin, policy, digest = values
        if not _DECIMAL.fullmatch(policy):
            raise MalformedAbort(f"policy {policy!r} is not a decimal from 1", version)
        try:
            note = cls(origin, int(policy), digest)
        except ValueError as error:
            raise MalformedAbort(str(error), version) from None
        if note.text() != text:
            raise MalformedAbort("the text is not canonical", version)
        return note


def policy_sha256(policy: CustodyPolicy) -> str:
    """SHA-256 of the policy's canonical text, lowercase hex."""
    return hashlib.sha256(policy.text().encode()).hexdigest()


def sign_abort(abort: AbortNote, signers: Iterable[Signer]) -> str:
    """The signed note of the abort by each of ``signers`` (the outgoing custodian's officers)."""
    return sign_note(abort.text(), signers)


def verify_abort(message: str, outgoing: CustodyPolicy, proposed: CustodyPolicy) -> AbortNote:
    """The abort ``message`` states, if it calls off ``proposed`` and enough officers signed.

    ``outgoing`` is the policy in force (version k), ``proposed`` the one
    called off (k + 1). Raises a ``CustodyRefusal`` with version k + 1.
    """
    version = outgoing.version + 1
    try:
        text, lines = split_note(message)
    except MalformedNote as error:
        raise MalformedAbort(f"not a signed note: {error}", version) from None
    abort = AbortNote.parse(text, version)
    if abort.origin != outgoing.origin:
        raise WrongOrigin(
            f"the note aborts a handover of log {abort.origin!r}, not {outgoing.origin!r}", version
        )
    if abort.policy != version or proposed.version != version:
        raise WrongVersion(
            f"the note aborts policy version {abort.policy}; after version "
            f"{outgoing.version} only version {version} can be aborted",
            version,
        )
    if abort.policy_sha256 != policy_sha256(proposed):
        raise WrongVersion(
            "the note aborts another text of this policy version (its policy-sha256 differs)",
            version,
        )
    verified = verified_keys(message, lines, (outgoing.note_verifiers(),), version)
    require_officers(verified, lines, outgoing, outgoing.custodian, "outgoing custodian", version)
    return abort

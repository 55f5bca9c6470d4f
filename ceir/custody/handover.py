"""The handover note: the outgoing and incoming custodians' joint statement of the final log.

Its text is seven lines, each ending in a newline, fields separated by one space::

    ceir/handover/v1              the format
    origin <log origin>           the log handed over
    size <N>                      the final tree size under the old key: decimal, no leading zeros
    root <base64 root hash>       the RFC 6962 root at size N, 32 bytes
    old-key <name+hex key ID>     the outgoing log key, as v(k-1) lists it
    new-key <name+hex key ID>     the incoming log key, as v(k) lists it
    policy <k>                    the policy version that names the incoming custodian

It is a signed note, and a node accepts it only with, over that text:

- a signature by the old log key and one by the new log key;
- a threshold of the outgoing custodian's officers, as v(k-1) lists them;
- a threshold of the incoming custodian's officers, as v(k) lists them;
- a quorum of v(k)'s witnesses: the handover happens under v(k), whose
  witnesses v(k-1)'s witnesses approved.

Counting is as for policies (``chain``): distinct listed keys, unknown keys
ignored, a failing or repeated listed key refuses the note. v(k) must have
been reached through the chain and must not have expired.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from ceir.audit.errors import MalformedNote
from ceir.audit.merkle import HASH_SIZE
from ceir.audit.note import Signer, sign_note

from ._approvals import require_officers, require_witnesses, verified_keys
from ._lines import split_note
from .chain import check_not_expired
from .errors import KeyReused, LogKeySignatureMissing, MalformedHandover, WrongOrigin, WrongVersion
from .policy import CustodyPolicy

__all__ = ["FORMAT", "Handover", "sign_handover", "verify_handover"]

FORMAT = "ceir/handover/v1"
_KEYWORDS = ("origin", "size", "root", "old-key", "new-key", "policy")
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")
_LABEL = re.compile(r"[!-*,-~]+\+[0-9a-f]{8}")


@dataclass(frozen=True)
class Handover:
    """What a handover note states: the log, its final size and root, the two keys, the policy."""

    origin: str
    size: int
    root_hash: bytes
    old_key: str
    new_key: str
    policy: int

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[!-~]+", self.origin):
            raise ValueError(f"origin {self.origin!r} is empty or not ASCII without spaces")
        if not 0 <= self.size < 2**64:
            raise ValueError(f"tree size {self.size} is outside 0 to 2**64 - 1")
        if len(self.root_hash) != HASH_SIZE:
            raise ValueError(f"root hash is {len(self.root_hash)} bytes, expected {HASH_SIZE}")
        for what, label in (("old key", self.old_key), ("new key", self.new_key)):
            if not _LABEL.fullmatch(label):
                raise ValueError(f"{what} {label!r} is not <key name>+<8 lowercase hex digits>")
        if not 1 <= self.policy < 2**63:
            raise ValueError(f"policy version {self.policy} is outside 1 to 2**63 - 1")

    @classmethod
    def between(
        cls, previous: CustodyPolicy, current: CustodyPolicy, size: int, root_hash: bytes
    ) -> Handover:
        """The handover from ``previous``'s custodian to ``current``'s at tree size ``size``."""
        return cls(
            current.origin,
            size,
            root_hash,
            previous.log_key.label,
            current.log_key.label,
            current.version,
        )

    def text(self) -> str:
        """The note text."""
        values = (
            self.origin,
            str(self.size),
            base64.b64encode(self.root_hash).decode(),
            self.old_key,
            self.new_key,
            str(self.policy),
        )
        lines = [FORMAT, *(f"{k} {v}" for k, v in zip(_KEYWORDS, values, strict=True))]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse(cls, text: str, version: int | None = None) -> Handover:
        """The handover a canonical note text states; ``MalformedHandover`` says which line."""
        lines = text[:-1].split("\n") if text.endswith("\n") else []
        if len(lines) != 1 + len(_KEYWORDS) or lines[0] != FORMAT:
            raise MalformedHandover(
                f"the text is not {FORMAT!r} and the lines {', '.join(_KEYWORDS)}", version
            )
        values = []
        for number, (keyword, line) in enumerate(zip(_KEYWORDS, lines[1:], strict=True), 2):
            value = line.removeprefix(keyword + " ")
            if value == line:
                raise MalformedHandover(f"line {number}, {line!r}, is not {keyword!r}", version)
            values.append(value)
        origin, size, root, old_key, new_key, policy = values
        try:
            handover = cls(origin, _decimal(size), _root(root), old_key, new_key, _decimal(policy))
        except ValueError as error:
            raise MalformedHandover(str(error), version) from None
        if handover.text() != text:
            raise MalformedHandover("the text is not canonical", version)
        return handover


def sign_handover(handover: Handover, signers: list[Signer]) -> str:
    """The signed note of the handover by each of ``signers`` (log keys, officers, witnesses)."""
    return sign_note(handover.text(), signers)


def verify_handover(
    message: str, previous: CustodyPolicy, current: CustodyPolicy, now: int
) -> Handover:
    """The handover ``message`` states, if signed as the module docstring requires.

    ``previous`` and ``current`` are policies the node trusts (reached by
    ``walk_chain``), versions k - 1 and k. Raises a ``CustodyRefusal`` with
    ``version`` k.
    """
    version = current.version
    if version != previous.version + 1:
        raise WrongVersion(
            f"a handover goes from one policy version to the next, not from "
            f"{previous.version} to {version}",
            version,
        )
    if previous.log_key == current.log_key:
        raise KeyReused(
            f"the log key {current.log_key.label} is both the old and the new: "
            "a new custodian signs with a key of its own",
            version,
        )
    try:
        text, lines = split_note(message)
    except MalformedNote as error:
        raise MalformedHandover(f"not a signed note: {error}", version) from None
    handover = Handover.parse(text, version)
    _check_statement(handover, previous, current)
    verified = verified_keys(
        message,
        lines,
        (
            previous.note_verifiers(),
            current.note_verifiers(),
            (previous.log_key,),
            (current.log_key,),
        ),
        version,
    )
    for what, key in (("old", previous.log_key), ("new", current.log_key)):
        if (key.name, key.key_id) not in verified:
            raise LogKeySignatureMissing(
                f"the {what} log key {key.label} did not sign the handover", version, key.label
            )
    require_officers(verified, lines, previous, previous.custodian, "outgoing custodian", version)
    require_officers(verified, lines, current, current.custodian, "incoming custodian", version)
    require_witnesses(verified, lines, current, version)
    check_not_expired(current, now)
    return handover


def _check_statement(handover: Handover, previous: CustodyPolicy, current: CustodyPolicy) -> None:
    version = current.version
    if handover.policy != version:
        raise WrongVersion(f"the note is the handover to policy version {handover.policy}", version)
    if handover.origin != current.origin:
        raise WrongOrigin(
            f"the handover is of log {handover.origin!r}, not {current.origin!r}", version
        )
    for what, stated, key in (
        ("old", handover.old_key, previous.log_key),
        ("new", handover.new_key, current.log_key),
    ):
        if stated != key.label:
            raise MalformedHandover(
                f"the note names {stated} as the {what} log key; the policies name {key.label}",
                version,
            )


def _decimal(text: str) -> int:
    if not _DECIMAL.fullmatch(text):
        raise ValueError(f"{text!r} is not a decimal without leading zeros")
    return int(text)


def _root(text: str) -> bytes:
    try:
        root = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"root {text!r} is not base64") from None
    if base64.b64encode(root).decode() != text:
        raise ValueError(f"root {text!r} is not canonical base64")
    return root

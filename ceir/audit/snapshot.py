"""What binds a snapshot of the lists to the log: a digest and a signed statement.

A snapshot is the lists at one sequence, not the leaves, so a node cannot
rebuild the log's root from it. Instead the custodian states, in a signed
note, "the lists at size N of the log with root R have digest D"
(``ListsStatement``). A node recomputes D from the chunks it received
(``ListsDigest``), checks the signature, that N is the snapshot's sequence
and that R is the root of the checkpoint it verified, and only then serves
from the snapshot. A custodian that signs a false statement has signed
evidence against itself: anyone holding the log replays it to N and
compares (``docs/trust.md``, "Snapshot statement").

The digest is over what every receiver gets alike: a subscriber is its
commitment (``commitment``), never its numbers, so the digest is the same
for the operator that may read an IMSI and the one that may not.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .commitment import SALT_BYTES, subscriber_commitment
from .errors import MalformedCheckpoint
from .merkle import HASH_SIZE
from .note import Signer, Verifier, open_note, sign_note

__all__ = [
    "LEGACY_SALT",
    "STATEMENT_HEADER",
    "ListsDigest",
    "ListsStatement",
    "entry_identity",
    "open_statement",
    "sign_statement",
]

DIGEST_DOMAIN = b"ceir/lists/v1\x00"
STATEMENT_HEADER = "ceir/lists/v1"
# Pairs written under leaf version 1 have no salt; their numbers were in the
# leaf in clear, so every receiver has them, and their identity is the
# commitment under sixteen zero bytes.
LEGACY_SALT = bytes(SALT_BYTES)

_POLICY = struct.Struct(">QBIII")  # sequence, phase, grace days, clone threshold, clone window
_WHITELIST = struct.Struct(">Qq")  # key, valid until (Unix seconds, 0 = none)
_BLACKLIST = struct.Struct(">QBq")  # key, cause, block date (Unix seconds, 0 = none)
_NOTIFICATION = struct.Struct(">Q32sq")  # key, subscriber identity, block date
_EXCEPTION = struct.Struct(">Q32s")  # key, subscriber identity
_SECTIONS = b"WBNE"  # each list's section starts with its letter, in this order
_DECIMAL = re.compile(r"0|[1-9][0-9]*")


def entry_identity(salt: bytes, imsi: str, msisdn: str) -> bytes:
    """A notification's or exception's subscriber as the digest holds it."""
    return subscriber_commitment(salt or LEGACY_SALT, imsi, msisdn)


class ListsDigest:
    """SHA-256 over the snapshot's lists, fed in snapshot order.

    Feed the whitelist, blacklist, notification and exception entries in
    that order (a list may come in several pieces, or none); ``digest``
    closes every list not yet begun. Entries are fixed width, each list's
    section starts with one letter, so the bytes are unambiguous.
    """

    def __init__(self, sequence: int, phase: int, grace_days: int, threshold: int, window: int):
        self._hash = hashlib.sha256(DIGEST_DOMAIN)
        self._hash.update(_POLICY.pack(sequence, phase, grace_days, threshold, window))
        self._section = -1

    def _enter(self, section: int) -> None:
        if section < self._section:
            raise ValueError(
                f"list {chr(_SECTIONS[section])} after {chr(_SECTIONS[self._section])}: "
                "feed the lists in snapshot order"
            )
        while self._section < section:
            self._section += 1
            self._hash.update(_SECTIONS[self._section : self._section + 1])

    def whitelist(self, keys: Sequence[int], valid_until_s: Sequence[int]) -> None:
        self._enter(0)
        pack = _WHITELIST.pack
        self._hash.update(b"".join(pack(k, v) for k, v in zip(keys, valid_until_s, strict=True)))

    def blacklist(
        self, keys: Sequence[int], causes: Sequence[int], block_dates_s: Sequence[int]
    ) -> None:
        self._enter(1)
        pack = _BLACKLIST.pack
        rows = zip(keys, causes, block_dates_s, strict=True)
        self._hash.update(b"".join(pack(k, c, d) for k, c, d in rows))

    def notifications(
        self, keys: Sequence[int], identities: Sequence[bytes], block_dates_s: Sequence[int]
    ) -> None:
        self._enter(2)
        pack = _NOTIFICATION.pack
        rows = zip(keys, _checked(identities), block_dates_s, strict=True)
        self._hash.update(b"".join(pack(k, i, d) for k, i, d in rows))

    def exceptions(self, keys: Sequence[int], identities: Sequence[bytes]) -> None:
        self._enter(3)
        pack = _EXCEPTION.pack
        rows = zip(keys, _checked(identities), strict=True)
        self._hash.update(b"".join(pack(k, i) for k, i in rows))

    def digest(self) -> bytes:
        self._enter(len(_SECTIONS) - 1)
        return self._hash.copy().digest()


def _checked(identities: Sequence[bytes]) -> Sequence[bytes]:
    for identity in identities:
        if len(identity) != HASH_SIZE:
            raise ValueError(f"a subscriber identity is {len(identity)} bytes, not {HASH_SIZE}")
    return identities


@dataclass(frozen=True)
class ListsStatement:
    """The custodian's word: the lists at ``size`` of the log ``origin``
    (whose root is ``root_hash``) have digest ``lists_digest``."""

    origin: str
    size: int
    root_hash: bytes
    lists_digest: bytes

    def text(self) -> str:
        # The header first: a checkpoint parser reads it as an origin that is
        # not the log's and refuses the note, so a statement is never taken
        # for a checkpoint.
        lines = (
            STATEMENT_HEADER,
            self.origin,
            str(self.size),
            base64.b64encode(self.root_hash).decode(),
            base64.b64encode(self.lists_digest).decode(),
        )
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse(cls, text: str) -> ListsStatement:
        lines = text.split("\n")
        if len(lines) != 6 or lines[5] != "" or lines[0] != STATEMENT_HEADER:
            raise MalformedCheckpoint(
                f"not a lists statement: expected '{STATEMENT_HEADER}', origin, size, root and "
                "digest, one per line"
            )
        _, origin, size, root, digest = lines[:5]
        if not _DECIMAL.fullmatch(size) or int(size) >= 2**64:
            raise MalformedCheckpoint(f"line 3, size {size!r}, is not a decimal")
        return cls(origin, int(size), _hash_line(root, 4), _hash_line(digest, 5))


def _hash_line(line: str, number: int) -> bytes:
    try:
        value = base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError):
        value = b""
    if len(value) != HASH_SIZE:
        raise MalformedCheckpoint(f"line {number}, {line!r}, is not the base64 of 32 bytes")
    return value


def sign_statement(statement: ListsStatement, signers: Iterable[Signer]) -> str:
    return sign_note(statement.text(), signers)


def open_statement(message: str, verifiers: Iterable[Verifier], origin: str) -> ListsStatement:
    """A statement signed by a trusted key, of the log ``origin``.

    Raises what ``open_note`` raises, and ``MalformedCheckpoint`` for a note
    that is not a statement or is one of another log.
    """
    statement = ListsStatement.parse(open_note(message, verifiers).text)
    if statement.origin != origin:
        raise MalformedCheckpoint(
            f"lists statement of log {statement.origin!r}, expected {origin!r}"
        )
    return statement

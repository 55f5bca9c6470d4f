"""Witness cosignatures of checkpoints: c2sp.org/tlog-cosignature, Ed25519 (v1).

A witness that has checked a checkpoint is consistent with every earlier one
it saw adds a note signature line to it::

    — <witness name> base64(key ID || timestamp || Ed25519 signature)

- key ID: the first four bytes of
  ``SHA-256(name || 0x0A || 0x04 || 32-byte public key)``: type ``0x04``,
  not the ``0x01`` of plain note signatures, so the same name gives another
  ID and a plain note verifier ignores the line;
- timestamp: 8 bytes, big-endian, the POSIX time in seconds at which the
  witness signed, at most 2^63 - 1;
- signature: Ed25519 over ``"cosignature/v1\\n" || "time " || decimal
  timestamp || "\\n" || the checkpoint's whole note text``.

The whole text is signed, extension lines included: for this register's
checkpoints that is the ``time`` line (microseconds) after origin, size and
root. (Only the ML-DSA-44 subtree cosignature of the same specification signs
origin, size and root alone.) The witness vouches for the first three lines;
the log's own signature vouches for the time line.

The signed message does not hold the witness's name, so one witness key
must never serve two witness names.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ceir.audit.errors import KeyFormatError
from ceir.audit.note import NoteSignature, valid_key_name

from ._lines import split_note
from .errors import BadCustodySignature, CosignatureFromFuture, MalformedCosignature

__all__ = [
    "COSIGNATURE_ED25519",
    "MAX_TIMESTAMP",
    "Cosignature",
    "CosignatureVerifier",
    "Cosigner",
    "add_signature_lines",
    "cosign",
    "cosignature_key_id",
    "cosignature_message",
    "verify_cosignatures",
]

COSIGNATURE_ED25519 = 0x04
MAX_TIMESTAMP = 2**63 - 1
_HEADER = "cosignature/v1\n"
_SIGNATURE_SIZE = 8 + 64


def cosignature_key_id(name: str, public_key: bytes) -> int:
    """The key ID of the Ed25519 cosigner key ``public_key`` (32 raw bytes) named ``name``."""
    material = name.encode("utf-8") + b"\n" + bytes([COSIGNATURE_ED25519]) + public_key
    return int.from_bytes(hashlib.sha256(material).digest()[:4], "big")


def cosignature_message(text: str, timestamp: int) -> bytes:
    """The bytes a witness signs: header line, time line, the checkpoint's note text."""
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise ValueError(f"cosignature timestamp {timestamp} is outside 0 to 2**63 - 1")
    if not text.endswith("\n"):
        raise ValueError("checkpoint text must end with a newline")
    return f"{_HEADER}time {timestamp}\n{text}".encode()


class CosignatureVerifier:
    """A trusted witness's cosigning key: its name, type 0x04 key ID and Ed25519 key."""

    __slots__ = ("_key", "key_id", "name", "public_key")

    def __init__(self, name: str, public_key: Ed25519PublicKey) -> None:
        if not valid_key_name(name):
            raise KeyFormatError(f"key name {name!r} is empty or holds a space, + or control")
        self.name = name
        self._key = public_key
        self.public_key = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key_id = cosignature_key_id(name, self.public_key)

    @classmethod
    def from_vkey(cls, vkey: str) -> CosignatureVerifier:
        """Parse ``<name>+<hex key ID>+<base64(0x04 || public key)>``."""
        parts = vkey.split("+", 2)
        if len(parts) != 3 or len(parts[1]) != 8:
            raise KeyFormatError(f"cosigner key {vkey!r} is not <name>+<8 hex digits>+<base64>")
        name, hex_id, encoded = parts
        try:
            raw = base64.b64decode(encoded, validate=True)
            wanted = int(hex_id, 16)
        except ValueError:
            raise KeyFormatError(f"cosigner key {vkey!r}: bad hex key ID or base64") from None
        if base64.b64encode(raw).decode() != encoded:
            raise KeyFormatError(f"cosigner key {vkey!r}: key is not canonical base64")
        if len(raw) != 33 or raw[0] != COSIGNATURE_ED25519:
            raise KeyFormatError(
                f"cosigner key {vkey!r}: key is not base64 of 0x04 and a 32-byte Ed25519 key"
            )
        verifier = cls(name, Ed25519PublicKey.from_public_bytes(raw[1:]))
        if verifier.key_id != wanted:
            raise KeyFormatError(
                f"cosigner key {vkey!r}: key ID {hex_id} does not match the key "
                f"(expected {verifier.key_id:08x})"
            )
        return verifier

    @property
    def vkey(self) -> str:
        """The verifier key string: ``name+hex key ID+base64(0x04 || key)``."""
        encoded = base64.b64encode(bytes([COSIGNATURE_ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_id:08x}+{encoded}"

    @property
    def label(self) -> str:
        """``name+hex key ID``: how messages name the key."""
        return f"{self.name}+{self.key_id:08x}"

    def verify(self, text: str, timestamp: int, signature: bytes) -> bool:
        """True if ``signature`` (64 bytes) cosigns ``text`` at ``timestamp`` under this key."""
        try:
            self._key.verify(signature, cosignature_message(text, timestamp))
        except InvalidSignature:
            return False
        return True

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CosignatureVerifier):
            return NotImplemented
        return (self.name, self.public_key) == (other.name, other.public_key)

    def __hash__(self) -> int:
        return hash((self.name, self.public_key))

    def __repr__(self) -> str:
        return f"CosignatureVerifier({self.vkey!r})"


class Cosigner:
    """A witness's Ed25519 private key and the name it cosigns under."""

    __slots__ = ("_key", "verifier")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.verifier = CosignatureVerifier(name, private_key.public_key())

    def cosign(self, text: str, timestamp: int) -> NoteSignature:
        """The cosignature of the checkpoint note text ``text`` at ``timestamp`` (seconds)."""
        signature = self._key.sign(cosignature_message(text, timestamp))
        return NoteSignature(
            self.verifier.name, self.verifier.key_id, timestamp.to_bytes(8, "big") + signature
        )

    def __repr__(self) -> str:
        return f"Cosigner({self.verifier.label!r})"


@dataclass(frozen=True)
class Cosignature:
    """A verified cosignature: which witness, at what time (POSIX seconds)."""

    witness: str
    timestamp: int


def cosign(signed_checkpoint: str, cosigner: Cosigner, timestamp: int) -> str:
    """``signed_checkpoint`` with ``cosigner``'s cosignature line added at the end.

    The caller (a witness) has verified the log's signature and consistency first.
    """
    text, _ = split_note(signed_checkpoint)
    return add_signature_lines(signed_checkpoint, [cosigner.cosign(text, timestamp)])


def add_signature_lines(signed_note: str, signatures: Iterable[NoteSignature]) -> str:
    """``signed_note`` with more signature lines appended (the text is unchanged)."""
    split_note(signed_note)  # refuses anything that is not a signed note
    return signed_note + "".join(signature.line() for signature in signatures)


def verify_cosignatures(
    signed_checkpoint: str | bytes,
    witnesses: Iterable[CosignatureVerifier],
    now: int | None = None,
) -> tuple[Cosignature, ...]:
    """The valid cosignatures on a checkpoint by ``witnesses``, one per witness, in line order.

    Lines by other keys are ignored (the log's own signature among them: check
    it with ``ceir.audit.checkpoint.open_checkpoint``). A line under a
    witness's name and key ID that is not 72 bytes raises
    ``MalformedCosignature``; one that does not verify, ``BadCustodySignature``;
    one dated after ``now`` (when given), ``CosignatureFromFuture``.
    """
    trusted = {(witness.name, witness.key_id): witness for witness in witnesses}
    text, lines = split_note(signed_checkpoint)
    found: dict[str, Cosignature] = {}
    for line in lines:
        witness = trusted.get((line.name, line.key_id))
        if witness is None:
            continue
        if len(line.signature) != _SIGNATURE_SIZE:
            raise MalformedCosignature(
                f"cosignature by {witness.label} is {len(line.signature)} bytes after its key ID, "
                f"expected {_SIGNATURE_SIZE} (8-byte timestamp, 64-byte signature)"
            )
        timestamp = int.from_bytes(line.signature[:8], "big")
        if timestamp > MAX_TIMESTAMP or not witness.verify(text, timestamp, line.signature[8:]):
            raise BadCustodySignature(
                f"cosignature by witness {witness.label} (time {timestamp}) does not verify: "
                "the checkpoint was altered or not cosigned by that key",
                None,
                witness.label,
            )
        if now is not None and timestamp > now:
            raise CosignatureFromFuture(
                f"cosignature by witness {witness.label} is dated {timestamp}, after now ({now})"
            )
        found.setdefault(witness.label, Cosignature(witness.label, timestamp))
    return tuple(found.values())

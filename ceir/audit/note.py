"""Signed notes (c2sp.org/signed-note) with Ed25519 keys, as golang.org/x/mod/sumdb/note.

A signed note is a text ending in a newline, a blank line, and one or more
signature lines ``— <key name> <base64(key ID || signature)>``. The key ID
of an Ed25519 key is the first four bytes, big-endian, of
``SHA-256(key name || 0x0A || 0x01 || 32-byte public key)``. A verifier key
is written ``<name>+<key ID as 8 hex digits>+<base64(0x01 || public key)>``.

Opening a note follows the specification and the Go package: signatures
from unknown keys are ignored; a signature under a trusted key's name and ID
that does not verify rejects the whole note (``BadSignature``); a note with
no signature from a trusted key is rejected (``UnknownKey``, naming the keys
that did sign).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .errors import BadSignature, KeyFormatError, MalformedNote, UnknownKey

__all__ = [
    "ALGORITHM_ED25519",
    "MAX_SIGNATURES",
    "Note",
    "NoteSignature",
    "Signer",
    "Verifier",
    "key_id",
    "open_note",
    "sign_note",
    "valid_key_name",
]

ALGORITHM_ED25519 = 0x01
MAX_SIGNATURES = 100  # as the Go package; the specification asks for at least 16
_SIGNATURE_PREFIX = "— "
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_HEX8 = re.compile(r"[0-9a-fA-F]{8}")


def valid_key_name(name: str) -> bool:
    """True if ``name`` can name a key: non-empty, no spaces, no ``+``, no control characters."""
    return (
        bool(name)
        and "+" not in name
        and not any(char.isspace() for char in name)
        and not _CONTROL.search(name)
    )


def key_id(name: str, public_key: bytes) -> int:
    """The 32-bit ID of the Ed25519 key ``public_key`` (32 raw bytes) named ``name``."""
    material = name.encode("utf-8") + b"\n" + bytes([ALGORITHM_ED25519]) + public_key
    return int.from_bytes(hashlib.sha256(material).digest()[:4], "big")


def _raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


class Verifier:
    """A trusted Ed25519 key: its name, ID and public key."""

    __slots__ = ("_key", "key_id", "name", "public_key")

    def __init__(self, name: str, public_key: Ed25519PublicKey) -> None:
        if not valid_key_name(name):
            raise KeyFormatError(f"key name {name!r} is empty or holds a space, + or control")
        self.name = name
        self._key = public_key
        self.public_key = _raw_public_key(public_key)
        self.key_id = key_id(name, self.public_key)

    @classmethod
    def from_vkey(cls, vkey: str) -> Verifier:
        """Parse a verifier key ``<name>+<hex key ID>+<base64(0x01 || public key)>``."""
        parts = vkey.split("+", 2)
        if len(parts) != 3:
            raise KeyFormatError(f"verifier key {vkey!r} is not <name>+<hex key ID>+<base64 key>")
        name, hex_id, encoded = parts
        if not _HEX8.fullmatch(hex_id):
            raise KeyFormatError(f"verifier key {vkey!r}: key ID {hex_id!r} is not 8 hex digits")
        raw = _b64decode(encoded)
        if raw is None or len(raw) != 33 or raw[0] != ALGORITHM_ED25519:
            raise KeyFormatError(
                f"verifier key {vkey!r}: key is not base64 of 0x01 and a 32-byte Ed25519 key"
            )
        verifier = cls(name, Ed25519PublicKey.from_public_bytes(raw[1:]))
        if verifier.key_id != int(hex_id, 16):
            raise KeyFormatError(
                f"verifier key {vkey!r}: key ID {hex_id} does not match the key "
                f"(expected {verifier.key_id:08x})"
            )
        return verifier

    @property
    def vkey(self) -> str:
        """The verifier key string an operator configures."""
        encoded = base64.b64encode(bytes([ALGORITHM_ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_id:08x}+{encoded}"

    @property
    def label(self) -> str:
        """``name+hex key ID``: how messages name the key."""
        return f"{self.name}+{self.key_id:08x}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True if ``signature`` is this key's Ed25519 signature of ``message``."""
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Verifier):
            return NotImplemented
        return (self.name, self.public_key) == (other.name, other.public_key)

    def __hash__(self) -> int:
        return hash((self.name, self.public_key))

    def __repr__(self) -> str:
        return f"Verifier({self.vkey!r})"


class Signer:
    """An Ed25519 private key and the name it signs under."""

    __slots__ = ("_key", "verifier")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.verifier = Verifier(name, private_key.public_key())

    @property
    def name(self) -> str:
        """The key name written in signature lines."""
        return self.verifier.name

    @property
    def key_id(self) -> int:
        """The key ID written before each signature."""
        return self.verifier.key_id

    def sign(self, message: bytes) -> bytes:
        """The Ed25519 signature of ``message``."""
        return self._key.sign(message)

    def __repr__(self) -> str:
        return f"Signer({self.verifier.label!r})"


@dataclass(frozen=True)
class NoteSignature:
    """One signature line of a note."""

    name: str
    key_id: int
    signature: bytes

    @property
    def label(self) -> str:
        """``name+hex key ID``."""
        return f"{self.name}+{self.key_id:08x}"

    def line(self) -> str:
        """The signature line, newline included."""
        encoded = base64.b64encode(self.key_id.to_bytes(4, "big") + self.signature).decode()
        return f"{_SIGNATURE_PREFIX}{self.name} {encoded}\n"


@dataclass(frozen=True)
class Note:
    """An opened note: its text and the signatures found on it."""

    text: str
    signatures: tuple[NoteSignature, ...]
    """Verified signatures, by trusted keys."""
    unverified: tuple[NoteSignature, ...] = ()
    """Signatures by keys not trusted (ignored, kept for gossip and diagnosis)."""


def sign_note(text: str, signers: Iterable[Signer]) -> str:
    """The signed note of ``text`` (which must end in a newline) by each signer."""
    _check_text(text, "note text")
    if not text.endswith("\n"):
        raise MalformedNote("note text must end with a newline")
    message = text.encode("utf-8")
    lines = [
        NoteSignature(signer.name, signer.key_id, signer.sign(message)).line() for signer in signers
    ]
    if not lines:
        raise ValueError("a signed note needs at least one signer")
    return text + "\n" + "".join(lines)


def open_note(message: str | bytes, verifiers: Iterable[Verifier]) -> Note:
    """Parse a signed note and verify its signatures against trusted keys.

    Raises ``MalformedNote`` for bad syntax, ``BadSignature`` when a trusted
    key's signature fails, ``UnknownKey`` when no trusted key signed.
    """
    trusted = _index(verifiers)
    if isinstance(message, bytes):
        try:
            message = message.decode("utf-8")
        except UnicodeDecodeError as error:
            raise MalformedNote(f"note is not valid UTF-8 (byte {error.start})") from None
    _check_text(message, "note")
    split = message.rfind("\n\n")
    if split < 0:
        raise MalformedNote("note has no blank line before its signatures")
    text, block = message[: split + 1], message[split + 2 :]
    if not block or not block.endswith("\n"):
        raise MalformedNote("note's signature block is empty or does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNote(f"note has {len(lines)} signatures, more than {MAX_SIGNATURES}")
    verified: list[NoteSignature] = []
    unverified: list[NoteSignature] = []
    seen: set[tuple[str, int]] = set()
    for number, line in enumerate(lines, start=1):
        signature = _parse_signature_line(line, number)
        verifier = trusted.get((signature.name, signature.key_id))
        if verifier is None:
            if signature not in unverified:
                unverified.append(signature)
            continue
        if (signature.name, signature.key_id) in seen:
            continue
        seen.add((signature.name, signature.key_id))
        if not verifier.verify(text.encode("utf-8"), signature.signature):
            raise BadSignature(
                f"signature by trusted key {verifier.label} does not verify: "
                "the note was altered or not signed by that key",
                verifier.label,
            )
        verified.append(signature)
    if not verified:
        signed_by = tuple(signature.label for signature in unverified)
        trusted_keys = ", ".join(sorted(v.label for v in trusted.values())) or "none"
        raise UnknownKey(
            f"note is signed only by unknown keys {', '.join(signed_by)}; "
            f"trusted keys: {trusted_keys}",
            signed_by,
        )
    return Note(text, tuple(verified), tuple(unverified))


def _index(verifiers: Iterable[Verifier]) -> dict[tuple[str, int], Verifier]:
    trusted: dict[tuple[str, int], Verifier] = {}
    for verifier in verifiers:
        other = trusted.setdefault((verifier.name, verifier.key_id), verifier)
        if other != verifier:
            raise ValueError(f"ambiguous trusted keys: two different keys are {verifier.label}")
    return trusted


def _check_text(text: str, what: str) -> None:
    found = _CONTROL.search(text)
    if found:
        raise MalformedNote(
            f"{what} holds control character {found.group()!r} at {found.start()}: "
            "only newlines are allowed"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise MalformedNote(f"{what} is not valid Unicode (character {error.start})") from None


def _parse_signature_line(line: str, number: int) -> NoteSignature:
    if not line.startswith(_SIGNATURE_PREFIX):
        raise MalformedNote(f"signature line {number} does not start with an em dash and a space")
    name, _, encoded = line[len(_SIGNATURE_PREFIX) :].partition(" ")
    raw = _b64decode(encoded)
    if not valid_key_name(name) or raw is None or len(raw) < 5:
        raise MalformedNote(
            f"signature line {number} is not '— <key name> <base64 of key ID and signature>'"
        )
    return NoteSignature(name, int.from_bytes(raw[:4], "big"), raw[4:])


def _b64decode(text: str) -> bytes | None:
    if not text:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None

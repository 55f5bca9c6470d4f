"""The custodian's Ed25519 signing key in files, and note key strings.

The signing key lives in a PEM file (PKCS #8, optionally encrypted) given to
``ceir serve``, never in the database. It is written readable by its owner
only and never over an existing file: replacing a custodian key is a
ceremony, not an accident. Operators configure the public half as a
verifier key string (``Verifier.vkey``) or a PEM public key file.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from .errors import KeyFormatError
from .note import ALGORITHM_ED25519, Signer, Verifier, key_id, valid_key_name

__all__ = [
    "generate_signing_key",
    "load_private_key",
    "load_public_key",
    "parse_signer_key",
    "save_private_key",
    "save_public_key",
    "signer_key",
    "verifier_from_file",
]


def generate_signing_key() -> Ed25519PrivateKey:
    """A new random Ed25519 private key."""
    return Ed25519PrivateKey.generate()


def save_private_key(key: Ed25519PrivateKey, path: Path, password: bytes | None = None) -> None:
    """Write ``key`` as PEM PKCS #8 to a new file readable by its owner only.

    Raises ``FileExistsError`` rather than replace an existing file.
    """
    encryption = NoEncryption() if password is None else BestAvailableEncryption(password)
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, encryption)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(pem)


def load_private_key(path: Path, password: bytes | None = None) -> Ed25519PrivateKey:
    """Read an Ed25519 private key from a PEM file.

    Raises ``KeyFormatError`` naming the file when it holds no such key (or
    the password is wrong).
    """
    try:
        key = load_pem_private_key(Path(path).read_bytes(), password)
    except (ValueError, TypeError) as error:
        raise KeyFormatError(f"{path}: not a PEM private key ({error})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFormatError(f"{path}: holds a {type(key).__name__}, expected an Ed25519 key")
    return key


def save_public_key(key: Ed25519PublicKey, path: Path) -> None:
    """Write ``key`` as a PEM SubjectPublicKeyInfo file (refuses to overwrite)."""
    with Path(path).open("xb") as file:
        file.write(key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read an Ed25519 public key from a PEM file (``KeyFormatError`` if it holds none)."""
    try:
        key = load_pem_public_key(Path(path).read_bytes())
    except ValueError as error:
        raise KeyFormatError(f"{path}: not a PEM public key ({error})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFormatError(f"{path}: holds a {type(key).__name__}, expected an Ed25519 key")
    return key


def signer_key(signer_name: str, key: Ed25519PrivateKey) -> str:
    """The Go note package's private key string ``PRIVATE+KEY+<name>+<hex ID>+<base64>``.

    For interoperation with tools built on golang.org/x/mod/sumdb/note; keep it secret.
    """
    verifier = Signer(signer_name, key).verifier
    seed = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    encoded = base64.b64encode(bytes([ALGORITHM_ED25519]) + seed).decode()
    return f"PRIVATE+KEY+{verifier.name}+{verifier.key_id:08x}+{encoded}"


def parse_signer_key(skey: str) -> Signer:
    """A signer from the Go note package's private key string (see ``signer_key``)."""
    parts = skey.split("+", 4)
    if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
        raise KeyFormatError("signer key is not PRIVATE+KEY+<name>+<hex key ID>+<base64 key>")
    name, hex_id, encoded = parts[2:]
    if not re.fullmatch(r"[0-9a-fA-F]{8}", hex_id):
        raise KeyFormatError(f"signer key ID {hex_id!r} is not 8 hex digits")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise KeyFormatError("signer key's key is not base64") from None
    if len(raw) != 33 or raw[0] != ALGORITHM_ED25519:
        raise KeyFormatError("signer key is not an 8-digit ID and 0x01 with a 32-byte seed")
    if not valid_key_name(name):
        raise KeyFormatError(f"signer key name {name!r} is empty or holds a space, + or control")
    signer = Signer(name, Ed25519PrivateKey.from_private_bytes(raw[1:]))
    if key_id(name, signer.verifier.public_key) != int(hex_id, 16):
        raise KeyFormatError(f"signer key ID {hex_id} does not match its key")
    return signer


def verifier_from_file(name: str, path: Path) -> Verifier:
    """The verifier named ``name`` for the PEM public key in ``path``."""
    return Verifier(name, load_public_key(path))

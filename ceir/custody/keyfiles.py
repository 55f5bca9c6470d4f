"""Officers' and witnesses' private keys in files, made and kept off the server.

A note key (officers, a witness's policy and handover key) is written as
the Go note package's signer key string (``ceir.audit.keys.signer_key``)::

    PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || 32-byte seed)>

so that the file names its key and tools built on
golang.org/x/mod/sumdb/note read it. A witness's cosigner key has no such
standard string; it is written the same way with the type byte of
c2sp.org/tlog-cosignature, ``0x04``, and its cosigner key ID. Either file
is created readable by its owner only, and never over an existing file;
the public half goes beside it, in ``<file>.pub``, as one verifier key line.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from ceir.audit.errors import KeyFormatError
from ceir.audit.keys import parse_signer_key, signer_key
from ceir.audit.note import Signer, valid_key_name

from .cosignature import COSIGNATURE_ED25519, Cosigner

__all__ = [
    "cosigner_key",
    "parse_cosigner_key",
    "public_path",
    "read_cosigner_key",
    "read_note_key",
    "write_cosigner_key",
    "write_note_key",
]

_HEX8 = re.compile(r"[0-9a-f]{8}")


def public_path(path: Path) -> Path:
    """Where the verifier key of the private key in ``path`` is written: ``<path>.pub``."""
    return path.with_name(path.name + ".pub")


def write_note_key(path: Path, signer_name: str, key: Ed25519PrivateKey) -> Signer:
    """Write a note key and its ``.pub`` line; returns its signer."""
    signer = Signer(signer_name, key)
    _write_pair(path, signer_key(signer_name, key), signer.verifier.vkey)
    return signer


def read_note_key(path: Path) -> Signer:
    """The note signer whose key ``path`` holds (``KeyFormatError`` naming the file)."""
    try:
        return parse_signer_key(_read_line(path))
    except KeyFormatError as error:
        raise KeyFormatError(f"{path}: {error}") from None


def cosigner_key(cosigner_name: str, key: Ed25519PrivateKey) -> str:
    """``PRIVATE+KEY+<name>+<hex cosigner key ID>+<base64(0x04 || seed)>``: keep it secret."""
    cosigner = Cosigner(cosigner_name, key)
    seed = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    encoded = base64.b64encode(bytes([COSIGNATURE_ED25519]) + seed).decode()
    return f"PRIVATE+KEY+{cosigner_name}+{cosigner.verifier.key_id:08x}+{encoded}"


def parse_cosigner_key(skey: str) -> Cosigner:
    """The cosigner of a ``cosigner_key`` string."""
    parts = skey.split("+", 4)
    if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"] or not _HEX8.fullmatch(parts[3]):
        raise KeyFormatError("cosigner key is not PRIVATE+KEY+<name>+<hex key ID>+<base64 key>")
    name, hex_id, encoded = parts[2:]
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise KeyFormatError("cosigner key's key is not base64") from None
    if len(raw) != 33 or raw[0] != COSIGNATURE_ED25519:
        raise KeyFormatError("cosigner key is not 0x04 and a 32-byte seed (a note key?)")
    if not valid_key_name(name):
        raise KeyFormatError(f"cosigner key name {name!r} is empty or holds a space, + or control")
    cosigner = Cosigner(name, Ed25519PrivateKey.from_private_bytes(raw[1:]))
    if cosigner.verifier.key_id != int(hex_id, 16):
        raise KeyFormatError(f"cosigner key ID {hex_id} does not match its key")
    return cosigner


def write_cosigner_key(path: Path, cosigner_name: str, key: Ed25519PrivateKey) -> Cosigner:
    """Write a cosigner key and its ``.pub`` line; returns the cosigner."""
    cosigner = Cosigner(cosigner_name, key)
    _write_pair(path, cosigner_key(cosigner_name, key), cosigner.verifier.vkey)
    return cosigner


def read_cosigner_key(path: Path) -> Cosigner:
    """The cosigner whose key ``path`` holds (``KeyFormatError`` naming the file)."""
    try:
        return parse_cosigner_key(_read_line(path))
    except KeyFormatError as error:
        raise KeyFormatError(f"{path}: {error}") from None


def _read_line(path: Path) -> str:
    text = Path(path).read_text(encoding="utf-8")
    return text.removesuffix("\n")


def _write_pair(path: Path, secret: str, vkey: str) -> None:
    pub = public_path(path)
    if pub.exists():  # checked first, so that no private key is left without its line
        raise FileExistsError(f"{pub} exists; choose another file name")
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(secret + "\n")
    with pub.open("x", encoding="utf-8") as file:
        file.write(vkey + "\n")

"""The custodian's signing key in files, and note key strings."""

from __future__ import annotations

import base64
import re
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from ceir.audit.errors import KeyFormatError
from ceir.audit.keys import (
    generate_signing_key,
    load_private_key,
    load_public_key,
    parse_signer_key,
    save_private_key,
    save_public_key,
    signer_key,
    verifier_from_file,
)
from ceir.audit.note import Signer, Verifier

from .test_audit_note import PETER_SKEY


def test_a_saved_private_key_loads_and_signs_the_same(tmp_path: Path) -> None:
    key = generate_signing_key()
    path = tmp_path / "custodian.pem"
    save_private_key(key, path)
    loaded = load_private_key(path)
    assert loaded.public_key() == key.public_key()
    assert loaded.sign(b"checkpoint") == key.sign(b"checkpoint")


def test_a_private_key_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "custodian.pem"
    save_private_key(generate_signing_key(), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_existing_key_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "custodian.pem"
    save_private_key(generate_signing_key(), path)
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        save_private_key(generate_signing_key(), path)
    with pytest.raises(FileExistsError):
        save_public_key(generate_signing_key().public_key(), path)
    assert path.read_bytes() == before


def test_an_encrypted_key_needs_its_password(tmp_path: Path) -> None:
    key = generate_signing_key()
    path = tmp_path / "custodian.pem"
    save_private_key(key, path, password=b"ceremony")
    assert b"ENCRYPTED" in path.read_bytes()
    assert load_private_key(path, b"ceremony").public_key() == key.public_key()
    with pytest.raises(KeyFormatError, match=re.escape(str(path))):
        load_private_key(path, b"wrong")
    with pytest.raises(KeyFormatError):
        load_private_key(path)


def test_a_file_without_an_ed25519_key_is_refused_naming_it(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key\n")
    with pytest.raises(KeyFormatError, match=r"garbage\.pem: not a PEM private key"):
        load_private_key(garbage)
    with pytest.raises(KeyFormatError, match=r"garbage\.pem: not a PEM public key"):
        load_public_key(garbage)
    other = tmp_path / "ecdsa.pem"
    other.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
        )
    )
    with pytest.raises(KeyFormatError, match="expected an Ed25519 key"):
        load_private_key(other)


def test_a_public_key_file_gives_the_verifier_operators_configure(tmp_path: Path) -> None:
    key = generate_signing_key()
    path = tmp_path / "custodian.pub.pem"
    save_public_key(key.public_key(), path)
    verifier = verifier_from_file("ceir.example/changes", path)
    assert verifier == Signer("ceir.example/changes", key).verifier
    assert Verifier.from_vkey(verifier.vkey) == verifier


def test_verifier_keys_round_trip_whatever_their_base64_holds() -> None:
    # 40 random keys: some base64 encodings hold '+' or '/', which must not split the key
    for _ in range(40):
        verifier = Signer("ceir.example/changes", generate_signing_key()).verifier
        assert Verifier.from_vkey(verifier.vkey) == verifier


def test_the_go_signer_key_string_round_trips() -> None:
    seed = base64.b64decode(PETER_SKEY.split("+", 4)[4])[1:]
    key = Ed25519PrivateKey.from_private_bytes(seed)
    assert signer_key("PeterNeumann", key) == PETER_SKEY
    for _ in range(20):
        fresh = generate_signing_key()
        parsed = parse_signer_key(signer_key("ceir.example/changes", fresh))
        assert parsed.verifier == Signer("ceir.example/changes", fresh).verifier

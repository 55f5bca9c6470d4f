"""Signed notes, checked against the golang.org/x/mod/sumdb/note test vectors.

Vectors from golang/mod ``sumdb/note/note_test.go`` (commit
02c991387e35f9e4c0a9b7ce137717055f8d716d): the PeterNeumann and EnochRoot
keys, the signature of the Neumann quotation, and the malformed notes.
"""

from __future__ import annotations

import pytest

from ceir.audit.errors import BadSignature, KeyFormatError, MalformedNote, UnknownKey
from ceir.audit.keys import generate_signing_key, parse_signer_key
from ceir.audit.note import (
    MAX_SIGNATURES,
    NoteSignature,
    Signer,
    Verifier,
    key_id,
    open_note,
    sign_note,
    valid_key_name,
)

PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG_B64 = (
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
)
ENOCH_SIG_B64 = (
    "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ="
)
PETER_SIG = f"— PeterNeumann {PETER_SIG_B64}\n"
ENOCH_SIG = f"— EnochRoot {ENOCH_SIG_B64}\n"
SIGNED = TEXT + "\n" + PETER_SIG

PETER = Verifier.from_vkey(PETER_VKEY)
ENOCH = Verifier.from_vkey(ENOCH_VKEY)


def _labels(signatures: tuple[NoteSignature, ...]) -> list[str]:
    return [signature.label for signature in signatures]


# --- keys --------------------------------------------------------------------


def test_a_verifier_key_parses_and_prints_back() -> None:
    assert PETER.name == "PeterNeumann"
    assert PETER.key_id == 0xC74F20A3
    assert PETER.vkey == PETER_VKEY
    assert ENOCH.vkey == ENOCH_VKEY
    assert key_id(PETER.name, PETER.public_key) == 0xC74F20A3


def _manglings(key: str) -> list[str]:
    """Every proper substring and every single-character increment, as the Go tests do."""
    variants = {key[i:j] for i in range(len(key) + 1) for j in range(i + 1, len(key) + 1)}
    variants.discard(key)
    for position in range(len(key)):
        variants.add(key[:position] + chr(ord(key[position]) + 1) + key[position + 1 :])
    return sorted(variants)


def test_every_mangling_of_a_verifier_key_is_refused() -> None:
    accepted = []
    for variant in _manglings(PETER_VKEY):
        try:
            Verifier.from_vkey(variant)
        except KeyFormatError:
            continue
        accepted.append(variant)
    assert accepted == []


@pytest.mark.parametrize(
    "vkey",
    [
        # a key of the wrong length, with the key ID adjusted
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        # an unknown algorithm, with the key ID adjusted
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ],
)
def test_verifier_keys_of_another_shape_are_refused(vkey: str) -> None:
    with pytest.raises(KeyFormatError):
        Verifier.from_vkey(vkey)


def test_every_mangling_of_a_signer_key_is_refused() -> None:
    accepted = []
    for variant in _manglings(PETER_SKEY):
        try:
            parse_signer_key(variant)
        except KeyFormatError:
            continue
        accepted.append(variant)
    assert accepted == []


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("PeterNeumann", True),
        ("ceir.example/custodian", True),
        ("", False),
        ("a b", False),
        ("a+b", False),
        ("a\u00a0b", False),
        ("a\tb", False),
    ],
)
def test_key_names_have_no_spaces_or_plus(name: str, valid: bool) -> None:
    assert valid_key_name(name) is valid


# --- signing -----------------------------------------------------------------


def test_signing_reproduces_the_go_signature_exactly() -> None:
    signer = parse_signer_key(PETER_SKEY)
    assert signer.verifier == PETER
    assert sign_note(TEXT, [signer]) == SIGNED


def test_a_note_with_several_signers_verifies_for_each() -> None:
    first = Signer("ceir.example/telkomsel", generate_signing_key())
    second = Signer("ceir.example/kemenperin", generate_signing_key())
    note = open_note(sign_note(TEXT, [first, second]), [first.verifier, second.verifier])
    assert _labels(note.signatures) == [first.verifier.label, second.verifier.label]


@pytest.mark.parametrize("text", ["abc", "", "line\n\x01\n"])
def test_only_newline_terminated_text_without_controls_is_signed(text: str) -> None:
    with pytest.raises(MalformedNote):
        sign_note(text, [parse_signer_key(PETER_SKEY)])


def test_a_key_with_a_bad_name_cannot_sign() -> None:
    with pytest.raises(KeyFormatError, match="key name"):
        Signer("bad name", generate_signing_key())


# --- opening -----------------------------------------------------------------


def test_one_signature_verified_and_one_by_an_unknown_key_ignored() -> None:
    note = open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [PETER])
    assert note.text == TEXT
    assert _labels(note.signatures) == ["PeterNeumann+c74f20a3"]
    assert _labels(note.unverified) == ["EnochRoot+af0cfe78"]


def test_both_signatures_verified_when_both_keys_are_trusted() -> None:
    note = open_note((TEXT + "\n" + PETER_SIG + ENOCH_SIG).encode(), [PETER, ENOCH])
    assert _labels(note.signatures) == ["PeterNeumann+c74f20a3", "EnochRoot+af0cfe78"]
    assert note.unverified == ()


def test_a_note_signed_only_by_unknown_keys_is_refused_naming_them() -> None:
    with pytest.raises(UnknownKey) as caught:
        open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [])
    assert caught.value.keys == ("PeterNeumann+c74f20a3", "EnochRoot+af0cfe78")
    assert "PeterNeumann+c74f20a3" in str(caught.value)


def test_the_same_trusted_key_twice_is_not_ambiguous() -> None:
    note = open_note(TEXT + "\n" + ENOCH_SIG, [ENOCH, PETER, Verifier.from_vkey(ENOCH_VKEY)])
    assert _labels(note.signatures) == ["EnochRoot+af0cfe78"]


def test_two_different_trusted_keys_with_one_name_and_id_are_refused() -> None:
    impostor = Verifier("EnochRoot", generate_signing_key().public_key())
    impostor.key_id = ENOCH.key_id
    with pytest.raises(ValueError, match="ambiguous"):
        open_note(TEXT + "\n" + ENOCH_SIG, [ENOCH, impostor])


def test_too_many_signatures_make_a_malformed_note() -> None:
    assert MAX_SIGNATURES == 100
    for trusted in ([PETER], []):
        with pytest.raises(MalformedNote, match="more than 100"):
            open_note(TEXT + "\n" + PETER_SIG * 101, trusted)


def test_an_invalid_signature_by_a_trusted_key_rejects_the_note() -> None:
    altered = PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(BadSignature, match=r"PeterNeumann\+c74f20a3") as caught:
        open_note(TEXT + "\n" + altered, [PETER])
    assert caught.value.key == "PeterNeumann+c74f20a3"


def test_an_altered_text_fails_the_trusted_signature() -> None:
    with pytest.raises(BadSignature):
        open_note(SIGNED.replace("cryptography", "cryptographY"), [PETER])


def test_duplicate_signatures_are_dropped() -> None:
    enoch_altered = ENOCH_SIG[:60] + "ABCD" + ENOCH_SIG[60:]
    message = TEXT + "\n" + PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG + enoch_altered
    note = open_note(message, [PETER])
    assert _labels(note.signatures) == ["PeterNeumann+c74f20a3"]
    assert _labels(note.unverified) == ["EnochRoot+af0cfe78", "EnochRoot+af0cfe78"]
    assert note.unverified[0].signature != note.unverified[1].signature


MALFORMED = [
    TEXT.encode(),
    (TEXT + "\n").encode(),
    (TEXT + "\n" + PETER_SIG[:-1]).encode(),
    ("\x01" + TEXT + "\n" + PETER_SIG).encode(),
    b"\xff" + (TEXT + "\n" + PETER_SIG).encode(),
    (TEXT + "\n— Bad Name " + PETER_SIG_B64).encode(),
    (TEXT + "\n" + PETER_SIG + "Unexpected line.\n").encode(),
    (TEXT + "\n— PeterNeumann\n").encode(),
    (TEXT + "\n— PeterNeumann AAAA\n").encode(),  # a key ID and no signature
    (TEXT + "\n— PeterNeumann not*base64\n").encode(),
]


@pytest.mark.parametrize("message", MALFORMED)
def test_malformed_notes_are_refused(message: bytes) -> None:
    with pytest.raises(MalformedNote):
        open_note(message, [PETER])


def test_a_signature_line_names_its_key_and_id() -> None:
    note = open_note(SIGNED, [PETER])
    (signature,) = note.signatures
    assert signature.line() == PETER_SIG
    assert signature.key_id == 0xC74F20A3
    assert len(signature.signature) == 64

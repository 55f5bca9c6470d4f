"""tlog-cosignature/v1 (Ed25519): the bytes, as c2sp.org/tlog-cosignature specifies them."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ceir.audit.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from ceir.audit.errors import KeyFormatError
from ceir.audit.note import NoteSignature, Verifier
from ceir.custody.cosignature import (
    MAX_TIMESTAMP,
    Cosignature,
    CosignatureVerifier,
    Cosigner,
    add_signature_lines,
    cosign,
    cosignature_key_id,
    cosignature_message,
    verify_cosignatures,
)
from ceir.custody.errors import BadCustodySignature, CosignatureFromFuture, MalformedCosignature

from .example import KOMINFO_COSIGNER, OLD_LOG, ORIGIN, private_key

WITNESS = KOMINFO_COSIGNER.verifier
CHECKPOINT = Checkpoint(ORIGIN, 2, hashlib.sha256(b"a root").digest(), 1_587_254_401_000_000)
SIGNED = sign_checkpoint(CHECKPOINT, [OLD_LOG])
TIME = 1_587_254_402

# The spec's example (c2sp.org/tlog-cosignature, "Ed25519 signed message"), copied from its text.
SPEC_BODY = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
SPEC_MESSAGE = (
    "cosignature/v1\n"
    "time 1679315147\n"
    "example.com/behind-the-sofa\n"
    "20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
)
SPEC_LINE = (
    "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrD"
    "JsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA=="
)


def test_the_signed_message_is_the_specs_example_byte_for_byte() -> None:
    assert cosignature_message(SPEC_BODY, 1_679_315_147) == SPEC_MESSAGE.encode()


def test_the_specs_example_line_is_key_id_timestamp_and_signature() -> None:
    # The spec gives no public key for its witness, so its signature cannot be
    # checked; its layout can: 4-byte key ID, 8-byte big-endian timestamp
    # equal to the time line of its message, 64-byte signature.
    raw = base64.b64decode(SPEC_LINE.split(" ")[2])
    assert len(raw) == 4 + 8 + 64
    assert int.from_bytes(raw[4:12], "big") == 1_679_315_147


def test_the_key_id_uses_type_0x04() -> None:
    expected = hashlib.sha256(
        WITNESS.name.encode() + b"\n" + b"\x04" + WITNESS.public_key
    ).digest()[:4]
    assert WITNESS.key_id == int.from_bytes(expected, "big")
    assert WITNESS.key_id != Verifier(WITNESS.name, private_key("x").public_key()).key_id
    assert cosignature_key_id(WITNESS.name, WITNESS.public_key) == WITNESS.key_id


def test_a_cosignature_is_computed_as_the_spec_says() -> None:
    # An independent computation: the bytes put together here from the spec's
    # text, signed with the key directly, not through the module.
    key = private_key("kominfo witness cosigner key")
    message = b"cosignature/v1\ntime " + str(TIME).encode() + b"\n" + CHECKPOINT.text().encode()
    key_id = hashlib.sha256(
        b"witness.kominfo.example\n\x04" + key.public_key().public_bytes_raw()
    ).digest()[:4]
    payload = key_id + TIME.to_bytes(8, "big") + key.sign(message)
    expected = f"— witness.kominfo.example {base64.b64encode(payload).decode()}\n"
    assert cosign(SIGNED, KOMINFO_COSIGNER, TIME) == SIGNED + expected


def test_extension_lines_are_cosigned_too() -> None:
    # The checkpoint's "time" extension line is in the signed message.
    line = KOMINFO_COSIGNER.cosign(CHECKPOINT.text(), TIME)
    other = Checkpoint(ORIGIN, 2, CHECKPOINT.root_hash, CHECKPOINT.time_us + 1)
    moved = sign_checkpoint(other, [OLD_LOG]) + line.line()
    with pytest.raises(BadCustodySignature, match="does not verify"):
        verify_cosignatures(moved, [WITNESS])


def test_a_cosigned_checkpoint_verifies_for_witness_and_log() -> None:
    cosigned = cosign(SIGNED, KOMINFO_COSIGNER, TIME)
    assert verify_cosignatures(cosigned, [WITNESS], now=TIME) == (Cosignature(WITNESS.label, TIME),)
    # A plain note verifier for the log ignores the cosignature line.
    assert open_checkpoint(cosigned, [OLD_LOG.verifier], ORIGIN) == CHECKPOINT


def test_a_plain_note_key_of_the_same_name_and_key_does_not_read_a_cosignature() -> None:
    cosigned = cosign(SIGNED, KOMINFO_COSIGNER, TIME)
    plain = Verifier(WITNESS.name, private_key("kominfo witness cosigner key").public_key())
    assert plain.key_id != WITNESS.key_id
    assert open_checkpoint(cosigned, [OLD_LOG.verifier, plain], ORIGIN) == CHECKPOINT


def test_an_unknown_witness_is_ignored() -> None:
    stranger = Cosigner("witness.stranger.example", private_key("stranger"))
    assert verify_cosignatures(cosign(SIGNED, stranger, TIME), [WITNESS]) == ()


def test_one_witness_counts_once() -> None:
    twice = cosign(cosign(SIGNED, KOMINFO_COSIGNER, TIME), KOMINFO_COSIGNER, TIME + 5)
    assert verify_cosignatures(twice, [WITNESS]) == (Cosignature(WITNESS.label, TIME),)


def test_a_forged_cosignature_is_refused() -> None:
    forger = Cosigner(WITNESS.name, private_key("not kominfo"))
    line = forger.cosign(CHECKPOINT.text(), TIME)
    forged = NoteSignature(WITNESS.name, WITNESS.key_id, line.signature)
    with pytest.raises(BadCustodySignature) as caught:
        verify_cosignatures(add_signature_lines(SIGNED, [forged]), [WITNESS])
    assert caught.value.reason == "BAD_SIGNATURE"
    assert caught.value.key == WITNESS.label


def test_an_altered_timestamp_is_refused() -> None:
    line = KOMINFO_COSIGNER.cosign(CHECKPOINT.text(), TIME)
    later = NoteSignature(
        line.name, line.key_id, (TIME + 1).to_bytes(8, "big") + line.signature[8:]
    )
    with pytest.raises(BadCustodySignature):
        verify_cosignatures(add_signature_lines(SIGNED, [later]), [WITNESS])


@pytest.mark.parametrize("size", [64, 71, 73, 1])
def test_a_cosignature_of_the_wrong_length_is_refused(size: int) -> None:
    line = NoteSignature(WITNESS.name, WITNESS.key_id, bytes(size))
    with pytest.raises(MalformedCosignature, match=f"is {size} bytes"):
        verify_cosignatures(add_signature_lines(SIGNED, [line]), [WITNESS])


def test_a_timestamp_above_2_to_the_63_is_refused() -> None:
    line = NoteSignature(WITNESS.name, WITNESS.key_id, (2**63).to_bytes(8, "big") + bytes(64))
    with pytest.raises(BadCustodySignature):
        verify_cosignatures(add_signature_lines(SIGNED, [line]), [WITNESS])
    with pytest.raises(ValueError, match="outside"):
        cosignature_message(CHECKPOINT.text(), MAX_TIMESTAMP + 1)


def test_a_cosignature_from_the_future_is_refused_when_now_is_given() -> None:
    cosigned = cosign(SIGNED, KOMINFO_COSIGNER, TIME)
    with pytest.raises(CosignatureFromFuture, match=str(TIME)):
        verify_cosignatures(cosigned, [WITNESS], now=TIME - 1)
    assert verify_cosignatures(cosigned, [WITNESS]) != ()


def test_the_cosigner_key_string_round_trips_and_names_type_0x04() -> None:
    assert CosignatureVerifier.from_vkey(WITNESS.vkey) == WITNESS
    assert base64.b64decode(WITNESS.vkey.split("+", 2)[2])[0] == 0x04


@pytest.mark.parametrize(
    "vkey",
    [
        OLD_LOG.verifier.vkey,  # a type 0x01 key
        WITNESS.vkey.replace(f"+{WITNESS.key_id:08x}+", "+00000000+"),
        WITNESS.vkey.replace(f"+{WITNESS.key_id:08x}+", "+0000000+"),
        WITNESS.vkey + "=",
        "witness+only",
    ],
)
def test_a_malformed_cosigner_key_string_is_refused(vkey: str) -> None:
    with pytest.raises(KeyFormatError):
        CosignatureVerifier.from_vkey(vkey)


@given(st.integers(0, MAX_TIMESTAMP), st.integers(0, 2**40), st.binary(min_size=32, max_size=32))
def test_every_cosignature_verifies_and_states_its_time(
    timestamp: int, size: int, root: bytes
) -> None:
    checkpoint = Checkpoint(ORIGIN, size, root, 0)
    cosigned = cosign(sign_checkpoint(checkpoint, [OLD_LOG]), KOMINFO_COSIGNER, timestamp)
    assert verify_cosignatures(cosigned, [WITNESS]) == (Cosignature(WITNESS.label, timestamp),)

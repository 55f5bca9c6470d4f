"""Checkpoints in the C2SP tlog-checkpoint format, signed as notes."""

from __future__ import annotations

import base64
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ceir.audit.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from ceir.audit.errors import BadSignature, MalformedCheckpoint, UnknownKey
from ceir.audit.keys import generate_signing_key
from ceir.audit.merkle import EMPTY_ROOT, tree_hash
from ceir.audit.note import Signer, open_note

ORIGIN = "ceir.example/changes"
CUSTODIAN = Signer(ORIGIN, generate_signing_key())
ROOT = tree_hash([bytes(32)] * 3)
CHECKPOINT = Checkpoint(ORIGIN, 3, ROOT, 1_600_128_000_000_000)


def test_the_text_is_origin_size_root_and_time_lines() -> None:
    encoded_root = base64.b64encode(ROOT).decode()
    assert CHECKPOINT.text() == f"{ORIGIN}\n3\n{encoded_root}\ntime 1600128000000000\n"


def test_extension_lines_follow_the_time_line() -> None:
    checkpoint = Checkpoint(ORIGIN, 0, EMPTY_ROOT, 0, ("epoch 1",))
    assert checkpoint.text().endswith("time 0\nepoch 1\n")
    assert Checkpoint.parse(checkpoint.text()) == checkpoint


origins = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=30).filter(
    lambda text: "\n" not in text
)
checkpoints = st.builds(
    Checkpoint,
    origin=origins,
    size=st.integers(0, 2**64 - 1),
    root_hash=st.binary(min_size=32, max_size=32),
    time_us=st.integers(0, 2**63 - 1),
    extensions=st.lists(origins, max_size=3).map(tuple),
)


@given(checkpoints)
def test_parsing_a_checkpoint_text_gives_the_checkpoint(checkpoint: Checkpoint) -> None:
    assert Checkpoint.parse(checkpoint.text()) == checkpoint


def test_a_signed_checkpoint_opens_with_the_custodian_key() -> None:
    signed = sign_checkpoint(CHECKPOINT, [CUSTODIAN])
    assert signed.startswith(CHECKPOINT.text() + "\n— ceir.example/changes ")
    assert open_checkpoint(signed, [CUSTODIAN.verifier], ORIGIN) == CHECKPOINT


def test_a_cosigned_checkpoint_opens_with_either_key() -> None:
    witness = Signer("kominfo.example/witness", generate_signing_key())
    signed = sign_checkpoint(CHECKPOINT, [CUSTODIAN, witness])
    assert open_checkpoint(signed, [witness.verifier], ORIGIN) == CHECKPOINT
    assert len(open_note(signed, [CUSTODIAN.verifier, witness.verifier]).signatures) == 2


def test_a_checkpoint_by_an_unknown_key_is_refused_naming_the_key() -> None:
    stranger = Signer(ORIGIN, generate_signing_key())
    signed = sign_checkpoint(CHECKPOINT, [stranger])
    with pytest.raises(UnknownKey, match=re.escape(stranger.verifier.label)):
        open_checkpoint(signed, [CUSTODIAN.verifier], ORIGIN)


@pytest.mark.parametrize(
    ("old", "new"),
    [("\n3\n", "\n4\n"), ("time 1600128000000000", "time 1600128000000001")],
)
def test_a_changed_size_or_time_breaks_the_signature(old: str, new: str) -> None:
    signed = sign_checkpoint(CHECKPOINT, [CUSTODIAN]).replace(old, new, 1)
    with pytest.raises(BadSignature):
        open_checkpoint(signed, [CUSTODIAN.verifier], ORIGIN)


def test_a_checkpoint_of_another_log_is_refused() -> None:
    other = Signer("other.example/log", generate_signing_key())
    checkpoint = Checkpoint("other.example/log", 3, ROOT, 0)
    with pytest.raises(MalformedCheckpoint, match=r"for log 'other\.example/log'"):
        open_checkpoint(sign_checkpoint(checkpoint, [other]), [other.verifier], ORIGIN)


def test_a_plain_c2sp_checkpoint_without_time_is_refused() -> None:
    text = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    with pytest.raises(MalformedCheckpoint, match="has 3 lines"):
        Checkpoint.parse(text)


GOOD_ROOT = base64.b64encode(ROOT).decode()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"{ORIGIN}\n3\n{GOOD_ROOT}\ntime 0", "does not end with a newline"),
        (f"{ORIGIN}\n03\n{GOOD_ROOT}\ntime 0\n", "line 2, tree size '03'"),
        (f"{ORIGIN}\n+3\n{GOOD_ROOT}\ntime 0\n", "line 2"),
        (f"{ORIGIN}\n1_000\n{GOOD_ROOT}\ntime 0\n", "line 2"),
        (f"{ORIGIN}\n\u0663\n{GOOD_ROOT}\ntime 0\n", "line 2"),  # an Arabic-Indic three
        (f"{ORIGIN}\n{2**64}\n{GOOD_ROOT}\ntime 0\n", "line 2"),
        (f"{ORIGIN}\n3\n{GOOD_ROOT[:-4]}\ntime 0\n", "line 3"),
        (f"{ORIGIN}\n3\n{GOOD_ROOT.rstrip('=')}\ntime 0\n", "line 3"),
        (f"{ORIGIN}\n3\n{base64.b64encode(ROOT + b'x').decode()}\ntime 0\n", "line 3"),
        (f"{ORIGIN}\n3\n{GOOD_ROOT}\ntime -1\n", "line 4"),
        (f"{ORIGIN}\n3\n{GOOD_ROOT}\ntime 01\n", "line 4"),
        (f"{ORIGIN}\n3\n{GOOD_ROOT}\nepoch 1\n", "line 4"),
        (f"{ORIGIN}\n3\n{GOOD_ROOT}\ntime 0\n\n", "extension line ''"),
        (f"\n3\n{GOOD_ROOT}\ntime 0\n", "origin ''"),
    ],
)
def test_malformed_checkpoints_name_the_bad_line(text: str, message: str) -> None:
    with pytest.raises(MalformedCheckpoint, match=message):
        Checkpoint.parse(text)


def test_a_non_canonical_root_encoding_is_refused() -> None:
    # the last base64 character of a 32-byte value carries two unused bits
    last = GOOD_ROOT[-2]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    twin = alphabet[alphabet.index(last) ^ 1]
    assert base64.b64decode(GOOD_ROOT[:-2] + twin + "=") == ROOT
    with pytest.raises(MalformedCheckpoint, match="line 3"):
        Checkpoint.parse(f"{ORIGIN}\n3\n{GOOD_ROOT[:-2] + twin}=\ntime 0\n")


@pytest.mark.parametrize(
    "fields",
    [
        {"origin": ""},
        {"size": -1},
        {"root_hash": b"short"},
        {"time_us": -1},
        {"extensions": ("",)},
        {"origin": "two\nlines"},
    ],
)
def test_an_impossible_checkpoint_cannot_be_made(fields: dict[str, object]) -> None:
    values: dict[str, object] = {
        "origin": ORIGIN,
        "size": 1,
        "root_hash": ROOT,
        "time_us": 0,
        **fields,
    }
    with pytest.raises(ValueError):
        Checkpoint(**values)  # type: ignore[arg-type]

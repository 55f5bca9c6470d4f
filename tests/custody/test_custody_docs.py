"""docs/custody.md: every key, text and signature of its worked example is the library's."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from ceir.audit.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from ceir.audit.note import Signer
from ceir.custody.chain import sign_policy, walk_chain
from ceir.custody.cosignature import (
    Cosignature,
    Cosigner,
    cosign,
    cosignature_message,
    verify_cosignatures,
)
from ceir.custody.errors import ThresholdNotMet
from ceir.custody.handover import Handover, sign_handover, verify_handover

from .example import (
    AYU,
    BUDI,
    CITRA,
    DEWI,
    EKO,
    FAJAR,
    KOMINFO,
    KOMINFO_COSIGNER,
    NEW_LOG,
    NOW,
    OLD_LOG,
    ORIGIN,
    V0,
    V1,
    V1_SIGNERS,
    private_key,
    signer,
)

DOC = (Path(__file__).parents[2] / "docs" / "custody.md").read_text(encoding="utf-8")
EXAMPLE = DOC[DOC.index("## Worked example") :]
BLOCKS = re.findall(r"```\n(.*?)```", EXAMPLE, flags=re.DOTALL)
ROOT = base64.b64decode("ksIT6z6Al4Y0VexQS9lVA1MDzV0QNiDeKdwnpiobSJY=")  # docs/trust.md's example
CHECKPOINT = Checkpoint(ORIGIN, 2, ROOT, 1_587_254_401_000_000)
COSIGNED_AT = 1_587_254_402
SIGNERS: tuple[Signer, ...] = (OLD_LOG, NEW_LOG, AYU, BUDI, CITRA, DEWI, EKO, FAJAR, KOMINFO)


def test_the_example_has_its_seven_blocks() -> None:
    assert len(BLOCKS) == 7


def test_the_key_table_gives_the_phrases_of_the_example_keys() -> None:
    phrases = re.findall(r"^\| [^|]+ \| `([^`]+)` \|$", EXAMPLE, flags=re.MULTILINE)
    assert len(phrases) == len(SIGNERS) + 1
    *note_phrases, cosigner_phrase = phrases
    rebuilt = [
        signer(s.name, phrase).verifier.vkey
        for s, phrase in zip(SIGNERS, note_phrases, strict=True)
    ]
    assert rebuilt == [s.verifier.vkey for s in SIGNERS]
    cosigner = Cosigner(KOMINFO_COSIGNER.verifier.name, private_key(cosigner_phrase))
    assert cosigner.verifier == KOMINFO_COSIGNER.verifier


def test_the_verifier_keys_are_the_example_keys() -> None:
    expected = [s.verifier.vkey for s in SIGNERS] + [KOMINFO_COSIGNER.verifier.vkey]
    assert BLOCKS[0].splitlines() == expected


def test_the_policy_texts_are_the_example_policies() -> None:
    assert BLOCKS[1] == V0.text()
    assert BLOCKS[2] == V1.text()


def test_the_signed_policy_is_reproduced_and_walked() -> None:
    assert BLOCKS[3] == sign_policy(V1, V1_SIGNERS)
    assert walk_chain(V0, [BLOCKS[3]], NOW) == V1


def test_the_refusal_the_page_describes_happens() -> None:
    with pytest.raises(ThresholdNotMet, match="0 did") as caught:
        walk_chain(V0, [sign_policy(V1, (AYU, BUDI, CITRA, KOMINFO))], NOW)
    assert caught.value.organisation == "kemenperin"


def test_the_cosignature_is_reproduced_and_verifies() -> None:
    assert BLOCKS[4] == cosignature_message(CHECKPOINT.text(), COSIGNED_AT).decode()
    cosigned = cosign(sign_checkpoint(CHECKPOINT, [OLD_LOG]), KOMINFO_COSIGNER, COSIGNED_AT)
    assert BLOCKS[5] == cosigned
    assert verify_cosignatures(BLOCKS[5], [KOMINFO_COSIGNER.verifier]) == (
        Cosignature(KOMINFO_COSIGNER.verifier.label, COSIGNED_AT),
    )
    assert open_checkpoint(BLOCKS[5], [OLD_LOG.verifier], ORIGIN) == CHECKPOINT


def test_the_decoded_cosignature_line_is_stated_rightly() -> None:
    raw = base64.b64decode(BLOCKS[5].splitlines()[-1].split(" ")[2])
    assert f"key ID `{raw[:4].hex()}`" in EXAMPLE
    assert f"timestamp\n`{raw[4:12].hex()}` ({COSIGNED_AT})" in EXAMPLE


def test_the_handover_note_is_reproduced_and_verifies() -> None:
    handover = Handover.between(V0, V1, 2, ROOT)
    signers = [OLD_LOG, NEW_LOG, AYU, BUDI, DEWI, EKO, KOMINFO]
    assert BLOCKS[6] == sign_handover(handover, signers)
    assert verify_handover(BLOCKS[6], V0, V1, NOW) == handover


def test_the_page_says_the_ceremony_is_built() -> None:
    assert "the ceremony in the register server" in DOC[:400]
    assert "not built" not in DOC

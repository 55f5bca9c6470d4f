"""The handover note: old and new log keys, both officer thresholds, the witnesses."""

from __future__ import annotations

import base64
import dataclasses
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ceir.audit.note import Signer
from ceir.custody.errors import (
    DuplicateSigner,
    KeyReused,
    LogKeySignatureMissing,
    MalformedHandover,
    PolicyExpired,
    ThresholdNotMet,
    WitnessQuorumNotMet,
    WrongOrigin,
    WrongVersion,
)
from ceir.custody.handover import Handover, sign_handover, verify_handover

from .example import AYU, BUDI, DEWI, EKO, KOMINFO, NEW_LOG, NOW, OLD_LOG, V0, V1

ROOT = hashlib.sha256(b"the final root").digest()
HANDOVER = Handover.between(V0, V1, 1_234_567, ROOT)
EVERYONE: tuple[Signer, ...] = (OLD_LOG, NEW_LOG, AYU, BUDI, DEWI, EKO, KOMINFO)


def _without(*left_out: Signer) -> list[Signer]:
    return [s for s in EVERYONE if s not in left_out]


def test_a_fully_signed_handover_verifies() -> None:
    assert verify_handover(sign_handover(HANDOVER, list(EVERYONE)), V0, V1, NOW) == HANDOVER


def test_the_handover_names_both_log_keys_and_the_policy() -> None:
    assert HANDOVER.text().splitlines() == [
        "ceir/handover/v1",
        "origin ceir.example/changes",
        "size 1234567",
        f"root {base64.b64encode(ROOT).decode()}",
        f"old-key {OLD_LOG.verifier.label}",
        f"new-key {NEW_LOG.verifier.label}",
        "policy 1",
    ]


@pytest.mark.parametrize("missing", [OLD_LOG, NEW_LOG])
def test_both_log_keys_must_sign(missing: Signer) -> None:
    with pytest.raises(LogKeySignatureMissing) as caught:
        verify_handover(sign_handover(HANDOVER, _without(missing)), V0, V1, NOW)
    assert caught.value.key == missing.verifier.label


@pytest.mark.parametrize(("missing", "organisation"), [(AYU, "telkomsel"), (EKO, "kemenperin")])
def test_both_officer_thresholds_must_be_met(missing: Signer, organisation: str) -> None:
    with pytest.raises(ThresholdNotMet) as caught:
        verify_handover(sign_handover(HANDOVER, _without(missing)), V0, V1, NOW)
    assert caught.value.organisation == organisation


def test_the_witnesses_must_sign() -> None:
    with pytest.raises(WitnessQuorumNotMet):
        verify_handover(sign_handover(HANDOVER, _without(KOMINFO)), V0, V1, NOW)


def test_a_log_key_signing_twice_is_refused() -> None:
    with pytest.raises(DuplicateSigner):
        verify_handover(sign_handover(HANDOVER, [*EVERYONE, OLD_LOG]), V0, V1, NOW)


def test_a_handover_to_another_policy_version_is_refused() -> None:
    other = dataclasses.replace(HANDOVER, policy=2)
    with pytest.raises(WrongVersion, match="handover to policy version 2"):
        verify_handover(sign_handover(other, list(EVERYONE)), V0, V1, NOW)
    with pytest.raises(WrongVersion, match="not from 1 to 1"):
        verify_handover(sign_handover(HANDOVER, list(EVERYONE)), V1, V1, NOW)


def test_a_handover_of_another_log_is_refused() -> None:
    other = dataclasses.replace(HANDOVER, origin="ceir.example/other")
    with pytest.raises(WrongOrigin):
        verify_handover(sign_handover(other, list(EVERYONE)), V0, V1, NOW)


def test_a_handover_naming_other_keys_is_refused() -> None:
    other = dataclasses.replace(HANDOVER, old_key=NEW_LOG.verifier.label)
    with pytest.raises(MalformedHandover, match="as the old log key"):
        verify_handover(sign_handover(other, list(EVERYONE)), V0, V1, NOW)


def test_the_new_custodian_needs_a_log_key_of_its_own() -> None:
    same_key = dataclasses.replace(V1, log_key=V0.log_key)
    with pytest.raises(KeyReused):
        verify_handover(sign_handover(HANDOVER, list(EVERYONE)), V0, same_key, NOW)


def test_a_handover_under_an_expired_policy_is_refused() -> None:
    with pytest.raises(PolicyExpired):
        verify_handover(sign_handover(HANDOVER, list(EVERYONE)), V0, V1, V1.expires)


@given(
    st.integers(0, 2**64 - 1),
    st.binary(min_size=32, max_size=32),
    st.integers(1, 2**63 - 1),
)
def test_a_handover_text_parses_back(size: int, root: bytes, policy: int) -> None:
    handover = dataclasses.replace(HANDOVER, size=size, root_hash=root, policy=policy)
    assert Handover.parse(handover.text()) == handover


TEXT = HANDOVER.text()


@pytest.mark.parametrize(
    "text",
    [
        TEXT[:-1],
        TEXT + "extra\n",
        TEXT.replace("ceir/handover/v1", "ceir/handover/v2"),
        TEXT.replace("size 1234567", "size 01234567"),
        TEXT.replace("size 1234567", "size  1234567"),
        TEXT.replace("size 1234567", f"size {2**64}"),
        TEXT.replace("policy 1", "policy 0"),
        TEXT.replace("origin ", "origin: "),
        TEXT.replace(OLD_LOG.verifier.label, OLD_LOG.verifier.label.upper()),
        TEXT.replace("=\n", "\n"),
    ],
)
def test_a_malformed_handover_text_is_refused(text: str) -> None:
    with pytest.raises(MalformedHandover):
        Handover.parse(text)


def test_a_handover_that_is_not_a_signed_note_is_refused() -> None:
    with pytest.raises(MalformedHandover, match="not a signed note"):
        verify_handover(HANDOVER.text(), V0, V1, NOW)

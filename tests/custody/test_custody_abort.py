"""The abort note: the outgoing custodian's officer threshold calls a handover off."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ceir.audit.note import Signer
from ceir.custody.abort import AbortNote, policy_sha256, sign_abort, verify_abort
from ceir.custody.errors import (
    BadCustodySignature,
    DuplicateSigner,
    MalformedAbort,
    ThresholdNotMet,
    UnknownSigner,
    WrongOrigin,
    WrongVersion,
)

from .example import AYU, BUDI, CITRA, DEWI, EKO, KOMINFO, V0, V1

ABORT = AbortNote.of(V1)


def test_two_outgoing_officers_abort() -> None:
    assert verify_abort(sign_abort(ABORT, [AYU, CITRA]), V0, V1) == ABORT


def test_the_text_names_the_log_the_version_and_the_policy_text() -> None:
    assert ABORT.text().splitlines() == [
        "ceir/custody-abort/v1",
        "origin ceir.example/changes",
        "policy 1",
        f"policy-sha256 {hashlib.sha256(V1.text().encode()).hexdigest()}",
    ]
    assert AbortNote.parse(ABORT.text()) == ABORT


@pytest.mark.parametrize(
    "signers",
    [
        [AYU],  # one officer never acts alone
        [DEWI, EKO],  # the incoming custodian's officers do not count
        [AYU, KOMINFO],  # a witness is no officer
    ],
)
def test_fewer_than_the_outgoing_threshold_is_refused(signers: list[Signer]) -> None:
    with pytest.raises((ThresholdNotMet, UnknownSigner)) as caught:
        verify_abort(sign_abort(ABORT, signers), V0, V1)
    assert caught.value.version == 1


def test_a_repeated_officer_counts_once_and_is_refused() -> None:
    with pytest.raises(DuplicateSigner):
        verify_abort(sign_abort(ABORT, [AYU, AYU]), V0, V1)


def test_a_forged_officer_signature_is_refused() -> None:
    note = sign_abort(ABORT, [AYU, BUDI])
    forged = note.replace(note.splitlines()[-1][-8:], "AAAAAAA=")
    with pytest.raises((BadCustodySignature, MalformedAbort)):
        verify_abort(forged, V0, V1)


def test_an_abort_of_another_text_of_the_version_is_refused() -> None:
    # An old note must not call off a later proposal of the same version.
    other = dataclasses.replace(V1, endpoint="elsewhere.example:8443")
    with pytest.raises(WrongVersion, match="another text"):
        verify_abort(sign_abort(ABORT, [AYU, BUDI]), V0, other)


def test_an_abort_of_another_version_or_log_is_refused() -> None:
    with pytest.raises(WrongVersion):
        verify_abort(sign_abort(dataclasses.replace(ABORT, policy=2), [AYU, BUDI]), V0, V1)
    with pytest.raises(WrongOrigin):
        verify_abort(sign_abort(dataclasses.replace(ABORT, origin="x"), [AYU, BUDI]), V0, V1)


def test_policy_sha256_is_of_the_canonical_text() -> None:
    assert policy_sha256(V1) == hashlib.sha256(V1.text().encode()).hexdigest()


@given(st.text(max_size=200))
def test_anything_else_is_malformed(text: str) -> None:
    if text == ABORT.text():
        return
    with pytest.raises(MalformedAbort):
        AbortNote.parse(text)


@pytest.mark.parametrize(
    "text",
    [
        ABORT.text().replace("policy 1", "policy 01"),
        ABORT.text().replace("policy 1", "policy 0"),
        ABORT.text().replace("policy-sha256 ", "policy-sha256  "),
        ABORT.text().upper(),
        ABORT.text()[:-1],
        ABORT.text() + "extra\n",
    ],
)
def test_non_canonical_texts_are_refused(text: str) -> None:
    with pytest.raises(MalformedAbort):
        AbortNote.parse(text)

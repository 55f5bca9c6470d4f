"""Walking the chain of custody policies: each version approved under the one before."""

from __future__ import annotations

import dataclasses
from itertools import combinations
from random import Random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ceir.audit.note import NoteSignature, Signer
from ceir.custody.chain import sign_policy, verify_successor, walk_chain
from ceir.custody.cosignature import Cosigner
from ceir.custody.errors import (
    BadCustodySignature,
    DuplicateSigner,
    KeyReused,
    MalformedPolicy,
    PolicyExpired,
    ThresholdNotMet,
    UnknownSigner,
    WitnessQuorumNotMet,
    WrongOrigin,
    WrongVersion,
)
from ceir.custody.policy import Officer, Witness

from .example import (
    AYU,
    BUDI,
    CITRA,
    DEWI,
    EKO,
    FAJAR,
    KOMINFO,
    NOW,
    V0,
    V1,
    V1_SIGNERS,
    officers,
    private_key,
    signer,
)

SIGNED_V1 = sign_policy(V1, V1_SIGNERS)
OUTSIDERS = (
    signer("officer.kemenperin.example/x", "x"),
    signer("officer.kemenperin.example/y", "y"),
)
BRI = signer("witness.bri.example", "bri witness note key")
BRI_WITNESS = Witness(BRI.verifier, Cosigner(BRI.name, private_key("bri cosigner")).verifier)
GITA = signer("officer.kemenperin.example/gita", "kemenperin officer gita")
# Version 2: Kemenperin rotates its officers (Fajar leaves, Gita joins) and adds a witness.
V2 = dataclasses.replace(
    V1,
    version=2,
    officers=officers("kemenperin", (DEWI, EKO, GITA)),
    witnesses=(*V1.witnesses, BRI_WITNESS),
    expires=1_767_225_600,  # 1 January 2026
)
SIGNED_V2 = sign_policy(V2, (DEWI, EKO, GITA, KOMINFO))


def test_the_two_version_chain_is_walked_to_kemenperin() -> None:
    assert walk_chain(V0, [SIGNED_V1], NOW) == V1
    assert verify_successor(V0, SIGNED_V1, NOW) == V1


def test_a_node_with_no_new_policy_stays_on_its_own() -> None:
    assert walk_chain(V0, [], NOW) == V0


def test_a_rotation_within_one_custodian_is_walked() -> None:
    assert walk_chain(V0, [SIGNED_V1, SIGNED_V2], NOW) == V2


def test_old_keys_alone_cannot_name_a_new_custodian() -> None:
    signed = sign_policy(V1, (AYU, BUDI, CITRA, KOMINFO))
    with pytest.raises(ThresholdNotMet) as caught:
        verify_successor(V0, signed, NOW)
    error = caught.value
    assert (error.reason, error.version, error.organisation) == (
        "THRESHOLD_NOT_MET",
        1,
        "kemenperin",
    )
    assert (error.needed, error.got) == (2, 0)
    assert "incoming custodian" in str(error)


def test_the_new_custodian_alone_cannot_take_the_register() -> None:
    signed = sign_policy(V1, (DEWI, EKO, FAJAR, KOMINFO))
    with pytest.raises(ThresholdNotMet, match="outgoing custodian") as caught:
        verify_successor(V0, signed, NOW)
    assert caught.value.organisation == "telkomsel"


def test_the_proposer_alone_is_never_enough() -> None:
    with pytest.raises(ThresholdNotMet) as caught:
        verify_successor(V0, sign_policy(V1, (AYU,)), NOW)
    assert (caught.value.needed, caught.value.got) == (2, 1)


def test_signatures_by_keys_not_listed_are_ignored_and_never_counted() -> None:
    signed = sign_policy(V1, (AYU, BUDI, DEWI, *OUTSIDERS, KOMINFO))
    with pytest.raises(
        ThresholdNotMet, match=r"ignored, not listed: officer\.kemenperin\.example/x"
    ):
        verify_successor(V0, signed, NOW)


def test_a_note_signed_only_by_strangers_is_refused() -> None:
    with pytest.raises(UnknownSigner) as caught:
        verify_successor(V0, sign_policy(V1, OUTSIDERS), NOW)
    assert caught.value.reason == "UNKNOWN_SIGNER"
    assert caught.value.keys == tuple(s.verifier.label for s in OUTSIDERS)


def test_one_officer_signing_twice_is_refused() -> None:
    twice = sign_policy(V1, (AYU, AYU, DEWI, EKO, KOMINFO))
    with pytest.raises(DuplicateSigner) as caught:
        verify_successor(V0, twice, NOW)
    assert caught.value.key == AYU.verifier.label
    assert caught.value.reason == "DUPLICATE_SIGNER"


def test_a_witness_quorum_of_the_trusted_policy_is_needed() -> None:
    with pytest.raises(WitnessQuorumNotMet) as caught:
        verify_successor(V0, sign_policy(V1, (AYU, BUDI, DEWI, EKO)), NOW)
    assert (caught.value.needed, caught.value.got) == (1, 0)


def test_a_witness_the_new_policy_adds_does_not_count_for_it() -> None:
    signed = sign_policy(V2, (DEWI, EKO, GITA, BRI))
    with pytest.raises(WitnessQuorumNotMet, match="policy version 1 must sign"):
        verify_successor(V1, signed, NOW)


def test_a_failing_signature_by_a_listed_key_refuses_the_policy() -> None:
    other = sign_policy(V0, (BUDI,))
    stolen = other.split("\n\n")[-1]  # Budi's signature of another text
    forged = sign_policy(V1, (AYU, DEWI, EKO, KOMINFO)) + stolen
    with pytest.raises(BadCustodySignature) as caught:
        verify_successor(V0, forged, NOW)
    assert caught.value.key == BUDI.verifier.label
    assert caught.value.reason == "BAD_SIGNATURE"


def test_a_policy_altered_after_signing_is_refused() -> None:
    altered = SIGNED_V1.replace("complaints telkomsel", "complaints kemenperin")
    with pytest.raises(BadCustodySignature):
        verify_successor(V0, altered, NOW)


def test_an_expired_policy_is_refused() -> None:
    with pytest.raises(PolicyExpired) as caught:
        verify_successor(V0, SIGNED_V1, V1.expires)
    assert (caught.value.version, caught.value.reason) == (1, "POLICY_EXPIRED")


def test_a_node_whose_only_policy_expired_has_none() -> None:
    with pytest.raises(PolicyExpired, match="policy version 0: expired"):
        walk_chain(V0, [], V0.expires)


def test_an_expired_policy_walked_through_does_not_stop_the_walk() -> None:
    now = V1.expires + 1
    assert walk_chain(V0, [SIGNED_V1, SIGNED_V2], now) == V2
    with pytest.raises(PolicyExpired):
        walk_chain(V0, [SIGNED_V1], now)


@pytest.mark.parametrize("version", [0, 2, 3])
def test_only_the_next_version_is_accepted(version: int) -> None:
    signed = sign_policy(dataclasses.replace(V1, version=version), V1_SIGNERS)
    with pytest.raises(WrongVersion, match=f"holds policy version {version}") as caught:
        verify_successor(V0, signed, NOW)
    assert caught.value.version == 1


def test_the_same_version_twice_is_refused() -> None:
    with pytest.raises(WrongVersion) as caught:
        walk_chain(V0, [SIGNED_V1, SIGNED_V1], NOW)
    assert caught.value.version == 2


def test_a_policy_of_another_log_is_refused() -> None:
    signed = sign_policy(dataclasses.replace(V1, origin="ceir.example/other"), V1_SIGNERS)
    with pytest.raises(WrongOrigin):
        verify_successor(V0, signed, NOW)


def test_a_trusted_key_cannot_come_back_in_another_role() -> None:
    # Ayu's key, a Telkomsel officer's in v0, listed as a Kemenperin officer in v1.
    turncoat = Officer(
        "kemenperin",
        Signer("officer.kemenperin.example/a", private_key("telkomsel officer ayu")).verifier,
    )
    changed = dataclasses.replace(V1, officers=(*V1.officers, turncoat))
    with pytest.raises(KeyReused, match=r"officer officer\.telkomsel\.example/ayu of telkomsel"):
        verify_successor(V0, sign_policy(changed, V1_SIGNERS), NOW)


def test_a_text_that_is_not_a_signed_policy_is_refused() -> None:
    with pytest.raises(MalformedPolicy, match="not a signed note"):
        verify_successor(V0, V1.text(), NOW)
    note = sign_policy(V1, V1_SIGNERS).replace("version 1\n", "version 1\nextra line\n")
    with pytest.raises(MalformedPolicy, match="policy version 1: line 3"):
        verify_successor(V0, note, NOW)


def test_the_walk_names_the_version_that_failed_and_why() -> None:
    bad_v2 = sign_policy(V2, (DEWI, EKO, GITA))
    with pytest.raises(WitnessQuorumNotMet) as caught:
        walk_chain(V0, [SIGNED_V1, bad_v2], NOW)
    assert caught.value.version == 2
    assert str(caught.value).startswith("policy version 2: ")


def test_a_rotation_needs_the_old_and_the_new_officers_of_one_custodian() -> None:
    # Dewi and Eko are officers in both v1 and v2: they meet both thresholds.
    assert verify_successor(V1, SIGNED_V2, NOW) == V2
    # With Dewi, Fajar (v1 only) and Gita (v2 only) make two of each list.
    assert verify_successor(V1, sign_policy(V2, (FAJAR, GITA, DEWI, KOMINFO)), NOW) == V2
    # Without her, one of each: neither threshold is met.
    with pytest.raises(ThresholdNotMet):
        verify_successor(V1, sign_policy(V2, (FAJAR, GITA, KOMINFO)), NOW)


TELKOMSEL = (AYU, BUDI, CITRA)
KEMENPERIN = (DEWI, EKO, FAJAR)
EVERY_SIGNER = (*TELKOMSEL, *KEMENPERIN, KOMINFO, *OUTSIDERS)


@given(st.sets(st.sampled_from(EVERY_SIGNER)), st.randoms(use_true_random=False))
def test_a_policy_is_accepted_exactly_when_every_threshold_is_met(
    chosen: set[Signer], random: Random
) -> None:
    signers = sorted(chosen, key=lambda s: s.name)
    random.shuffle(signers)
    accepted = (
        len(chosen & set(TELKOMSEL)) >= 2
        and len(chosen & set(KEMENPERIN)) >= 2
        and KOMINFO in chosen
    )
    if not signers:
        return
    signed = sign_policy(V1, signers)
    if accepted:
        assert verify_successor(V0, signed, NOW) == V1
    else:
        with pytest.raises((ThresholdNotMet, WitnessQuorumNotMet, UnknownSigner)):
            verify_successor(V0, signed, NOW)


def test_every_pair_of_telkomsel_officers_can_approve() -> None:
    for pair in combinations(TELKOMSEL, 2):
        assert verify_successor(V0, sign_policy(V1, (*pair, DEWI, FAJAR, KOMINFO)), NOW) == V1


def test_a_signature_line_moved_to_another_note_is_refused() -> None:
    line = NoteSignature(CITRA.name, CITRA.key_id, CITRA.sign(b"something else\n")).line()
    with pytest.raises(BadCustodySignature):
        verify_successor(V0, SIGNED_V1 + line, NOW)

"""Custody policies: one canonical text per policy, and nothing else parses."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ceir.audit.note import Signer
from ceir.custody.cosignature import Cosigner
from ceir.custody.errors import MalformedPolicy
from ceir.custody.policy import CustodyPolicy, Officer, Threshold, Witness

from .example import AYU, KOMINFO_WITNESS, V0, V1, officers, private_key, signer

KEYS = [signer(f"officer.example/{n}", f"policy test {n}") for n in range(8)]
WITNESSES = [
    Witness(
        signer(f"witness.example/{n}", f"policy test witness {n}").verifier,
        Cosigner(f"witness.example/{n}", private_key(f"policy test cosigner {n}")).verifier,
    )
    for n in range(3)
]
ORGANISATION = st.from_regex(r"[a-z0-9]{1,8}([-.][a-z0-9]{1,5})?", fullmatch=True)
TOKEN = st.from_regex(r"[!-~]{1,30}", fullmatch=True)


@st.composite
def policies(draw: st.DrawFn) -> CustodyPolicy:
    """Any valid policy over the test keys."""
    keys = draw(st.permutations(KEYS))
    organisations = draw(st.lists(ORGANISATION, min_size=1, max_size=3, unique=True))
    log_key, members = keys[0], keys[1:]
    officer_list: list[Officer] = []
    thresholds: list[Threshold] = []
    per_organisation = max(2, len(members) // len(organisations))
    for index, organisation in enumerate(organisations):
        group = members[index * per_organisation : (index + 1) * per_organisation]
        if len(group) < 2:
            break
        officer_list += officers(organisation, tuple(group))
        thresholds.append(Threshold(organisation, draw(st.integers(2, len(group)))))
    witnesses = draw(st.lists(st.sampled_from(WITNESSES), min_size=1, unique=True))
    return CustodyPolicy(
        version=draw(st.integers(0, 2**63 - 1)),
        origin=draw(TOKEN),
        custodian=draw(st.sampled_from([t.organisation for t in thresholds])),
        endpoint=draw(TOKEN),
        log_key=log_key.verifier,
        complaints=draw(ORGANISATION),
        expires=draw(st.integers(0, 2**63 - 1)),
        thresholds=tuple(thresholds),
        officers=tuple(officer_list),
        witness_quorum=draw(st.integers(1, len(witnesses))),
        witnesses=tuple(witnesses),
    )


@given(policies())
def test_a_policy_text_parses_back_to_the_policy(policy: CustodyPolicy) -> None:
    assert CustodyPolicy.parse(policy.text()) == policy


@given(policies(), st.data())
def test_a_changed_text_is_refused_or_is_the_canonical_text_of_another_policy(
    policy: CustodyPolicy, data: st.DataObject
) -> None:
    text = policy.text()
    position = data.draw(st.integers(0, len(text) - 1))
    replacement = data.draw(st.sampled_from(["", " ", "\n", "0", "a", "A", "+", "-", "x y"]))
    changed = text[:position] + replacement + text[position + 1 :]
    try:
        parsed = CustodyPolicy.parse(changed)
    except MalformedPolicy:
        return
    assert parsed.text() == changed


@given(policies())
def test_the_order_of_officers_and_witnesses_given_does_not_matter(policy: CustodyPolicy) -> None:
    shuffled = dataclasses.replace(
        policy,
        officers=tuple(reversed(policy.officers)),
        witnesses=tuple(reversed(policy.witnesses)),
        thresholds=tuple(reversed(policy.thresholds)),
    )
    assert shuffled == policy
    assert shuffled.text() == policy.text()


def test_the_example_policy_reads_as_documented() -> None:
    lines = V0.text().splitlines()
    assert lines[:3] == ["ceir/custody-policy/v1", "version 0", "origin ceir.example/changes"]
    assert lines[8] == "organisation telkomsel 2"
    assert [o.name for o in V0.officers_of("telkomsel")] == [
        "officer.telkomsel.example/ayu",
        "officer.telkomsel.example/budi",
        "officer.telkomsel.example/citra",
    ]
    assert V0.threshold_of("telkomsel") == 2
    assert V1.custodian == "kemenperin"


def _replace_line(text: str, number: int, line: str) -> str:
    lines = text.split("\n")
    lines[number - 1] = line
    return "\n".join(lines)


def _swap_lines(text: str, first: int, second: int) -> str:
    lines = text.split("\n")
    lines[first - 1], lines[second - 1] = lines[second - 1], lines[first - 1]
    return "\n".join(lines)


TEXT = V0.text()
AYU_KEY = private_key("telkomsel officer ayu")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (TEXT[:-1], "does not end with a newline"),
        (TEXT + "\n", "line 15"),
        (TEXT.replace("ceir/custody-policy/v1", "ceir/custody-policy/v2"), "line 1"),
        (TEXT.replace("version 0", "version 00"), "leading zeros"),
        (TEXT.replace("version 0", "version  0"), "single spaces"),
        (TEXT.replace("version 0", "version -1"), "not a decimal"),
        (TEXT.replace("version 0", f"version {2**63}"), "below 2\\*\\*63"),
        (TEXT.replace("custodian telkomsel", "custodian Telkomsel"), "organisation name"),
        (TEXT.replace("endpoint ceir.telkomsel.example:8443", "endpoint a b"), "line 5"),
        (TEXT.replace("ccca3833", "CCCA3833"), "not canonical: line 6"),
        (TEXT.replace("ccca3833", "ccca3834"), "does not match the key"),
        (_swap_lines(TEXT, 10, 11), "not canonical: line 10"),
        (_swap_lines(TEXT, 2, 3), "line 2"),
        (TEXT.replace("organisation telkomsel 2", "organisation telkomsel 1"), "threshold 1"),
        (TEXT.replace("organisation telkomsel 2", "organisation telkomsel 4"), "threshold 4"),
        (TEXT.replace("organisation telkomsel 2\n", ""), "no threshold line"),
        (TEXT.replace("witness-quorum 1", "witness-quorum 0"), "quorum 0"),
        (TEXT.replace("witness-quorum 1", "witness-quorum 2"), "quorum 2"),
        (_replace_line(TEXT, 14, ""), "line 14"),
    ],
)
def test_a_malformed_policy_text_is_refused_naming_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(MalformedPolicy, match=message) as caught:
        CustodyPolicy.parse(text, 0)
    assert caught.value.reason == "POLICY_FORMAT"
    assert str(caught.value).startswith("policy version 0: ")


def test_the_custodian_must_have_officers() -> None:
    with pytest.raises(ValueError, match="custodian 'kemenperin' has no officers"):
        dataclasses.replace(V0, custodian="kemenperin")


def test_one_key_cannot_be_two_officers() -> None:
    twin = Officer("kemenperin", Signer("officer.kemenperin.example/twin", AYU_KEY).verifier)
    with pytest.raises(ValueError, match="listed twice"):
        dataclasses.replace(
            V0,
            officers=(*V0.officers, twin, *officers("kemenperin", (KEYS[0],))),
            thresholds=(*V0.thresholds, Threshold("kemenperin", 2)),
        )


def test_the_log_key_cannot_be_an_officer() -> None:
    with pytest.raises(ValueError, match="listed twice"):
        dataclasses.replace(V0, log_key=Signer("log.example", AYU_KEY).verifier)


def test_two_keys_cannot_share_a_name() -> None:
    with pytest.raises(ValueError, match="used by two keys"):
        dataclasses.replace(V0, log_key=signer(AYU.name, "another key").verifier)


def test_a_witness_needs_two_keys_under_one_name() -> None:
    with pytest.raises(ValueError, match="two names"):
        Witness(KOMINFO_WITNESS.verifier, WITNESSES[0].cosigner)
    same = Cosigner(KOMINFO_WITNESS.name, private_key("kominfo witness note key")).verifier
    with pytest.raises(ValueError, match="one key"):
        Witness(KOMINFO_WITNESS.verifier, same)


def test_expiry_is_reached_at_the_stated_second() -> None:
    assert not V0.expired(V0.expires - 1)
    assert V0.expired(V0.expires)

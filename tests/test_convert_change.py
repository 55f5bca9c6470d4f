"""A domain change and its ``ListChange``: every leaf field carried, both ways,
in the clear view and in the commitment-only view."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ceir.api.convert import change, change_from_pb, leaf_from_pb
from ceir.audit.commitment import subscriber_commitment
from ceir.audit.errors import LeafEncodingError
from ceir.audit.leaf import encode_change, encode_leaf, leaf_view
from ceir.domain.custody_steps import CUSTODY_STEPS, custody_change
from ceir.domain.model import BlacklistCause, Change, ChangeKind, Policy, RegistrationSource

KEY = st.integers(0, 10**14 - 1)
MICROS = st.integers(-(10**15), 10**17)
TEXT = st.text(max_size=20)
SALT = bytes(range(16))

NOTIFIED = Change(
    kind=ChangeKind.NOTIFICATION_NEW,
    imei_key=35_693_803_564_380,
    imsi="510101234567890",
    msisdn="6281234567890",
    block_date_us=1_617_178_530_250_000,
    operator_mcc_mnc="510-10",
    sequence=3,
    committed_at_us=1_614_586_530_250_000,
    actor="telkomsel",
    subscriber_salt=SALT,
)


def changes() -> st.SearchStrategy[Change]:
    """Any change the leaf encodings take: list and policy changes with any
    fields, and custody steps in their one shape."""
    return list_changes() | custody_changes()


@st.composite
def custody_changes(draw: st.DrawFn) -> Change:
    step = custody_change(
        draw(st.sampled_from(CUSTODY_STEPS)),
        draw(st.integers(0, 2**63 - 1)),
        draw(st.just("") | st.binary(min_size=32, max_size=32).map(bytes.hex)),
        draw(TEXT.filter(bool)),
    )
    return replace(step, sequence=draw(st.integers(1, 2**63)), committed_at_us=draw(MICROS))


@st.composite
def list_changes(draw: st.DrawFn) -> Change:
    subscriber = draw(
        st.none()
        | st.tuples(
            st.from_regex(r"\A51010[0-9]{10}\Z"),
            st.just("") | st.from_regex(r"\A628[0-9]{9}\Z"),
            st.binary(min_size=16, max_size=16),
        )
    )
    imsi, msisdn, salt = subscriber if subscriber is not None else ("", "", b"")
    return draw(
        st.builds(
            Change,
            kind=st.sampled_from(
                [kind for kind in ChangeKind if kind is not ChangeKind.CUSTODY_CHANGED]
            ),
            imei_key=st.none() | KEY,
            imsi=st.just(imsi),
            msisdn=st.just(msisdn),
            source=st.none() | st.sampled_from(RegistrationSource),
            valid_until_us=st.none() | MICROS,
            device_id=TEXT,
            blacklist_cause=st.none() | st.sampled_from(BlacklistCause),
            block_date_us=st.none() | MICROS,
            operator_mcc_mnc=TEXT,
            policy=st.none() | st.builds(Policy, updated_at_us=MICROS, updated_by=TEXT),
            sequence=st.integers(1, 2**63),
            committed_at_us=MICROS,
            actor=TEXT,
            reference=TEXT,
            brand=TEXT,
            model=TEXT,
            device_imei_keys=st.lists(KEY, max_size=4).map(tuple),
            police_report=TEXT,
            reason=TEXT,
            subscriber_salt=st.just(salt),
        )
    )


@settings(max_examples=100)
@given(changes())
def test_the_clear_view_gives_the_change_back(value: Change) -> None:
    assert change_from_pb(change(value)) == value


@settings(max_examples=100)
@given(changes())
def test_every_receiver_rebuilds_the_leaf(value: Change) -> None:
    leaf = encode_change(value)
    assert encode_leaf(leaf_from_pb(change(value))) == leaf
    assert encode_leaf(leaf_from_pb(change(value, clear=False))) == leaf


def test_the_clear_view_carries_every_version_2_field() -> None:
    value = replace(
        NOTIFIED,
        reference="TPP-1",
        brand="Contoh",
        model="C2 Duo",
        device_imei_keys=(35_693_803_564_380, 1),
        police_report="LP/1",
        reason="why",
    )
    message = change(value)
    assert message.leaf_version == 2
    assert (message.actor, message.reference, message.brand, message.model) == (
        "telkomsel",
        "TPP-1",
        "Contoh",
        "C2 Duo",
    )
    assert list(message.device_imei_keys) == ["35693803564380", "00000000000001"]
    assert (message.police_report, message.reason) == ("LP/1", "why")
    assert (message.imsi, message.msisdn, message.subscriber_salt) == (
        NOTIFIED.imsi,
        NOTIFIED.msisdn,
        SALT,
    )
    assert message.subscriber_commitment == subscriber_commitment(
        SALT, NOTIFIED.imsi, NOTIFIED.msisdn
    )


def test_the_commitment_only_view_blanks_the_numbers_and_the_salt() -> None:
    message = change(NOTIFIED, clear=False)
    assert (message.imsi, message.msisdn, message.subscriber_salt) == ("", "", b"")
    assert message.subscriber_commitment == change(NOTIFIED).subscriber_commitment
    assert len(message.subscriber_commitment) == 32


def test_a_change_without_a_subscriber_has_no_commitment() -> None:
    message = change(replace(NOTIFIED, imsi="", msisdn="", subscriber_salt=b""))
    assert message.subscriber_commitment == b""


def test_a_version_1_change_carries_its_numbers_and_no_commitment() -> None:
    old = replace(NOTIFIED, leaf_version=1, subscriber_salt=b"")
    for message in (change(old), change(old, clear=False)):
        assert message.leaf_version == 1
        assert (message.imsi, message.msisdn) == (old.imsi, old.msisdn)
        assert message.subscriber_commitment == b""
        assert encode_leaf(leaf_from_pb(message)) == encode_change(old)


def test_a_message_from_a_server_before_version_2_reads_as_version_1() -> None:
    message = change(replace(NOTIFIED, leaf_version=1, subscriber_salt=b""))
    message.ClearField("leaf_version")
    assert change_from_pb(message).leaf_version == 1
    assert leaf_from_pb(message) == leaf_view(replace(NOTIFIED, leaf_version=1))


def test_an_imsi_without_commitment_or_salt_cannot_be_rebuilt() -> None:
    message = change(NOTIFIED)
    message.ClearField("subscriber_commitment")
    message.ClearField("subscriber_salt")
    with pytest.raises(LeafEncodingError, match="subscriber_salt is 0 bytes"):
        leaf_from_pb(message)


def test_the_commitment_given_is_the_one_hashed() -> None:
    message = change(NOTIFIED, clear=False)
    message.subscriber_commitment = bytes(32)
    assert leaf_from_pb(message).subscriber_commitment == bytes(32)

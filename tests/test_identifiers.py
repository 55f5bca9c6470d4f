"""IMEI, IMSI and MSISDN parsing, with properties over generated values."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ceir.domain.errors import InvalidArgument
from ceir.domain.identifiers import (
    full_imei,
    imei_key,
    luhn_check_digit,
    parse_imei,
    validate_imsi,
    validate_msisdn,
)

keys = st.integers(min_value=0, max_value=10**14 - 1)


def test_luhn_of_a_known_imei() -> None:
    # 490154203237518 is the IMEI example of 3GPP TS 23.003's Luhn annex.
    assert luhn_check_digit("49015420323751") == 8


@given(keys, st.integers(min_value=0, max_value=99))
def test_every_form_of_an_imei_has_the_same_key(key: int, svn: int) -> None:
    digits = full_imei(key)
    assert imei_key(digits[:14]) == imei_key(digits) == imei_key(f"{digits[:14]}{svn:02d}") == key


@given(keys, st.integers(min_value=1, max_value=9))
def test_a_wrong_check_digit_is_malformed(key: int, shift: int) -> None:
    digits = full_imei(key)
    wrong = digits[:14] + str((int(digits[14]) + shift) % 10)
    assert imei_key(wrong) is None


@given(st.text(max_size=20))
def test_only_ascii_digit_strings_of_14_to_16_can_be_keys(value: str) -> None:
    key = imei_key(value)
    if key is not None:
        assert value.isascii() and value.isdigit() and 14 <= len(value) <= 16


@pytest.mark.parametrize(
    "value",
    [
        "٣٥٢٠٩٩٠٠١٧٦١٤٨",
        "３５２０９９００１７６１４８",
        "3520990017614 ",
        "+35209900176148",
        "3520990017614",
        "12345678901234567",
    ],
)
def test_lookalikes_are_rejected_with_the_field_named(value: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_imei(value, "device.imeis[0]")
    assert caught.value.violations[0].field == "device.imeis[0]"


def test_imsi_and_msisdn() -> None:
    assert validate_imsi("510101234567890", "imsi") == "510101234567890"
    assert validate_msisdn("+6281100000001", "msisdn") == "6281100000001"
    for bad in ("51010", "5101012345678901", "51010abc", "５１０１０１２３４５６７"):
        with pytest.raises(InvalidArgument):
            validate_imsi(bad, "imsi")
    for bad in ("+62", "62-811-000", "++6281100000001"):
        with pytest.raises(InvalidArgument):
            validate_msisdn(bad, "msisdn")

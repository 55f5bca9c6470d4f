"""IMEI, IMSI and MSISDN parsing.

The register keys every IMEI by its first 14 digits (TAC + SNR), as DIRBS
does. A 15-digit IMEI must pass Luhn; a 16-digit value is an IMEISV whose last
two digits are the software version. Only ASCII digits count: Python's
``str.isdigit`` accepts '٣' and '３', which no network ever sends.
"""

from __future__ import annotations

from .errors import InvalidArgument

INDONESIA_MCC = "510"
IMEI_KEY_DIGITS = 14
# ASCII digits to their values, and to their doubles with the digits summed
# (the Luhn weights), as byte tables: summing translated bytes runs in C.
_VALUE = bytes.maketrans(b"0123456789", bytes(range(10)))
_DOUBLED = bytes.maketrans(b"0123456789", bytes((0, 2, 4, 6, 8, 1, 3, 5, 7, 9)))


def _is_ascii_digits(value: str) -> bool:
    return value.isascii() and value.isdigit()


def luhn_check_digit(digits14: str) -> int:
    """The Luhn check digit of a 14-digit TAC + SNR (ASCII digits)."""
    data = digits14.encode("ascii")
    total = sum(data[::2].translate(_VALUE)) + sum(data[1::2].translate(_DOUBLED))
    return (10 - total % 10) % 10


def imei_key(value: str) -> int | None:
    """The 14-digit key of an IMEI as an integer, or None if it is malformed.

    Accepts 14 digits, 15 digits with a valid Luhn check digit, or a
    16-digit IMEISV. This sits on the check path, so it returns None instead
    of raising.
    """
    length = len(value)
    if length < 14 or length > 16 or not (value.isascii() and value.isdigit()):
        return None
    if length == 15 and luhn_check_digit(value[:14]) != ord(value[14]) - 48:
        return None
    return int(value[:14])


def format_imei_key(key: int) -> str:
    """The 14-digit text form of an IMEI key (TACs may start with zeros)."""
    return f"{key:014d}"


def full_imei(key: int) -> str:
    """The 15-digit IMEI (key + Luhn check digit) of a key."""
    digits = format_imei_key(key)
    return digits + str(luhn_check_digit(digits))


def parse_imei(value: str, field: str) -> int:
    """The key of an IMEI given in a request field; InvalidArgument if malformed."""
    if not value:
        raise InvalidArgument.field(field, "an IMEI is required", reason="IMEI_REQUIRED")
    key = imei_key(value)
    if key is None:
        raise InvalidArgument.field(
            field, f"{describe_malformed_imei(value)} (got {value[:40]!r})", reason="MALFORMED_IMEI"
        )
    return key


def describe_malformed_imei(value: str) -> str:
    """Why an IMEI is malformed, for a person."""
    if not _is_ascii_digits(value):
        return "an IMEI has only the digits 0-9"
    if len(value) not in (14, 15, 16):
        return f"an IMEI has 14, 15 or 16 digits, not {len(value)}"
    return "the Luhn check digit of this 15-digit IMEI does not hold"


def is_imsi(value: str) -> bool:
    """True for an IMSI: 6 to 15 ASCII digits (MCC + MNC + MSIN)."""
    return 6 <= len(value) <= 15 and value.isascii() and value.isdigit()


def msisdn_digits(value: str) -> str | None:
    """The digits of an MSISDN (optional '+', then 8 to 15 ASCII digits),
    or None if it is not one."""
    digits = value[1:] if value.startswith("+") else value
    if 8 <= len(digits) <= 15 and digits.isascii() and digits.isdigit():
        return digits
    return None


def validate_imsi(value: str, field: str) -> str:
    """An IMSI of 6 to 15 ASCII digits (MCC + MNC + MSIN)."""
    if not is_imsi(value):
        raise InvalidArgument.field(
            field, f"an IMSI has 6 to 15 digits 0-9 (got {value[:40]!r})", reason="MALFORMED_IMSI"
        )
    return value


def validate_msisdn(value: str, field: str) -> str:
    """An MSISDN: optional '+', then 8 to 15 ASCII digits. Returns digits only."""
    digits = msisdn_digits(value)
    if digits is None:
        raise InvalidArgument.field(
            field,
            f"an MSISDN is an optional '+' and 8 to 15 digits 0-9 (got {value[:40]!r})",
            reason="MALFORMED_MSISDN",
        )
    return digits


def home_mcc_mnc(imsi: str) -> str:
    """The MCC-MNC of an IMSI, with a two-digit MNC as in Indonesia: '510-10'."""
    return f"{imsi[:3]}-{imsi[3:5]}"


def validate_mcc_mnc(value: str) -> str:
    """An MCC-MNC written as '510-10' (3 digits, dash, 2 or 3 digits)."""
    mcc, _, mnc = value.partition("-")
    if len(mcc) != 3 or len(mnc) not in (2, 3) or not _is_ascii_digits(mcc + mnc):
        raise InvalidArgument.field("mcc_mnc", f"expected MCC-MNC such as 510-10, got {value!r}")
    return value

"""Identifiers as an operator EIR handles them: IMEIs to 14-digit integer keys,
IMSIs to integer codes, one at a time or a numpy batch at once.

The rules are the register's published ones (``CheckEquipmentRequest.imei``):
14 digits (TAC + SNR), 15 digits whose Luhn check digit holds, or a 16-digit
IMEISV; anything else is malformed. Keys are the first 14 digits as an
integer, exactly what ``GetSnapshotResponse.imei_keys`` carries.

An IMSI (6 to 15 digits) becomes ``len * 10**15 + int(imsi)``: one uint64
that keeps leading zeros apart (``"0510..."`` differs from ``"510..."``) and
leaves 0 for "no IMSI".
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
MALFORMED = np.uint64(2**64 - 1)
"""The key of a malformed IMEI (no real key reaches 10**14)."""
MALFORMED_KEY = int(MALFORMED)
NO_IMSI = 0
INDONESIA_MCC = 510
_IMSI_LENGTH_UNIT = 10**15
_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)  # digit*2 with its digits summed
_POW10 = np.array([10**i for i in range(16)], dtype=np.uint64)
_KEY_WEIGHTS = _POW10[13::-1].copy()  # 10**13 .. 10**0 for the 14 key digits
_DOUBLED_TABLE = np.array(_DOUBLED, dtype=np.int64)


def luhn_check_digit(digits14: str) -> int:
    """The Luhn check digit of a 14-digit TAC + SNR."""
    total = 0
    for position, char in enumerate(digits14):
        digit = ord(char) - 48
        total += _DOUBLED[digit] if position % 2 else digit
    return (10 - total % 10) % 10


def full_imei(key: int) -> str:
    """The 15-digit IMEI (key + Luhn check digit) of a key."""
    digits = f"{key:014d}"
    return digits + str(luhn_check_digit(digits))


def imei_key(value: str) -> int | None:
    """The 14-digit key of an IMEI as an integer, or None if it is malformed."""
    length = len(value)
    if length < 14 or length > 16 or not (value.isascii() and value.isdigit()):
        return None
    if length == 15 and luhn_check_digit(value[:14]) != ord(value[14]) - 48:
        return None
    return int(value[:14])


def imsi_code(imsi: str) -> int:
    """The uint64 code of an IMSI string; 0 for an empty one."""
    if not imsi:
        return NO_IMSI
    if len(imsi) > 15 or not (imsi.isascii() and imsi.isdigit()):
        raise ValueError(f"an IMSI has up to 15 digits 0-9, got {imsi[:40]!r}")
    return len(imsi) * _IMSI_LENGTH_UNIT + int(imsi)


# Another operator's subscriber reaches a node as a commitment only: its code
# is the commitment's first 63 bits with the top bit set, above every IMSI
# code (at most 16 * 10**15), so it can never equal one of the node's own.
_COMMITMENT_BIT = 1 << 63


def subscriber_code(imsi: str, commitment: bytes) -> int:
    """The code of a pair's subscriber: its IMSI's when given, else its commitment's."""
    if imsi or not commitment:
        return imsi_code(imsi)
    return _COMMITMENT_BIT | (int.from_bytes(commitment[:8], "big") >> 1)


def imsi_text(code: int) -> str:
    """The IMSI string of a code (inverse of ``imsi_code``)."""
    if code == NO_IMSI:
        return ""
    length, value = divmod(code, _IMSI_LENGTH_UNIT)
    return f"{value:0{length}d}"


def imei_keys(values: npt.NDArray[np.bytes_]) -> U64:
    """Keys of a batch of IMEIs given as ASCII bytes (dtype ``S16`` or
    narrower); ``MALFORMED`` where an IMEI is malformed."""
    if values.shape[0] <= 8:  # a handful: the scalar rule is cheaper than numpy's set-up
        keys = [imei_key(v.decode("ascii", "replace")) for v in values.tolist()]
        return np.array([MALFORMED_KEY if k is None else k for k in keys], dtype=np.uint64)
    too_long = None
    if values.dtype.itemsize > 16:  # S16 would cut a 17-digit value to a valid IMEISV
        too_long = np.char.str_len(values) > 16
    raw = np.ascontiguousarray(values, dtype="S16")
    count = raw.shape[0]
    if count == 0:
        return np.empty(0, dtype=np.uint64)
    chars = raw.view(np.uint8).reshape(count, 16)
    lengths = (chars != 0).sum(axis=1)
    digits = chars.astype(np.int64) - 48
    used = np.arange(16)[None, :] < lengths[:, None]
    all_digits = np.all((digits >= 0) & (digits <= 9) | ~used, axis=1)
    # a NUL inside the value would make ``lengths`` lie: bytes after it count
    contiguous = np.all(used == (chars != 0), axis=1)
    ok = all_digits & contiguous & (lengths >= 14) & (lengths <= 16)
    if too_long is not None:
        ok &= ~too_long
    safe = np.where(ok[:, None], digits, 0)
    keys = (safe[:, :14].astype(np.uint64) * _KEY_WEIGHTS[None, :]).sum(axis=1, dtype=np.uint64)
    luhn_rows = ok & (lengths == 15)
    if luhn_rows.any():
        part = safe[luhn_rows]
        total = part[:, 0:14:2].sum(axis=1) + _DOUBLED_TABLE[part[:, 1:14:2]].sum(axis=1)
        check = (10 - total % 10) % 10
        ok[np.flatnonzero(luhn_rows)[check != part[:, 14]]] = False
    keys[~ok] = MALFORMED
    return np.asarray(keys, dtype=np.uint64)


def imsi_codes(values: npt.NDArray[np.bytes_]) -> U64:
    """Codes of a batch of IMSIs given as ASCII digits (dtype ``S15``);
    empty values give 0. Raises ValueError on anything but digits."""
    raw = np.ascontiguousarray(values, dtype="S15")
    count = raw.shape[0]
    if count == 0:
        return np.empty(0, dtype=np.uint64)
    chars = raw.view(np.uint8).reshape(count, 15)
    lengths = (chars != 0).sum(axis=1)
    digits = chars.astype(np.int64) - 48
    used = np.arange(15)[None, :] < lengths[:, None]
    if not np.all((digits >= 0) & (digits <= 9) | ~used):
        raise ValueError("an IMSI has only the digits 0-9")
    safe = np.where(used, digits, 0).astype(np.uint64)
    # right-align: the value of digit i is 10**(length-1-i)
    exponents = lengths[:, None] - 1 - np.arange(15)[None, :]
    weights = np.where(used, _POW10[np.clip(exponents, 0, 15)], 0).astype(np.uint64)
    values_ = (safe * weights).sum(axis=1, dtype=np.uint64)
    codes = lengths.astype(np.uint64) * np.uint64(_IMSI_LENGTH_UNIT) + values_
    codes[lengths == 0] = NO_IMSI
    return np.asarray(codes, dtype=np.uint64)


def roamer_mask(codes: U64) -> npt.NDArray[np.bool_]:
    """True where an IMSI code is an inbound roamer (non-empty, MCC not 510)."""
    lengths = (codes // np.uint64(_IMSI_LENGTH_UNIT)).astype(np.int64)
    values = codes % np.uint64(_IMSI_LENGTH_UNIT)
    shift = _POW10[np.clip(lengths - 3, 0, 15)]
    prefix = values // shift
    mask = (codes != NO_IMSI) & ((lengths < 3) | (prefix != INDONESIA_MCC))
    return np.asarray(mask, dtype=np.bool_)

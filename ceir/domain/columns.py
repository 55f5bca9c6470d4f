"""IMEI checks over a column of values at once (an import chunk's).

``imei_keys`` gives, for every value, what ``identifiers.imei_key`` gives
for it alone — the key, or -1 where that returns None — with the digit,
length and Luhn checks done by numpy over the whole column instead of a
Python call per value. A value it refuses is looked at again by the scalar
functions, which say why (``identifiers.describe_malformed_imei``), so a
rejection names the same field with the same words as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["MALFORMED", "imei_keys"]

MALFORMED = -1  # the key of a value that is not an IMEI
_WIDTH = 16  # the longest IMEI (an IMEISV)
# Luhn weights of the 14 key digits: the digits at odd offsets are doubled
# and their digits summed.
_DOUBLED = np.array([0, 2, 4, 6, 8, 1, 3, 5, 7, 9], dtype=np.int64)
_POWERS = 10 ** np.arange(13, -1, -1, dtype=np.int64)


def imei_keys(values: Sequence[str]) -> npt.NDArray[np.int64]:
    """The key of each value as ``identifiers.imei_key`` gives it; -1 where
    that gives None (not 14 to 16 ASCII digits, or a 15-digit IMEI whose Luhn
    check digit does not hold)."""
    count = len(values)
    keys = np.full(count, MALFORMED, dtype=np.int64)
    if not count:
        return keys
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=count)
    fits = (lengths >= 14) & (lengths <= _WIDTH)
    # The values of one width (an IMEI, a key, an IMEISV) read as one ASCII
    # buffer; what is left (not ASCII) goes through the code points below.
    for width in (15, 14, 16):
        same = np.flatnonzero(lengths == width)
        if not len(same):
            continue
        group = values if len(same) == count else [values[i] for i in same.tolist()]
        found = _uniform_keys(group, width)
        if found is not None:
            keys[same] = found
            fits[same] = False
    chosen = np.flatnonzero(fits)
    if not len(chosen):
        return keys
    # UCS-4 code points, one row per value, zero past its end; a value's
    # own length (not numpy's, which drops trailing NULs) says where it ends.
    text = np.array([values[i] for i in chosen.tolist()], dtype=f"<U{_WIDTH}")
    points = text.view(np.uint32).reshape(len(chosen), _WIDTH).astype(np.int64)
    digits = points - 48
    inside = np.arange(_WIDTH) < lengths[chosen][:, None]
    is_digit = (digits >= 0) & (digits <= 9)
    ascii_digits = np.all(is_digit | ~inside, axis=1)
    head = np.where(is_digit[:, :14], digits[:, :14], 0)
    found = head @ _POWERS
    odd = _DOUBLED[head[:, 1:14:2]].sum(axis=1)
    total = head[:, 0:14:2].sum(axis=1) + odd
    check = (10 - total % 10) % 10
    luhn_holds = (lengths[chosen] != 15) | (check == digits[:, 14])
    good = ascii_digits & luhn_holds
    keys[chosen[good]] = found[good]
    return keys


def _uniform_keys(values: Sequence[str], width: int) -> npt.NDArray[np.int64] | None:
    """``imei_keys`` of values all ``width`` characters long, read as one
    ASCII buffer; None if one is not ASCII."""
    joined = "".join(values)
    if not joined.isascii():
        return None
    digits = np.frombuffer(joined.encode("ascii"), dtype=np.uint8).reshape(-1, width) - 48
    good = np.all(digits <= 9, axis=1)  # below "0" wraps past 9
    head = np.minimum(digits[:, :14], 9).astype(np.int64)  # in range where not good
    found = head @ _POWERS
    if width == 15:
        odd = head[:, 1:14:2]
        total = head[:, 0:14:2].sum(axis=1) + (2 * odd - 9 * (odd > 4)).sum(axis=1)
        good &= (10 - total % 10) % 10 == digits[:, 14]
    return np.where(good, found, MALFORMED)

"""Salted commitments to a subscriber (IMSI and MSISDN), for leaf version 2.

A leaf that concerns a subscriber holds ``SHA-256(domain || salt || imsi ||
msisdn)`` instead of the numbers, each string prefixed with its u16 byte
length (``docs/trust.md``, "Subscriber commitments"). The salt is 16 random
bytes made by the register for each list row (a notification or exception
pair, a stolen report) and reused by the changes that end that row, so every
node can match an end to its start. The salt and the clear numbers go only to
the subscriber's own operator and to regulators; the commitment goes to all.
Without the salt the 10^10 IMSIs of one MCC-MNC cannot be tried one by one.
"""

from __future__ import annotations

import hashlib
import secrets

from .errors import LeafEncodingError

__all__ = ["COMMITMENT_DOMAIN", "SALT_BYTES", "new_salt", "subscriber_commitment"]

COMMITMENT_DOMAIN = b"ceir/subscriber/v1\x00"
SALT_BYTES = 16


def new_salt() -> bytes:
    """A fresh salt from the operating system's CSPRNG."""
    return secrets.token_bytes(SALT_BYTES)


def subscriber_commitment(salt: bytes, imsi: str, msisdn: str) -> bytes:
    """The 32-byte commitment to (imsi, msisdn) under ``salt``."""
    if len(salt) != SALT_BYTES:
        raise LeafEncodingError(f"subscriber salt is {len(salt)} bytes, expected {SALT_BYTES}")
    parts = [COMMITMENT_DOMAIN, salt]
    for name, value in (("imsi", imsi), ("msisdn", msisdn)):
        try:
            raw = value.encode("utf-8")
        except UnicodeEncodeError as error:
            raise LeafEncodingError(
                f"{name} {value!r} is not encodable as UTF-8 (character {error.start})"
            ) from None
        if len(raw) > 0xFFFF:
            raise LeafEncodingError(f"{name} is {len(raw)} UTF-8 bytes, more than 65535")
        parts.append(len(raw).to_bytes(2, "big") + raw)
    return hashlib.sha256(b"".join(parts)).digest()

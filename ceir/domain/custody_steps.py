"""Custody leaves: the steps of a handover ceremony as changes of the log.

A step of the ceremony (``docs/custody.md``) is a ``CUSTODY_CHANGED``
change, written with leaf version 2 only, that touches no list: its IMEI key
is 0, its actor the organisation that made the step, its reason the step and
the custody policy version (``"FROZEN 1"``) and its reference the lowercase
hex SHA-256 of the document the step rests on (or "" when none, as for
READY). ``custody_problem`` is the one definition of that shape: the leaf
encoder refuses any custody change it finds fault with, so a custody leaf
has exactly one form.
"""

from __future__ import annotations

import re
from typing import Protocol

from .model import CURRENT_LEAF_VERSION, Change, ChangeKind

__all__ = [
    "CUSTODY_IMEI_KEY",
    "CUSTODY_STEPS",
    "custody_change",
    "custody_problem",
    "parse_custody_reason",
]

# The steps a register records as leaves; OPERATING, STANDBY and
# TRANSFERRED are states a register is in without writing to the log.
CUSTODY_STEPS = ("ANNOUNCED", "READY", "FROZEN", "ABORTED", "ACTIVE", "RETIRED")
CUSTODY_IMEI_KEY = 0  # a custody change is about no IMEI
_VERSION_LIMIT = 2**63  # policy versions, as docs/custody.md bounds them
_REASON = re.compile(r"([A-Z]+) (0|[1-9][0-9]{0,18})")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")

# Fields a custody change leaves at their defaults (none of them is about
# a custody step); the leaf encoder refuses one that is set.
_UNUSED = (
    "imsi",
    "msisdn",
    "source",
    "valid_until_us",
    "device_id",
    "blacklist_cause",
    "block_date_us",
    "operator_mcc_mnc",
    "policy",
    "brand",
    "model",
    "device_imei_keys",
    "police_report",
    "subscriber_salt",
    "subscriber_commitment",  # what a leaf holds for the subscriber fields
)


class CustodyFields(Protocol):
    """What ``custody_problem`` reads: a ``Change`` or a decoded leaf."""

    @property
    def kind(self) -> ChangeKind: ...
    @property
    def leaf_version(self) -> int: ...
    @property
    def imei_key(self) -> int | None: ...
    @property
    def actor(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def reference(self) -> str: ...


def custody_change(state: str, policy_version: int, document_sha256: str, actor: str) -> Change:
    """The change recording custody step ``state`` of policy ``policy_version``.

    ``document_sha256`` is the lowercase hex SHA-256 of the document the step
    rests on ("" for READY). The write unit numbers and stamps it
    (``WriteUnit.add``: sequence, commit time, and the caller as actor).
    Raises ValueError for a step, version, digest or actor out of shape.
    """
    change = Change(
        ChangeKind.CUSTODY_CHANGED,
        imei_key=CUSTODY_IMEI_KEY,
        actor=actor,
        reason=f"{state} {policy_version}",
        reference=document_sha256,
        leaf_version=CURRENT_LEAF_VERSION,
    )
    problem = custody_problem(change, numbered=False)
    if problem:
        raise ValueError(problem)
    return change


def parse_custody_reason(reason: str) -> tuple[str, int]:
    """(step, policy version) of a custody change's reason ``"FROZEN 1"``.

    Raises ValueError when the reason is not one step of ``CUSTODY_STEPS``, a
    space, and a version in decimal without leading zeros below 2^63.
    """
    match = _REASON.fullmatch(reason) if isinstance(reason, str) else None
    if match is None or match.group(1) not in CUSTODY_STEPS:
        raise ValueError(
            f"custody reason {reason!r} is not '<step> <policy version>' with a step of "
            f"{', '.join(CUSTODY_STEPS)}"
        )
    version = int(match.group(2))
    if version >= _VERSION_LIMIT:
        raise ValueError(f"custody reason {reason!r}: policy version is 2^63 or more")
    return match.group(1), version


def custody_problem(change: CustodyFields, *, numbered: bool = True) -> str:
    """What is wrong with ``change`` (a ``Change`` or a leaf the audit library
    decoded) as a custody change ("" when nothing is).

    ``numbered=False`` skips the actor, which the write unit sets.
    """
    if change.kind is not ChangeKind.CUSTODY_CHANGED:
        return f"kind is {change.kind!r}, not CUSTODY_CHANGED"
    if change.leaf_version != 2:
        return f"a custody change has leaf version 2 only, not {change.leaf_version}"
    if change.imei_key != CUSTODY_IMEI_KEY:
        return f"a custody change has imei key {CUSTODY_IMEI_KEY}, not {change.imei_key!r}"
    for name in _UNUSED:
        if getattr(change, name, None):
            return f"{name} is set, but a custody change does not carry it"
    try:
        parse_custody_reason(change.reason)
    except ValueError as error:
        return str(error)
    if change.reference and not (
        isinstance(change.reference, str) and _SHA256_HEX.fullmatch(change.reference)
    ):
        return (
            f"custody reference {change.reference!r} is neither empty nor the lowercase hex "
            "SHA-256 of a document"
        )
    if numbered and not change.actor:
        return "a custody change names its actor"
    return ""

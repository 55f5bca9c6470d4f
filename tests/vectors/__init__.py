"""Shared decision vectors (``decisions.json``, described in ``README.md``),
read into plain values that each decider's test turns into its own lists.

Times are Unix microseconds; the vectors hold whole seconds except where a
vector is about rounding.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

DECISIONS = Path(__file__).with_name("decisions.json")
RECORDS = ("nothing", "notification", "blacklist entry")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros(stamp: str) -> int:
    """Unix microseconds of an RFC 3339 UTC time such as ``2020-09-01T00:00:00Z``."""
    moment = datetime.fromisoformat(stamp)
    if moment.utcoffset() != timedelta(0):
        raise ValueError(f"vector times are UTC ('Z'), got {stamp!r}")
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _optional_micros(stamp: str | None) -> int | None:
    return None if stamp is None else micros(stamp)


@dataclass(frozen=True)
class WhitelistEntry:
    key: int
    valid_until_us: int | None


@dataclass(frozen=True)
class BlacklistEntry:
    key: int
    cause: str  # a ceir.v1 BlacklistCause name
    block_date_us: int | None


@dataclass(frozen=True)
class Notification:
    key: int
    imsi: str
    msisdn: str
    block_date_us: int


@dataclass(frozen=True)
class ExceptionPair:
    key: int
    imsi: str


@dataclass(frozen=True)
class VectorPolicy:
    phase: str  # a ceir.v1 Phase name
    grace_days: int
    clone_threshold: int
    clone_window_seconds: int


@dataclass(frozen=True)
class Sighting:
    """An earlier check of the vector's IMEI (it feeds clone detection)."""

    imsi: str
    at_us: int


@dataclass(frozen=True)
class Expected:
    status: str  # a ceir.v1 EquipmentStatus name
    reasons: tuple[str, ...]  # ceir.v1 Reason names, in order
    block_date_us: int | None
    records: str  # one of RECORDS: what the decider asks its caller to write


@dataclass(frozen=True)
class Vector:
    name: str
    whitelist: tuple[WhitelistEntry, ...]
    blacklist: tuple[BlacklistEntry, ...]
    notifications: tuple[Notification, ...]
    exceptions: tuple[ExceptionPair, ...]
    policy: VectorPolicy
    earlier_checks: tuple[Sighting, ...]
    imei: str
    imsi: str
    msisdn: str
    at_us: int
    expected: Expected


def _vector(raw: dict[str, Any]) -> Vector:
    lists = raw["lists"]
    query = raw["query"]
    expect = raw["expect"]
    if expect["records"] not in RECORDS:
        raise ValueError(f"{raw['name']}: records must be one of {RECORDS}")
    return Vector(
        name=raw["name"],
        whitelist=tuple(
            WhitelistEntry(int(e["imei_key"]), _optional_micros(e["valid_until"]))
            for e in lists["whitelist"]
        ),
        blacklist=tuple(
            BlacklistEntry(int(e["imei_key"]), e["cause"], _optional_micros(e["block_date"]))
            for e in lists["blacklist"]
        ),
        notifications=tuple(
            Notification(int(e["imei_key"]), e["imsi"], e["msisdn"], micros(e["block_date"]))
            for e in lists["notifications"]
        ),
        exceptions=tuple(ExceptionPair(int(e["imei_key"]), e["imsi"]) for e in lists["exceptions"]),
        policy=VectorPolicy(**raw["policy"]),
        earlier_checks=tuple(
            Sighting(s["imsi"], micros(s["time"])) for s in raw.get("earlier_checks", ())
        ),
        imei=query["imei"],
        imsi=query["imsi"],
        msisdn=query["msisdn"],
        at_us=micros(raw["time"]),
        expected=Expected(
            expect["status"],
            tuple(expect["reasons"]),
            _optional_micros(expect["block_date"]),
            expect["records"],
        ),
    )


def load_decision_vectors() -> list[Vector]:
    """Every vector of ``decisions.json``, in file order."""
    document = json.loads(DECISIONS.read_text(encoding="utf-8"))
    return [_vector(raw) for raw in document["vectors"]]

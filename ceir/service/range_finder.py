"""The regulator's range finder: IMEIs registered in dense ranges and never seen.

A range upload is a run of at least ``min_run`` whitelisted IMEIs with
consecutive serial numbers in one TAC, registered by one organisation under
one reference, none of which this server has seen in a check
(``ranges.SeenRecord``). A seen IMEI breaks a run: the phones of a range
that are really on a network are never listed, only the stretches between
them that are long enough. What to do with the runs found is the
regulator's: revoke them through ``RevokeRegistration`` (audited, in the
log), e.g. with ``ceir ranges revoke``.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import numpy as np

from ceir.domain.errors import InvalidArgument
from ceir.domain.model import Caller
from ceir.domain.permissions import Action, require
from ceir.storage.range_rows import whitelist_uploaders

from .capacity import CapacityStatus
from .ranges import SeenRecord, run_bounds
from .register import Register

__all__ = ["DEFAULT_MIN_RUN", "RangeFinder", "RangeReport", "RangeUpload"]

DEFAULT_MIN_RUN = 1_000
DEFAULT_PAGE, MAX_PAGE = 100, 1_000


@dataclass(frozen=True)
class RangeUpload:
    registered_by: str
    reference: str
    first_key: int
    last_key: int

    @property
    def imeis(self) -> int:
        return self.last_key - self.first_key + 1


@dataclass(frozen=True)
class RangeReport:
    ranges: list[RangeUpload]
    next_page_token: str
    observed_since_us: int
    checks_observed: int
    total_imeis: int
    capacity: CapacityStatus


class RangeFinder:
    def __init__(self, register: Register, seen: SeenRecord) -> None:
        self.register = register
        self.seen = seen

    def find(
        self, caller: Caller, min_run: int = 0, page_size: int = 0, page_token: str = ""
    ) -> RangeReport:
        require(caller, Action.FIND_RANGES)  # the regulators: Kemenperin and Kominfo
        if page_size < 0:
            raise InvalidArgument.field("page_size", "must not be negative")
        size = min(page_size or DEFAULT_PAGE, MAX_PAGE)
        after = _decode(page_token)
        longest = min_run or self.register.limits.range_guard or DEFAULT_MIN_RUN
        with self.register.db.read_snapshot() as connection:
            keys, owner, owners = whitelist_uploaders(connection)
        unseen = ~self.seen.seen(keys)
        keys, owner = keys[unseen], owner[unseen]
        breaks = np.concatenate(([True], np.diff(owner) != 0)) if owner.size else None
        starts, ends = run_bounds(keys, breaks)
        long = (ends - starts + 1) >= longest
        starts, ends = starts[long], ends[long]
        total = int((ends - starts + 1).sum())
        ranges = [
            RangeUpload(*owners[int(owner[s])], int(keys[s]), int(keys[e]))
            for s, e in zip(starts.tolist(), ends.tolist(), strict=True)
            if int(keys[s]) >= after
        ]
        token = ""
        if len(ranges) > size:
            token = _encode(ranges[size].first_key)
            ranges = ranges[:size]
        return RangeReport(
            ranges,
            token,
            self.seen.since_us,
            self.seen.checks,
            total,
            self.register.limits.status(self.register.state),
        )


def _encode(key: int) -> str:
    return base64.urlsafe_b64encode(f"r1:{key}".encode()).decode()


def _decode(token: str) -> int:
    if not token:
        return 0
    try:
        version, key = base64.urlsafe_b64decode(token.encode()).decode().split(":")
        if version != "r1" or not key.isdigit() or len(key) > 14:
            raise ValueError(token)
        return int(key)
    except (ValueError, UnicodeError, binascii.Error):
        raise InvalidArgument.field(
            "page_token", "not a token this server gave", reason="BAD_PAGE_TOKEN"
        ) from None

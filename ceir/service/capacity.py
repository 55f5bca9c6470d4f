"""The register's capacity and its range guard: limits a write is held to.

Indonesia's CEIR was sized for 1.2 billion IMEIs and filled in September
2020, because importers uploaded whole GSMA-allocated TAC ranges instead of
the units they produced. A register started with ``ceir serve --capacity
N`` holds at most N IMEIs on its whitelist; one started with
``--range-guard K`` refuses an import chunk holding more than K consecutive
serial numbers of one TAC unless the importer confirms them.

Both are checked in the register's one write path (``Register.execute``),
inside the write transaction, after the handler emitted its changes and
before anything is stored: a refused write raises, and the transaction
rolls back whole. A standby copying the custodian's log (``replicate``) is
not held to them: it must hold what the custodian holds.

From 90 % of the capacity on the register warns: a log line once per
crossing (not per write), the ``ceir_whitelist_near_capacity`` gauge, and
``near_limit`` in ``GetImeiRecord``'s capacity.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ceir.domain.commands import Command, ImportChunk
from ceir.domain.errors import FailedPrecondition, FieldViolation, QuotaExceeded, QuotaViolation
from ceir.domain.lists import ListState
from ceir.domain.model import Change, ChangeKind

from .ranges import SERIALS, dense_runs

__all__ = [
    "NEAR_LIMIT",
    "CapacityStatus",
    "WriteLimits",
    "whitelist_growth",
]

log = logging.getLogger("ceir.capacity")
NEAR_LIMIT = 0.9  # the register warns from this fill on
MAX_RANGE_VIOLATIONS = 20  # ranges named in one refusal (the message counts them all)


@dataclass(frozen=True)
class CapacityStatus:
    """The whitelist's fill: ``limit`` None when unlimited."""

    used: int
    limit: int | None

    @property
    def fill(self) -> float:
        return self.used / self.limit if self.limit else 0.0

    @property
    def near_limit(self) -> bool:
        return self.limit is not None and self.fill >= NEAR_LIMIT


def whitelist_growth(state: ListState, changes: Sequence[Change]) -> int:
    """How many IMEIs the changes put on the whitelist, net of those they take off."""
    final: dict[int, bool] = {}  # key -> on the whitelist after the changes
    for change in changes:
        kind = change.kind
        if kind is ChangeKind.WHITELIST_ADDED or kind is ChangeKind.WHITELIST_REMOVED:
            assert change.imei_key is not None
            final[change.imei_key] = kind is ChangeKind.WHITELIST_ADDED
    return sum(int(now) - int(state.is_whitelisted(key)) for key, now in final.items())


class WriteLimits:
    """The capacity and the range guard of one register (both off by default)."""

    def __init__(self, capacity: int | None = None, range_guard: int | None = None) -> None:
        if capacity is not None and capacity < 0:
            raise ValueError("the capacity must not be negative")
        if range_guard is not None and range_guard < 2:
            raise ValueError("the range guard must be at least 2 IMEIs")
        self.capacity = capacity
        self.range_guard = range_guard
        self.refusals = 0  # writes refused for the capacity, since start-up
        self._near = False
        self._lock = threading.Lock()
        self._on_refusal: Callable[[], None] | None = None

    @property
    def active(self) -> bool:
        return self.capacity is not None or self.range_guard is not None

    def status(self, state: ListState) -> CapacityStatus:
        return CapacityStatus(state.whitelist_size(), self.capacity)

    # --- in the write transaction ----------------------------------------------------

    def check(self, state: ListState, command: Command[Any], changes: Sequence[Change]) -> None:
        """Raise if the write's changes break a limit (write lock held, nothing stored yet)."""
        if not self.active or not changes:
            return
        if self.range_guard is not None and isinstance(command, ImportChunk):
            self._guard(command, changes, self.range_guard)
        if self.capacity is not None:
            growth = whitelist_growth(state, changes)
            used = state.whitelist_size()
            if growth > 0 and used + growth > self.capacity:
                self.refusals += 1
                if self._on_refusal is not None:
                    self._on_refusal()
                capacity, room = self.capacity, max(self.capacity - used, 0)
                raise QuotaExceeded(
                    f"the register is full: {used:,} of {capacity:,} IMEIs on the whitelist, "
                    f"and this write would add {growth:,} (room for {room:,}); nothing of it "
                    "was written",
                    [
                        QuotaViolation(
                            "whitelist",
                            f"capacity {capacity:,} IMEIs (ceir serve --capacity); {used:,} "
                            f"used, {growth:,} more asked",
                        )
                    ],
                    reason="REGISTER_FULL",
                    metadata={"used": str(used), "limit": str(capacity), "requested": str(growth)},
                )

    @staticmethod
    def _guard(command: ImportChunk, changes: Sequence[Change], longest: int) -> None:
        """Refuse a chunk holding a run of more than ``longest`` consecutive serials."""
        if command.confirm_ranges:
            return
        keys = sorted(
            c.imei_key
            for c in changes
            if c.kind is ChangeKind.WHITELIST_ADDED and c.imei_key is not None
        )
        runs = [run for run in dense_runs(keys) if run[1] - run[0] + 1 > longest]
        if not runs:
            return
        rows = {key: row.row for row in command.rows for key in row.device.imei_keys}
        violations = [
            FieldViolation(
                "rows",
                f"rows {rows.get(first, '?')} to {rows.get(last, '?')}: "
                f"{last - first + 1:,} consecutive serials {first:014d} to {last:014d} "
                f"of TAC {first // SERIALS:08d}",
            )
            for first, last in runs[:MAX_RANGE_VIOLATIONS]
        ]
        imeis = sum(last - first + 1 for first, last in runs)
        raise FailedPrecondition(
            f"{len(runs):,} dense range(s) of IMEIs ({imeis:,} in all) in this chunk, more "
            f"than {longest:,} consecutive serial numbers of one TAC (the range guard): "
            "whole allocated ranges are not produced units. Send the chunk again with "
            "confirm_ranges if every IMEI is a unit really made or imported",
            reason="DENSE_RANGE",
            violations=violations,
            metadata={"range_guard": str(longest), "ranges": str(len(runs))},
        )

    # --- after changes are applied ---------------------------------------------------

    def applied(self, state: ListState) -> None:
        """Warn once when the whitelist crosses 90 % of the capacity (and again
        after it fell below and crosses once more)."""
        if self.capacity is None:
            return
        status = self.status(state)
        with self._lock:
            crossed = status.near_limit and not self._near
            self._near = status.near_limit
        if crossed:
            log.warning(
                "the register is near its capacity: %.1f %% of the whitelist's capacity used",
                status.fill * 100,
                extra={"used": status.used, "limit": status.limit, "fill": round(status.fill, 4)},
            )

    # --- metrics ---------------------------------------------------------------------

    def export(self, registry: Any, state: Callable[[], ListState]) -> None:
        """Gauges of the capacity on a Prometheus registry (``Metrics.registry``)."""
        from prometheus_client import Counter, Gauge

        limit = Gauge(
            "ceir_whitelist_capacity",
            "IMEIs the whitelist may hold (ceir serve --capacity; 0: unlimited)",
            registry=registry,
        )
        limit.set_function(lambda: self.capacity or 0)
        fill = Gauge(
            "ceir_whitelist_capacity_fill",
            "Whitelist entries over the capacity (0 when unlimited)",
            registry=registry,
        )
        fill.set_function(lambda: self.status(state()).fill)
        near = Gauge(
            "ceir_whitelist_near_capacity",
            "1 from 90 % of the whitelist's capacity on, else 0",
            registry=registry,
        )
        near.set_function(lambda: float(self.status(state()).near_limit))
        refused = Counter(
            "ceir_capacity_refusals",
            "Writes refused because they would exceed the whitelist's capacity",
            registry=registry,
        )
        self._on_refusal = refused.inc

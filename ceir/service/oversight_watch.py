"""The registration-rate watch: per-organisation hourly counts and the account alert.

Every write that puts IMEIs on the whitelist adds them to its organisation's
hour (``account_rates``) inside the write transaction: one upsert per
organisation and hour the write touched (a write is one organisation at
one time; a standby's batch of copied changes may span a few), never a
statement per row, so a bulk import of millions pays one statement a chunk.
Counting in the transaction keeps the counts a projection of the log, as
the list tables are: a restart keeps the baseline, and two servers sharing
a database count each write once.

When the write takes its hour over the threshold (``ceir.domain.oversight``)
and the hour has no alert yet, the alert row is stored in the same
transaction (its unique key makes it one per organisation and hour, however
many servers); once committed, the register logs one WARNING line and
counts ``ceir_account_alerts_total{organisation}``. The gauge
``ceir_account_registration_ratio{organisation}`` is the latest hour's count
over max(baseline, floor), set at every write that registers.

A standby copying the custodian's log counts the copied changes the same
way, and so raises the same alerts as it goes (its own log lines and
metrics): its tables are the custodian's once it takes over.
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from ceir.domain.model import Change, ChangeKind
from ceir.domain.oversight import WINDOW_US, AlertRule, window_of
from ceir.storage import oversight_repository as rates

__all__ = ["RateWatch", "Watched"]

log = logging.getLogger("ceir.oversight")
_ADDED = ChangeKind.WHITELIST_ADDED
BASELINES_KEPT = 4_096  # (organisation, hour) baselines cached before the cache is cleared


@dataclass(frozen=True)
class _Raised:
    organisation: str
    window_start_us: int
    registrations: int
    baseline: float
    threshold: float


@dataclass
class Watched:
    """What one write did to the rates, for after its commit."""

    raised: list[_Raised] = field(default_factory=list)
    known: list[tuple[str, int]] = field(default_factory=list)  # windows alerted already
    ratios: dict[str, float] = field(default_factory=dict)


class RateWatch:
    """The per-organisation counts and the alert rule of one register."""

    def __init__(self, rule: AlertRule | None = None, *, counting: bool = True) -> None:
        """``counting=False`` counts nothing: only for a register writing a
        database of a schema before migration 0010 (tests of migrations)."""
        self.rule = rule or AlertRule()
        self.counting = counting
        # An hour's baseline depends only on the hours before it: computed
        # once per organisation and hour.
        self._baselines: dict[tuple[str, int], float] = {}
        self._alerted: set[tuple[str, int]] = set()
        self._lock = threading.Lock()
        self._alerts_metric: Any = None
        self._ratio_metric: Any = None

    # --- in the write transaction ----------------------------------------------------

    def record(
        self, session: Session, changes: Sequence[Change], *, one_write: bool = False
    ) -> Watched | None:
        """Count the changes' registrations and store the alerts they raise.

        ``one_write``: the changes are one write's, all by one organisation
        at one time (``Register.execute``), counted without a lookup per change.
        """
        if not self.counting:
            return None
        groups = _one_write(changes) if one_write else _by_hour(changes)
        if not groups:
            return None
        watched = Watched()
        sequence = changes[-1].sequence
        for (organisation, hour), (count, first, last) in groups.items():
            total = rates.add_registrations(session, organisation, hour, count, first, last)
            baseline = self._baseline(session, organisation, hour)
            watched.ratios[organisation] = self.rule.ratio(total, baseline)
            if not self.rule.exceeded(total, baseline):
                continue
            with self._lock:
                alerted = (organisation, hour) in self._alerted
            if alerted:
                continue
            threshold = self.rule.threshold(baseline)
            stored = rates.insert_alert(
                session,
                organisation,
                hour,
                total,
                baseline,
                threshold,
                self.rule.factor,
                changes[-1].committed_at_us,
                sequence,
            )
            if stored is None:  # another server raised it
                watched.known.append((organisation, hour))
            else:
                watched.raised.append(_Raised(organisation, hour, total, baseline, threshold))
        return watched

    def _baseline(self, session: Session, organisation: str, hour: int) -> float:
        key = (organisation, hour)
        with self._lock:
            cached = self._baselines.get(key)
        if cached is not None:
            return cached
        baseline = self.rule.baseline(rates.history_total(session, organisation, hour))
        with self._lock:
            if len(self._baselines) >= BASELINES_KEPT:
                self._baselines.clear()
            self._baselines[key] = baseline
        return baseline

    # --- after the commit ------------------------------------------------------------

    def committed(self, watched: Watched | None) -> None:
        """Log and count the alerts a committed write raised."""
        if watched is None:
            return
        with self._lock:
            self._alerted.update(watched.known)
            self._alerted.update((r.organisation, r.window_start_us) for r in watched.raised)
        if self._ratio_metric is not None:
            for organisation, ratio in watched.ratios.items():
                self._ratio_metric.labels(organisation).set(ratio)
        for raised in watched.raised:
            if self._alerts_metric is not None:
                self._alerts_metric.labels(raised.organisation).inc()
            log.warning(
                "account %s had registered %d IMEIs in the hour from %s, over %.0f (%.1f x its "
                "baseline of %.1f an hour, floor %.1f): an account alert",
                raised.organisation,
                raised.registrations,
                _iso(raised.window_start_us),
                raised.threshold,
                self.rule.factor,
                raised.baseline,
                self.rule.floor,
                extra={
                    "organisation": raised.organisation,
                    "window_start_us": raised.window_start_us,
                    "window_end_us": raised.window_start_us + WINDOW_US,
                    "registrations": raised.registrations,
                    "baseline": round(raised.baseline, 3),
                    "threshold": raised.threshold,
                },
            )

    # --- metrics ---------------------------------------------------------------------

    def export(self, registry: Any) -> None:
        """The counter and gauge on a Prometheus registry (``Metrics.registry``)."""
        from prometheus_client import Counter, Gauge

        self._alerts_metric = Counter(
            "ceir_account_alerts",
            "Account alerts raised: an organisation's hourly registrations over factor x "
            "max(baseline, floor)",
            ["organisation"],
            registry=registry,
        )
        self._ratio_metric = Gauge(
            "ceir_account_registration_ratio",
            "An organisation's registrations in its latest hour over max(baseline, floor)",
            ["organisation"],
            registry=registry,
        )


def _one_write(changes: Sequence[Change]) -> dict[tuple[str, int], list[int]]:
    """The registrations of one write: (organisation, hour) -> [count, first, last]."""
    added = [change.sequence for change in changes if change.kind is _ADDED]
    if not added:
        return {}
    head = changes[0]
    return {(head.actor, window_of(head.committed_at_us)): [len(added), added[0], added[-1]]}


def _by_hour(changes: Sequence[Change]) -> dict[tuple[str, int], list[int]]:
    """The registrations of any changes (a standby's copied batch), by
    organisation and hour: -> [count, first, last]."""
    groups: dict[tuple[str, int], list[int]] = {}
    moment: tuple[str, int] | None = None  # the (actor, time) of ``group``
    group: list[int] = []
    for change in changes:
        if change.kind is not _ADDED:
            continue
        if moment is None or moment != (change.actor, change.committed_at_us):
            # A new write (consecutive changes of one write share both).
            moment = (change.actor, change.committed_at_us)
            window = (change.actor, window_of(change.committed_at_us))
            group = groups.setdefault(window, [0, change.sequence, change.sequence])
        group[0] += 1
        group[2] = change.sequence
    return groups


def _iso(micros: int) -> str:
    moment = datetime.datetime.fromtimestamp(micros / 1_000_000, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%MZ")

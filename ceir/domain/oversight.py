"""An abused account: the registration-rate alert rule and the bulk revocation's rows.

In October 2022, 191,965 IMEIs were registered in ten days through one
ministry account. The register counts each organisation's registrations
(IMEIs put on the whitelist) per clock hour of the register's time (a
*window*). A window's *baseline* is the organisation's mean hourly count
over the ``HISTORY_HOURS`` (168: seven days) before it, zero hours
included: a plain, explainable statistic that a regulator can recompute
from ``ListRegistrationsBy``. The window alerts when its count exceeds
``factor`` x max(baseline, ``floor``): the floor keeps a new or quiet
account (baseline near 0) from alerting on its first ordinary
registrations.

The bulk revocation decides each row of the set by ``outcome``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "DEFAULT_FACTOR",
    "DEFAULT_FLOOR",
    "HISTORY_HOURS",
    "WINDOW_US",
    "AccountAlert",
    "AlertRule",
    "Outcome",
    "RegistrationRow",
    "RevocationPage",
    "RevocationRow",
    "outcome",
    "window_of",
]

WINDOW_US = 3_600_000_000  # a counting window: one clock hour
HISTORY_HOURS = 168  # the baseline's history: the seven days before the window
DEFAULT_FACTOR = 10.0
DEFAULT_FLOOR = 50.0  # registrations an hour


def window_of(time_us: int) -> int:
    """The start of the hour holding ``time_us``."""
    return time_us - time_us % WINDOW_US


@dataclass(frozen=True)
class AlertRule:
    """``ceir serve --account-alert-factor`` and ``--account-alert-floor``."""

    factor: float = DEFAULT_FACTOR
    floor: float = DEFAULT_FLOOR

    def __post_init__(self) -> None:
        if not self.factor >= 1.0:
            raise ValueError(f"the account alert factor must be at least 1, got {self.factor}")
        if not self.floor >= 0.0:
            raise ValueError(f"the account alert floor must not be negative, got {self.floor}")

    @staticmethod
    def baseline(history_total: int) -> float:
        """The mean hourly count of a history of ``HISTORY_HOURS`` holding ``history_total``."""
        return history_total / HISTORY_HOURS

    def threshold(self, baseline: float) -> float:
        """The count a window must exceed to alert."""
        return self.factor * max(baseline, self.floor)

    def exceeded(self, count: int, baseline: float) -> bool:
        return count > self.threshold(baseline)

    def ratio(self, count: int, baseline: float) -> float:
        """The window's count over max(baseline, floor) (0 when both are 0)."""
        base = max(baseline, self.floor)
        return count / base if base > 0 else 0.0


@dataclass(frozen=True)
class AccountAlert:
    """One organisation's window over its threshold."""

    alert_id: int
    organisation: str
    window_start_us: int
    registrations: int  # in the window now
    registrations_at_alert: int
    baseline: float
    threshold: float
    factor: float
    raised_at_us: int
    sequence: int

    @property
    def window_end_us(self) -> int:
        return self.window_start_us + WINDOW_US


@dataclass(frozen=True)
class RegistrationRow:
    """One IMEI an organisation registered: its WHITELIST_ADDED change."""

    imei_key: int
    device_id: str
    source: int
    reference: str
    registered_at_us: int
    sequence: int
    on_whitelist: bool = False


class Outcome(enum.IntEnum):
    """What the bulk revocation did with one row (numbered as the proto's)."""

    REVOKED = 1
    ALREADY_OFF_WHITELIST = 2
    REREGISTERED_BY_OTHERS = 3
    SUPERSEDED = 4


def outcome(
    organisation: str,
    sequence: int,
    whitelisted: bool,
    latest: tuple[int, str] | None,
) -> Outcome:
    """The outcome for the registration ``sequence`` of ``organisation``,
    given whether its IMEI is whitelisted now and the IMEI's latest
    registration (sequence, organisation). Only the registration the IMEI
    is whitelisted by now is revoked."""
    if not whitelisted:
        return Outcome.ALREADY_OFF_WHITELIST
    if latest is None or latest[0] == sequence:
        return Outcome.REVOKED
    return Outcome.SUPERSEDED if latest[1] == organisation else Outcome.REREGISTERED_BY_OTHERS


@dataclass(frozen=True)
class RevocationRow:
    imei_key: int
    registration_sequence: int
    outcome: Outcome
    revocation_sequence: int = 0


@dataclass(frozen=True)
class RevocationPage:
    """One page of a bulk revocation of what ``organisation`` registered in
    [start_us, end_us): its rows and where the next starts.

    ``upper``: the register version the set was fixed at; ``after``: the
    last registration sequence of this page; ``more``: a next page exists."""

    rows: tuple[RevocationRow, ...]
    organisation: str
    start_us: int
    end_us: int | None
    upper: int
    after: int
    more: bool

    @property
    def revoked(self) -> int:
        return sum(1 for row in self.rows if row.outcome is Outcome.REVOKED)

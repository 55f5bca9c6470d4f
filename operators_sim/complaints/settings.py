"""The complaint traffic's settings and the simulated clock of the desks."""

from __future__ import annotations

from dataclasses import dataclass

HOURS_PER_DAY = 24.0


@dataclass(frozen=True)
class ComplaintSettings:
    """How many complain, how fast desks work, how subscribers answer.

    The run's traffic stands for ``days`` simulated days: a decision ``t``
    seconds into a run of ``duration`` seconds happened ``t / duration *
    days`` days in. A desk works one complaint at a time, each taking
    ``1 / capacity`` days (``capacity`` complaints a simulated day).
    """

    share: float = 0.1  # of the subscribers denied or notified, how many complain
    capacity: float = 20.0  # complaints each desk works per simulated day
    days: float = 7.0  # simulated days the run's traffic stands for
    delay_hours: float = 6.0  # mean wait from the denial to the complaint
    documents_share: float = 0.7  # bring their box / recovery note at once
    reply_share: float = 0.7  # of the others: bring them when asked
    reply_hours: float = 24.0  # mean wait for the subscriber's answer
    give_up_days: float = 5.0  # no answer by then: the desk rejects
    visa_share: float = 0.5  # expired tourists still allowed to stay (re-registered)
    drain_days: float = 30.0  # after the run: how long desks go on working
    seed: int = 1

    @property
    def enabled(self) -> bool:
        return self.share > 0

    def hours(self, run_seconds: float, duration: float) -> float:
        """Simulated hours at ``run_seconds`` into a run of ``duration`` seconds."""
        return run_seconds / max(duration, 1e-9) * self.days * HOURS_PER_DAY

    @property
    def work_hours(self) -> float:
        """How long a desk takes over one complaint (simulated hours)."""
        return HOURS_PER_DAY / self.capacity

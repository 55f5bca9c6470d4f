"""The complaint traffic's figures, as the report shows them.

Times are simulated hours from filing to closing (``settings``). A deadline
is missed when a complaint closed (or was still open at the end) later
than its category's deadline, as the register set it when it was filed;
``deadlines_missed_register`` is the register's own count
(``ListComplaints``), on its clock, which in a run of seconds rarely passes
any deadline. ``lost``, ``duplicated`` and ``state_mismatches`` compare
the register's list with what the desks were told.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .engine import CLOSED, STATE, ComplaintEngine
from .intake import CATEGORY

ERROR_EXAMPLES = 10


@dataclass(frozen=True)
class Hours:
    """p50 and p95 in simulated hours; ``None`` when nothing closed."""

    p50: float | None
    p95: float | None

    @classmethod
    def of(cls, values: list[float]) -> Hours:
        if not values:
            return cls(None, None)
        p50, p95 = np.percentile(np.array(values), [50, 95])
        return cls(round(float(p50), 1), round(float(p95), 1))


@dataclass(frozen=True)
class CategoryFigures:
    category: str
    filed: int
    resolved: int
    rejected: int
    open: int
    deadlines_missed: int
    deadline_hours: float | None  # the register's deadline for the category
    hours_to_close: Hours


@dataclass(frozen=True)
class DeskFigures:
    desk: str
    worked: int  # turns at a complaint
    resolved: int
    rejected: int
    open: int


@dataclass(frozen=True)
class ComplaintSummary:
    """Everything the report shows about the complaints of a run."""

    share: float
    capacity_per_day: float
    simulated_days: float
    subscribers_affected: int  # denied or notified, each (device slot, SIM) once
    complained: int
    filed: int
    refused_at_filing: dict[str, int]
    by_category: tuple[CategoryFigures, ...]
    by_action: dict[str, int]
    hours_to_resolve: Hours  # RESOLVED only
    hours_to_close: Hours  # RESOLVED or REJECTED
    deadlines_missed: int
    deadlines_missed_register: int
    register_caused: int  # filed complaints the register's own records caused
    register_caused_resolved: int
    register_caused_kinds: dict[str, int]
    desks: tuple[DeskFigures, ...]
    handed_on: int  # NOT_DESK_OWNER: passed to the owner's desk
    retried: int
    actions_refused: dict[str, int]
    open_at_end: int
    listed: int  # complaints the register lists
    lost: int  # filed, acknowledged, not listed
    duplicated: int
    state_mismatches: int
    errors: tuple[str, ...]
    ok: bool


def summarize_complaints(engine: ComplaintEngine) -> ComplaintSummary:
    """The figures, after ``engine.finish``; asks the register for its list."""
    cases = engine.cases
    stats = engine.stats
    listed, missed_register, duplicated = engine.register_view()
    end = engine.stats.drained_hours

    def hours(case_closed: float | None, filed: float) -> float:
        return (case_closed if case_closed is not None else end) - filed

    missed = [hours(c.closed, c.filed) > c.deadline_hours for c in cases]
    categories = []
    for value in sorted({c.grievance.category for c in cases}):
        mine = [i for i, c in enumerate(cases) if c.grievance.category == value]
        categories.append(
            CategoryFigures(
                category=CATEGORY.Name(value).removeprefix("COMPLAINT_CATEGORY_"),  # type: ignore[arg-type]
                filed=len(mine),
                resolved=sum(cases[i].state == STATE.COMPLAINT_STATE_RESOLVED for i in mine),
                rejected=sum(cases[i].state == STATE.COMPLAINT_STATE_REJECTED for i in mine),
                open=sum(cases[i].state not in CLOSED for i in mine),
                deadlines_missed=sum(missed[i] for i in mine),
                deadline_hours=round(cases[mine[0]].deadline_hours, 1) if mine else None,
                hours_to_close=Hours.of(
                    [hours(cases[i].closed, cases[i].filed) for i in mine if cases[i].closed]
                ),
            )
        )
    actions: dict[str, int] = {}
    for case in cases:
        if case.action:
            actions[case.action] = actions.get(case.action, 0) + 1
    caused = [c for c in cases if c.grievance.register_caused]
    kinds: dict[str, int] = {}
    for case in caused:
        kinds[case.grievance.kind] = kinds.get(case.grievance.kind, 0) + 1
    desks = []
    for desk in engine.desks.values():
        mine_cases = [c for c in cases if c.desks and c.desks[-1] == desk.name]
        desks.append(
            DeskFigures(
                desk=desk.name,
                worked=desk.worked,
                resolved=sum(c.state == STATE.COMPLAINT_STATE_RESOLVED for c in mine_cases),
                rejected=sum(c.state == STATE.COMPLAINT_STATE_REJECTED for c in mine_cases),
                open=sum(c.state not in CLOSED for c in mine_cases),
            )
        )
    lost = sum(c.tracking_id not in listed for c in cases)
    mismatched = sum(
        c.tracking_id in listed and listed[c.tracking_id].state != c.state for c in cases
    )
    resolved = [c for c in cases if c.state == STATE.COMPLAINT_STATE_RESOLVED]
    closed = [c for c in cases if c.closed is not None]
    settings = engine.settings
    return ComplaintSummary(
        share=settings.share,
        capacity_per_day=settings.capacity,
        simulated_days=settings.days,
        subscribers_affected=stats.candidates,
        complained=stats.grievances,
        filed=len(cases),
        refused_at_filing=dict(sorted(stats.refused_at_filing.items())),
        by_category=tuple(categories),
        by_action=dict(sorted(actions.items())),
        hours_to_resolve=Hours.of([hours(c.closed, c.filed) for c in resolved]),
        hours_to_close=Hours.of([hours(c.closed, c.filed) for c in closed]),
        deadlines_missed=sum(missed),
        deadlines_missed_register=missed_register,
        register_caused=len(caused),
        register_caused_resolved=sum(c.state == STATE.COMPLAINT_STATE_RESOLVED for c in caused),
        register_caused_kinds=dict(sorted(kinds.items())),
        desks=tuple(sorted(desks, key=lambda d: d.desk)),
        handed_on=stats.handed_on,
        retried=stats.retried,
        actions_refused=dict(sorted(stats.actions_refused.items())),
        open_at_end=sum(c.state not in CLOSED for c in cases),
        listed=len(listed),
        lost=lost,
        duplicated=duplicated,
        state_mismatches=mismatched,
        errors=tuple(stats.errors[:ERROR_EXAMPLES]),
        ok=lost == 0 and duplicated == 0 and mismatched == 0,
    )

"""Stolen-phone cases: their states, the steps between them, who may take them.

Modelled on Pakistan's DIRBS lost-and-stolen cases (Pending -> Blocked ->
Recovered) and India's CEIR (a police report, a block on every network,
alerts when the phone is used again)::

    PENDING ──> BLOCKED ──> RECOVERED
       └──────────────────────^

BLOCKED -> PENDING is refused: a block is lifted only by a recovery, which
closes the case. RECOVERED is final.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .errors import FailedPrecondition, PermissionDenied
from .model import Caller, OrgKind


class CaseState(enum.IntEnum):
    """Where a case is (the values are the proto enum's and the table's)."""

    PENDING = 1
    BLOCKED = 2
    RECOVERED = 3

    @property
    def open(self) -> bool:
        """An open case holds its IMEIs: no other case may name them."""
        return self is not CaseState.RECOVERED


OPEN_STATES = (CaseState.PENDING, CaseState.BLOCKED)

# The steps a case may take, and what each does to the lists.
TRANSITIONS: dict[tuple[CaseState, CaseState], str] = {
    (CaseState.PENDING, CaseState.BLOCKED): "block",  # ReportStolen
    (CaseState.BLOCKED, CaseState.RECOVERED): "unblock",  # ReportRecovered
    (CaseState.PENDING, CaseState.RECOVERED): "close",  # no list change
}


def require_transition(case_id: str, current: CaseState, target: CaseState) -> str:
    """What the step does ("block", "unblock", "close"); FailedPrecondition
    naming the refused step otherwise."""
    step = TRANSITIONS.get((current, target))
    if step is not None:
        return step
    message = (
        f"case {case_id} is {current.name}; it may not move to {target.name} "
        f"(allowed: {_allowed_from(current)})"
    )
    metadata = {"case_id": case_id, "from": current.name, "to": target.name}
    if (current, target) == (CaseState.BLOCKED, CaseState.PENDING):
        # A block is lifted only by a recovery, which closes the case.
        raise FailedPrecondition(
            message, reason="STOLEN_CASE_BLOCKED_TO_PENDING", metadata=metadata
        )
    raise FailedPrecondition(message, reason="STOLEN_CASE_TRANSITION_REFUSED", metadata=metadata)


def _allowed_from(current: CaseState) -> str:
    targets = [to.name for (start, to) in TRANSITIONS if start is current]
    return ", ".join(targets) or "nothing, the case is closed"


# Regulators read every case; only the reporter and Kominfo (the police's
# channel) take a case's steps.
READS_EVERY_CASE = frozenset({OrgKind.KEMENPERIN, OrgKind.KOMINFO})


@dataclass(frozen=True)
class Step:
    """One step of a case's history."""

    state: CaseState
    actor: str
    note: str
    sequence: int  # the register version its list change made; 0 for none
    at_us: int


@dataclass(frozen=True)
class StolenCase:
    """A stolen-phone case and its history, oldest step first."""

    case_id: str
    state: CaseState
    imei_keys: tuple[int, ...]
    imsi: str
    msisdn: str
    police_report: str
    reporter: str
    filed_at_us: int
    updated_at_us: int
    history: tuple[Step, ...] = ()


@dataclass(frozen=True)
class TheftAlert:
    """A blocked case's IMEI seen in a check: by whom, with which SIM, when."""

    alert_id: int
    case_id: str
    reporter: str
    imei_key: int
    imsi: str
    msisdn: str
    seen_by: str
    seen_at_us: int


def may_read(caller: Caller, case: StolenCase) -> bool:
    """The reporter reads its case; regulators read every case."""
    return caller.name == case.reporter or caller.kind in READS_EVERY_CASE


def require_may_step(caller: Caller, case: StolenCase) -> None:
    """Only the reporting organisation, or the police via Kominfo, take a case's steps."""
    if caller.name == case.reporter or caller.kind is OrgKind.KOMINFO:
        return
    raise PermissionDenied(
        f"case {case.case_id} was filed by {case.reporter}; only {case.reporter} "
        "or the police via kominfo may change it",
        reason="NOT_REPORTER",
        metadata={"case_id": case.case_id},
    )

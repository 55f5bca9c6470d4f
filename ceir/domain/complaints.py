"""The complaints desk's values and rules: categories, states, the lifecycle,
the actions each category allows, service levels and escalation, and who
owns a complaint (the desk).

Enum values equal the numbers of the matching ``ceir.v1`` enums
(``complaints.proto``), so the API layer converts by value.

The lifecycle::

    SUBMITTED -> INVESTIGATING -> WAITING_FOR_SUBSCRIBER
                      ^   |  <-------------'
                      |   +--> RESOLVED | REJECTED (a note)

RESOLVED and REJECTED are closed: nothing moves a closed complaint, not
even a desk move.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from .errors import FailedPrecondition, FieldViolation, InvalidArgument
from .model import OrgKind

__all__ = [
    "ALLOWED_ACTIONS",
    "DEFAULT_SERVICE_LEVELS",
    "OPEN_STATES",
    "REGISTER_ACTOR",
    "TRANSITIONS",
    "Category",
    "Complaint",
    "ComplaintStep",
    "Desk",
    "ResolutionAction",
    "ServiceLevels",
    "State",
    "StepKind",
    "escalation_kind",
    "format_tracking_id",
    "parse_tracking_id",
    "require_action_allowed",
    "require_transition",
]

# The actor of the register's own steps (moves, escalations).
REGISTER_ACTOR = "ceir"
HOUR_US = 3_600 * 1_000_000


class Category(enum.IntEnum):
    NO_SIGNAL = 1
    SECOND_SLOT_DEAD = 2
    WRONGLY_BLOCKED = 3
    STOLEN_OR_LOST = 4
    RECOVERED = 5
    OTHER = 6


class State(enum.IntEnum):
    SUBMITTED = 1
    INVESTIGATING = 2
    WAITING_FOR_SUBSCRIBER = 3
    RESOLVED = 4
    REJECTED = 5


class StepKind(enum.IntEnum):
    FILED = 1
    STATE_CHANGED = 2
    RESOLVED = 3
    MOVED = 4
    ESCALATED = 5


class ResolutionAction(enum.StrEnum):
    """How a complaint is resolved: each but ``NO_ACTION`` is one audited
    operation of the register (``ceir.domain.commands``)."""

    WHITELIST_SIBLING = "whitelist_sibling"  # WhitelistSibling
    PAIR_SIM = "pair_sim"  # AddException
    UNBLOCK = "unblock"  # ReportRecovered
    REGISTER_DEVICE = "register_device"  # RegisterDevice
    NO_ACTION = "no_action"  # nothing on the lists


OPEN_STATES = frozenset({State.SUBMITTED, State.INVESTIGATING, State.WAITING_FOR_SUBSCRIBER})

# Where each state may go (UpdateComplaint; ResolveComplaint is the step
# INVESTIGATING -> RESOLVED with an action).
TRANSITIONS: dict[State, frozenset[State]] = {
    State.SUBMITTED: frozenset({State.INVESTIGATING}),
    State.INVESTIGATING: frozenset({State.WAITING_FOR_SUBSCRIBER, State.RESOLVED, State.REJECTED}),
    State.WAITING_FOR_SUBSCRIBER: frozenset({State.INVESTIGATING}),
    State.RESOLVED: frozenset(),
    State.REJECTED: frozenset(),
}

_A = ResolutionAction
# What a desk may do about each category (docs/desk-agents.md has the table).
ALLOWED_ACTIONS: dict[Category, frozenset[ResolutionAction]] = {
    # Registered but no signal: a missing pairing, a device whose papers the
    # desk checked and registers, or nothing wrong on the lists.
    Category.NO_SIGNAL: frozenset({_A.PAIR_SIM, _A.REGISTER_DEVICE, _A.NO_ACTION}),
    # The classic: the box lists both slots, grandfathering registered one.
    Category.SECOND_SLOT_DEAD: frozenset({_A.WHITELIST_SIBLING, _A.PAIR_SIM, _A.NO_ACTION}),
    Category.WRONGLY_BLOCKED: frozenset(
        {_A.UNBLOCK, _A.PAIR_SIM, _A.REGISTER_DEVICE, _A.NO_ACTION}
    ),
    # Blocking goes through a stolen report (the operator's, with a police
    # report), never through a desk action.
    Category.STOLEN_OR_LOST: frozenset({_A.NO_ACTION}),
    Category.RECOVERED: frozenset({_A.UNBLOCK, _A.NO_ACTION}),
    Category.OTHER: frozenset({_A.NO_ACTION}),
}


@dataclass(frozen=True)
class ServiceLevels:
    """Hours a desk has for each category, counted from filing; and for a
    device registered by customs, hours after that registration (the
    later of the two deadlines holds: the register promises a customs
    registration works within 2 x 24 hours)."""

    hours: dict[Category, int] = field(
        default_factory=lambda: {
            Category.NO_SIGNAL: 48,
            Category.SECOND_SLOT_DEAD: 48,
            Category.WRONGLY_BLOCKED: 48,
            Category.STOLEN_OR_LOST: 24,  # India's CEIR blocks within 24 hours
            Category.RECOVERED: 48,
            Category.OTHER: 120,
        }
    )
    customs_hours: int = 48

    def deadline_us(self, category: Category, filed_at_us: int, customs_at_us: int | None) -> int:
        """When a complaint filed at ``filed_at_us`` is due; ``customs_at_us``:
        when customs registered one of its IMEIs (None: none)."""
        due = filed_at_us + self.hours[category] * HOUR_US
        if customs_at_us is not None:
            due = max(due, customs_at_us + self.customs_hours * HOUR_US)
        return due

    def with_hours(self, changes: dict[Category, int], customs_hours: int | None) -> ServiceLevels:
        """These levels with some hours changed (``ceir serve --complaint-hours``)."""
        for category, hours in changes.items():
            if hours < 1:
                raise ValueError(f"{category.name}: at least 1 hour, not {hours}")
        return ServiceLevels(
            {**self.hours, **changes},
            self.customs_hours if customs_hours is None else customs_hours,
        )


DEFAULT_SERVICE_LEVELS = ServiceLevels()


def escalation_kind(owner_kind: OrgKind | None) -> OrgKind:
    """Who a missed deadline goes to: an operator's desk (or the register's)
    to Kemenperin, Kemenperin's to the regulator, Kominfo."""
    return OrgKind.KOMINFO if owner_kind is OrgKind.KEMENPERIN else OrgKind.KEMENPERIN


@dataclass(frozen=True)
class ComplaintStep:
    """One step of a complaint's history."""

    number: int
    kind: StepKind
    at_us: int
    actor: str
    from_state: State | None
    to_state: State
    note: str = ""
    action: str = ""
    change_sequences: tuple[int, ...] = ()


@dataclass(frozen=True)
class Complaint:
    """A complaint as stored, with its history (oldest first)."""

    id: int
    category: Category
    state: State
    imei_keys: tuple[int, ...]
    imsi: str
    msisdn: str
    description: str
    filed_by: str
    owner: str
    filed_at_us: int
    deadline_us: int
    deadline_missed: bool
    escalated_to: str
    closed_at_us: int | None
    history: tuple[ComplaintStep, ...] = ()

    @property
    def tracking_id(self) -> str:
        return format_tracking_id(self.id)

    @property
    def open(self) -> bool:
        return self.state in OPEN_STATES


@dataclass(frozen=True)
class Desk:
    """Who owns complaints under the policy in force.

    ``named`` is the organisation the custody policy's ``complaints`` line
    names (or ``ceir serve --complaints-desk``); while it is an operator
    (``operators`` True) each operator's desk owns what is filed there and
    ``register_desk`` (the custodian) owns complaints about IMEIs no
    operator has seen; otherwise ``named`` owns every complaint.
    ``policy_version``: the custody policy in force (None: no custody policy).
    """

    named: str
    operators: bool
    register_desk: str
    policy_version: int | None

    def why(self) -> str:
        """Where the desk comes from, for a move's history step."""
        if self.policy_version is None:
            return "ceir serve --complaints-desk"
        return f"custody policy version {self.policy_version}"


_TRACKING = re.compile(r"C-([0-9]{6,18})")


def format_tracking_id(number: int) -> str:
    """``C-000123``: the complaint's row number, at least six digits."""
    return f"C-{number:06d}"


def parse_tracking_id(value: str, field_name: str = "tracking_id") -> int:
    """The row number of a tracking id; InvalidArgument naming the field if malformed."""
    match = _TRACKING.fullmatch(value)
    if not value:
        raise InvalidArgument.field(field_name, "is required: a tracking id such as C-000123")
    if match is None:
        raise InvalidArgument.field(
            field_name, "not a tracking id: C- and 6 or more digits, such as C-000123"
        )
    return int(match.group(1))


def require_transition(complaint: Complaint, target: State, note: str) -> None:
    """Raise FailedPrecondition unless the complaint may move to ``target`` now."""
    if target not in TRANSITIONS[complaint.state]:
        allowed = sorted(s.name for s in TRANSITIONS[complaint.state])
        raise FailedPrecondition(
            f"{complaint.tracking_id} is {complaint.state.name}: it cannot move to "
            f"{target.name} (allowed: {', '.join(allowed) or 'none, it is closed'})",
            reason="TRANSITION_NOT_ALLOWED",
            metadata={"from": complaint.state.name, "to": target.name},
        )
    if target is State.REJECTED and not note.strip():
        raise InvalidArgument.field("note", "is required to reject a complaint: say why")


def require_action_allowed(category: Category, action: ResolutionAction) -> None:
    """Raise FailedPrecondition unless the category allows the action."""
    allowed = ALLOWED_ACTIONS[category]
    if action not in allowed:
        names = ", ".join(sorted(a.value for a in allowed))
        raise FailedPrecondition(
            f"a {category.name} complaint cannot be resolved by {action.value} (allowed: {names})",
            reason="ACTION_NOT_ALLOWED_FOR_CATEGORY",
            violations=[
                FieldViolation(action.value, f"not allowed for {category.name}; allowed: {names}")
            ],
            metadata={"category": category.name, "action": action.value},
        )

"""What an operator EIR answers for one attach, and where the answer came from.

The register's answers are a status plus a tuple of reasons; the tuples that
its rules can produce are few, so a decision is one small ``Outcome`` code,
and a batch of decisions is a numpy array of them. The codes translate to
and from the ``ceir.v1`` status and reasons exactly.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ceir.v1 import types_pb2 as pb

WHITELISTED = pb.EQUIPMENT_STATUS_WHITELISTED
BLACKLISTED = pb.EQUIPMENT_STATUS_BLACKLISTED
GREYLISTED = pb.EQUIPMENT_STATUS_GREYLISTED


class Outcome(enum.IntEnum):
    """Every (status, reasons) the register's rules give, in rule order,
    plus the two answers a node forces when it cannot reach the CEIR."""

    MALFORMED = 0
    ROAMER = 1
    EXCEPTION = 2
    STOLEN = 3
    NOT_REGISTERED_GRACE_EXPIRED = 4
    REGISTRATION_EXPIRED_GRACE_EXPIRED = 5
    REGISTERED = 6
    CLONE_SUSPECTED = 7
    NOT_REGISTERED_ENFORCED = 8
    REGISTRATION_EXPIRED_ENFORCED = 9
    NOT_REGISTERED_PENDING = 10
    REGISTRATION_EXPIRED_PENDING = 11
    FORCED_ALLOW = 12
    FORCED_DENY = 13


_R = pb
OUTCOME_ANSWERS: dict[Outcome, tuple[int, tuple[int, ...]]] = {
    Outcome.MALFORMED: (BLACKLISTED, (_R.REASON_MALFORMED_IMEI,)),
    Outcome.ROAMER: (WHITELISTED, (_R.REASON_INBOUND_ROAMER,)),
    Outcome.EXCEPTION: (WHITELISTED, (_R.REASON_EXCEPTION_PAIR,)),
    Outcome.STOLEN: (BLACKLISTED, (_R.REASON_STOLEN,)),
    Outcome.NOT_REGISTERED_GRACE_EXPIRED: (
        BLACKLISTED,
        (_R.REASON_NOT_REGISTERED, _R.REASON_NOTIFICATION_EXPIRED),
    ),
    Outcome.REGISTRATION_EXPIRED_GRACE_EXPIRED: (
        BLACKLISTED,
        (_R.REASON_REGISTRATION_EXPIRED, _R.REASON_NOTIFICATION_EXPIRED),
    ),
    Outcome.REGISTERED: (WHITELISTED, (_R.REASON_REGISTERED,)),
    Outcome.CLONE_SUSPECTED: (
        GREYLISTED,
        (_R.REASON_REGISTERED, _R.REASON_DUPLICATE_SUSPECTED),
    ),
    Outcome.NOT_REGISTERED_ENFORCED: (
        BLACKLISTED,
        (_R.REASON_NOT_REGISTERED, _R.REASON_ENFORCEMENT_PHASE),
    ),
    Outcome.REGISTRATION_EXPIRED_ENFORCED: (
        BLACKLISTED,
        (_R.REASON_REGISTRATION_EXPIRED, _R.REASON_ENFORCEMENT_PHASE),
    ),
    Outcome.NOT_REGISTERED_PENDING: (
        GREYLISTED,
        (_R.REASON_NOT_REGISTERED, _R.REASON_NOTIFICATION_PENDING),
    ),
    Outcome.REGISTRATION_EXPIRED_PENDING: (
        GREYLISTED,
        (_R.REASON_REGISTRATION_EXPIRED, _R.REASON_NOTIFICATION_PENDING),
    ),
    # "allow, tracked": permitted and watched, with no reason from the lists
    Outcome.FORCED_ALLOW: (GREYLISTED, ()),
    Outcome.FORCED_DENY: (BLACKLISTED, ()),
}
_BY_ANSWER = {answer: outcome for outcome, answer in OUTCOME_ANSWERS.items()}
ALLOWED = np.array([OUTCOME_ANSWERS[o][0] != BLACKLISTED for o in sorted(Outcome)], dtype=np.bool_)
"""``ALLOWED[outcome]``: True if the outcome lets the device attach."""
PENDING_OUTCOMES = (Outcome.NOT_REGISTERED_PENDING, Outcome.REGISTRATION_EXPIRED_PENDING)


def outcome_of(status: int, reasons: tuple[int, ...]) -> Outcome:
    """The outcome of a register answer; ValueError for one its rules never give."""
    try:
        return _BY_ANSWER[(status, reasons)]
    except KeyError:
        names = ", ".join(pb.Reason.Name(r) for r in reasons)  # type: ignore[arg-type]
        raise ValueError(
            f"unexpected answer {pb.EquipmentStatus.Name(status)} [{names}]"  # type: ignore[arg-type]
        ) from None


def reason_names(outcome: Outcome) -> str:
    """The reasons of an outcome as the API names them, for people."""
    status, reasons = OUTCOME_ANSWERS[outcome]
    if not reasons:  # the two forced answers, told apart
        return f"FORCED_{'DENY' if status == BLACKLISTED else 'ALLOW'} (CEIR unreachable)"
    return "+".join(pb.Reason.Name(r).removeprefix("REASON_") for r in reasons)  # type: ignore[arg-type]


class Source(enum.IntEnum):
    """Where a node's decision came from."""

    CEIR = 0  # a live answer of the register (authorize mode)
    REPLICA = 1  # the node's replica, in sync with the feed (synchronize mode)
    CACHE = 2  # a cached register answer inside its time-to-live
    LAST_KNOWN = 3  # replica or cache while the CEIR is unreachable
    FORCED = 4  # fail-open or fail-closed while the CEIR is unreachable


@dataclass(frozen=True)
class Decision:
    """One decision: the register's answer (or a forced one) and its origin.

    ``block_date`` is Unix seconds; ``sequence`` is the register version the
    answer reflects (for a forced answer, the last one the node knew).
    """

    outcome: Outcome
    imei_key: int | None
    sequence: int
    block_date: int | None = None
    source: Source = Source.REPLICA

    @property
    def status(self) -> int:
        return OUTCOME_ANSWERS[self.outcome][0]

    @property
    def reasons(self) -> tuple[int, ...]:
        return OUTCOME_ANSWERS[self.outcome][1]

    @property
    def allowed(self) -> bool:
        return self.status != BLACKLISTED


@dataclass
class Decisions:
    """A batch of decisions as parallel arrays (block date 0 = none)."""

    outcome: npt.NDArray[np.uint8]
    block_date: npt.NDArray[np.int64]
    sequence: npt.NDArray[np.uint64]
    source: npt.NDArray[np.uint8]

    @classmethod
    def empty(cls, count: int) -> Decisions:
        return cls(
            np.zeros(count, dtype=np.uint8),
            np.zeros(count, dtype=np.int64),
            np.zeros(count, dtype=np.uint64),
            np.zeros(count, dtype=np.uint8),
        )

    def __len__(self) -> int:
        return int(self.outcome.shape[0])

    def slice(self, start: int, stop: int) -> Decisions:
        return Decisions(
            self.outcome[start:stop],
            self.block_date[start:stop],
            self.sequence[start:stop],
            self.source[start:stop],
        )

    def at(self, index: int, imei_key: int | None = None) -> Decision:
        block = int(self.block_date[index])
        return Decision(
            Outcome(int(self.outcome[index])),
            imei_key,
            int(self.sequence[index]),
            block or None,
            Source(int(self.source[index])),
        )

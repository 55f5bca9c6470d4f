"""The custody ceremony as the register stores it: a state and the documents of the handover.

``CustodyState`` numbers equal ``ceir.v1.CustodyState``'s (a test keeps them
in step). ``Ceremony`` is the one row the register keeps (``custody_ceremony``);
the policy chain and the operators' readiness are rows of their own.
Texts are signed notes as ``ceir.custody`` reads them; "" when there is none.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class CustodyState(enum.IntEnum):
    OPERATING = 1
    ANNOUNCED = 2
    READY = 3
    FROZEN = 4
    TRANSFERRED = 5
    ACTIVE = 6
    RETIRED = 7
    ABORTED = 8
    STANDBY = 9


# The states in which the register is the custodian and takes writes (ACTIVE
# only once the witnesses cosigned its first checkpoint and the outgoing
# register retired, ``Ceremony.writable``).
IN_CHARGE = frozenset(
    {CustodyState.OPERATING, CustodyState.ANNOUNCED, CustodyState.READY, CustodyState.ABORTED}
)
# The outgoing register's ceremony, from the announcement to the freeze: an
# abort note or the announced policy's expiry ends it.
ABORTABLE = frozenset({CustodyState.ANNOUNCED, CustodyState.READY, CustodyState.FROZEN})


class PendingKind(enum.StrEnum):
    """What the pending document is."""

    NONE = ""
    POLICY = "policy"
    HANDOVER = "handover"


@dataclass(frozen=True)
class Ceremony:
    """The ceremony's one stored row.

    ``version`` is the policy in force here (k); the announced one (k + 1) is
    the chain's last when ``state`` is past OPERATING. ``pending_notice_s`` is
    the notice period asked for with the proposal.
    """

    state: CustodyState
    version: int
    pending_kind: PendingKind = PendingKind.NONE
    pending_document: str = ""
    pending_notice_s: int = 0
    announced_at_us: int | None = None
    notice_ends_at_us: int | None = None
    final_size: int = 0
    final_checkpoint: str = ""
    handover: str = ""
    first_checkpoint: str = ""
    # ACTIVE: False until the first checkpoint's witness quorum is in and the
    # outgoing register confirmed its retirement (the handover's commit point).
    writable: bool = True
    abort_note: str = ""
    moved_custodian: str = ""
    moved_endpoint: str = ""
    transferred_size: int = 0
    detail: str = ""
    updated_at_us: int = 0


@dataclass(frozen=True)
class CustodyView:
    """The ceremony as GetCustody reports it (``ceir.v1.Custody``); times in Unix microseconds."""

    state: CustodyState
    policy_version: int
    policies: tuple[str, ...]
    pending_kind: str
    pending_document: str
    ready_operators: tuple[str, ...]
    waiting_operators: tuple[str, ...]
    final_size: int
    final_checkpoint: str
    handover: str
    first_checkpoint: str
    custodian: str
    endpoint: str
    transferred_size: int
    abort_note: str
    announced_at_us: int | None
    notice_ends_at_us: int | None
    expires_at_us: int | None
    detail: str


@dataclass(frozen=True)
class RemoteCustody:
    """What an incoming register reads of the outgoing one's ceremony (its GetCustody)."""

    state: CustodyState
    policies: tuple[str, ...]
    final_size: int
    final_checkpoint: str
    handover: str


@dataclass(frozen=True)
class RetireAnswer:
    """What the outgoing register answered the incoming one's Retire: its state
    afterwards (None when it could not be reached), or the refusal's reason."""

    state: CustodyState | None
    reason: str = ""
    message: str = ""

    @property
    def retired(self) -> bool:
        return self.state is CustodyState.RETIRED

"""Complaints in every state at several operators' desks, filed and worked
through the public API before the desk moves.

For each desk and each state (SUBMITTED, INVESTIGATING,
WAITING_FOR_SUBSCRIBER, RESOLVED, REJECTED) the drill files ``per_state``
complaints about IMEIs the operator has seen (a check of its own
subscriber puts an unregistered IMEI on its notification list), and walks
each to its state. One complaint about an IMEI no operator has seen goes
to the register's own desk, as the rules say.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import numpy as np

from ceir.v1 import complaints_pb2 as complaints_pb
from ceir.v1 import equipment_check_pb2 as check_pb
from ceir.v1 import equipment_check_pb2_grpc as check_grpc

from ..codec import luhn_check_digit
from ..complaints.calls import DeskCalls
from ..node import OPERATORS

STATE = complaints_pb.ComplaintState
CATEGORY = complaints_pb.ComplaintCategory
STATES = (
    STATE.COMPLAINT_STATE_SUBMITTED,
    STATE.COMPLAINT_STATE_INVESTIGATING,
    STATE.COMPLAINT_STATE_WAITING_FOR_SUBSCRIBER,
    STATE.COMPLAINT_STATE_RESOLVED,
    STATE.COMPLAINT_STATE_REJECTED,
)
CATEGORIES = (
    CATEGORY.COMPLAINT_CATEGORY_NO_SIGNAL,
    CATEGORY.COMPLAINT_CATEGORY_SECOND_SLOT_DEAD,
    CATEGORY.COMPLAINT_CATEGORY_WRONGLY_BLOCKED,
    CATEGORY.COMPLAINT_CATEGORY_STOLEN_OR_LOST,
    CATEGORY.COMPLAINT_CATEGORY_OTHER,
)
CLOSED = (STATE.COMPLAINT_STATE_RESOLVED, STATE.COMPLAINT_STATE_REJECTED)


def state_name(state: int) -> str:
    return STATE.Name(state).removeprefix("COMPLAINT_STATE_")  # type: ignore[arg-type]


@dataclass(frozen=True)
class Filed:
    """A complaint the drill filed: where, and the state it was walked to."""

    tracking_id: str
    desk: str  # the organisation that filed it
    state: int


class Subscribers:
    """IMEIs and IMSIs for the drill, deterministic from a seed."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.serial = int(self.rng.integers(0, 500_000))

    def imei(self) -> str:
        self.serial += 1
        digits = f"86{self.serial:012d}"
        return digits + str(luhn_check_digit(digits))

    def imsi(self, operator: str) -> str:
        mcc_mnc = next(op for op in OPERATORS if op.name == operator).mcc_mncs[0]
        return mcc_mnc.replace("-", "") + f"{int(self.rng.integers(0, 10**10)):010d}"


def seen_by(
    channel: grpc.Channel, metadata: tuple[tuple[str, str], ...], imei: str, imsi: str
) -> None:
    """The operator checks the IMEI with its subscriber's IMSI (the register
    records the sighting: a notification in the notify phase)."""
    check_grpc.EquipmentCheckServiceStub(channel).CheckEquipment(
        check_pb.CheckEquipmentRequest(imei=imei, imsi=imsi),
        metadata=metadata,
        timeout=30,
    )


def walk(calls: DeskCalls, tracking_id: str, state: int, prefix: str) -> None:
    """Work a SUBMITTED complaint into ``state`` as its desk would."""
    investigating = STATE.COMPLAINT_STATE_INVESTIGATING
    if state == STATE.COMPLAINT_STATE_SUBMITTED:
        return
    calls.update(f"{prefix}-1", tracking_id, investigating, "diagnosed")
    if state == STATE.COMPLAINT_STATE_WAITING_FOR_SUBSCRIBER:
        calls.update(f"{prefix}-2", tracking_id, state, "bring the box listing both IMEIs")
    elif state == STATE.COMPLAINT_STATE_RESOLVED:
        request = complaints_pb.ResolveComplaintRequest(
            request_id=f"{prefix}-2",
            tracking_id=tracking_id,
            note="works again after a restart of the handset",
        )
        request.no_action.SetInParent()
        calls.resolve(request)
    elif state == STATE.COMPLAINT_STATE_REJECTED:
        calls.update(f"{prefix}-2", tracking_id, state, "not registered; no documents")


def file_one(
    calls: DeskCalls, request_id: str, imei: str, imsi: str, category: int
) -> complaints_pb.Complaint:
    return calls.file(
        complaints_pb.FileComplaintRequest(
            request_id=request_id,
            imeis=[imei],
            imsi=imsi,
            category=category,  # type: ignore[arg-type]
            description="filed by the desk-move drill",
        )
    )

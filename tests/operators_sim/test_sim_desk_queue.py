"""The desks' queues in simulated time (``operators_sim.complaints.engine``),
with a fake desk service standing in for the register: one complaint at a
time per desk, ``1 / capacity`` days each, oldest first; a complaint another
desk owns goes to that desk. (The real register's side is exercised by
test_sim_complaints and the desk-move drill.)"""

from __future__ import annotations

from typing import Any

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from ceir.v1 import complaints_pb2 as complaints_pb
from ceir.v1 import types_pb2 as pb
from operators_sim.complaints.calls import NOT_DESK_OWNER, Refused
from operators_sim.complaints.engine import ComplaintEngine
from operators_sim.complaints.intake import CATEGORY, Grievance
from operators_sim.complaints.settings import ComplaintSettings
from operators_sim.population import generate
from operators_sim.truth import Truth

STATE = complaints_pb.ComplaintState


class FakeAdmin:
    def __init__(self) -> None:
        self.run_id = "t"
        self.credentials = {"telkomsel": None, "kemenperin": None, "kominfo": None}

    def channel_for(self, org: str) -> Any:
        return None

    def metadata(self, org: str) -> tuple[tuple[str, str], ...]:
        return ()


class FakeDesk:
    """Complaints as a register would keep them, owned by ``owner``."""

    def __init__(self, owners: dict[str, str], moved_to: str = "") -> None:
        self.owners = owners  # tracking id -> owner
        self.states: dict[str, int] = {}
        self.moved_to = moved_to
        self.calls_by: list[tuple[str, str]] = []

    def file(self, org: str, request: complaints_pb.FileComplaintRequest) -> Any:
        tracking = f"C-{len(self.owners) + 1:06d}"
        self.owners[tracking] = org
        self.states[tracking] = STATE.COMPLAINT_STATE_SUBMITTED
        complaint = complaints_pb.Complaint(
            tracking_id=tracking, owner=org, state=STATE.COMPLAINT_STATE_SUBMITTED
        )
        complaint.file_time.CopyFrom(Timestamp(seconds=0))
        complaint.deadline.CopyFrom(Timestamp(seconds=48 * 3600))
        return complaint

    def write(self, org: str, tracking: str, state: int) -> Any:
        self.calls_by.append((org, tracking))
        if self.moved_to and org != self.moved_to:
            self.owners[tracking] = self.moved_to
            raise Refused("FAILED_PRECONDITION", NOT_DESK_OWNER, {"owner": self.moved_to}, "")
        self.states[tracking] = state
        return complaints_pb.Complaint(tracking_id=tracking, owner=org, state=state)  # type: ignore[arg-type]


class Calls:
    def __init__(self, desk: FakeDesk, org: str) -> None:
        self.desk, self.org = desk, org

    def file(self, request: complaints_pb.FileComplaintRequest) -> Any:
        return self.desk.file(self.org, request)

    def diagnose(self, imei: str, imsi: str = "") -> Any:
        return complaints_pb.DiagnoseImeiResponse(status=pb.EQUIPMENT_STATUS_BLACKLISTED)

    def update(self, request_id: str, tracking_id: str, state: int, note: str) -> Any:
        return self.desk.write(self.org, tracking_id, state)


def _engine(desk: FakeDesk, capacity: float) -> ComplaintEngine:
    population = generate(50, 1)
    engine = ComplaintEngine(
        FakeAdmin(),  # type: ignore[arg-type]
        population,
        Truth(population, pb.PHASE_ENFORCE),
        ComplaintSettings(share=1.0, capacity=capacity, days=1.0),
        ("telkomsel",),
        10.0,
        lambda: [],
    )
    engine.calls = lambda org: Calls(desk, org)  # type: ignore[method-assign, assignment, return-value]
    return engine


def _grievance(device: int, arrival: float) -> Grievance:
    return Grievance(
        device=device,
        slot=0,
        sim=device,
        operator="telkomsel",
        category=CATEGORY.COMPLAINT_CATEGORY_OTHER,
        imeis=("353281110000018",),
        imsi="510100000000001",
        msisdn="628100000001",
        arrival=arrival,
        documents=False,
        replies=False,
        kind="black_market",
        register_caused=False,
        denied=True,
    )


def test_a_desk_works_one_complaint_at_a_time_oldest_first() -> None:
    desk = FakeDesk({})
    engine = _engine(desk, capacity=24.0)  # an hour a complaint
    for device, arrival in ((1, 0.0), (2, 0.5), (3, 0.25)):
        engine._schedule(arrival, "arrive", _grievance(device, arrival))
    engine._advance(100.0)
    closed = {case.grievance.device: case.closed for case in engine.cases}
    assert closed == {1: 1.0, 3: 2.0, 2: 3.0}  # turns at 0, 1 and 2 h, an hour each
    assert all(case.state == STATE.COMPLAINT_STATE_REJECTED for case in engine.cases)
    assert engine.desks["telkomsel"].worked == 3


def test_a_complaint_another_desk_owns_goes_to_that_desk() -> None:
    desk = FakeDesk({}, moved_to="kemenperin")
    engine = _engine(desk, capacity=24.0)
    engine._schedule(0.0, "arrive", _grievance(1, 0.0))
    engine._advance(100.0)
    (case,) = engine.cases
    assert engine.stats.handed_on == 1
    assert case.desks == ["telkomsel", "kemenperin"]
    assert case.state == STATE.COMPLAINT_STATE_REJECTED
    assert desk.calls_by[-1][0] == "kemenperin"
    assert np.isclose(case.closed or 0.0, 1.0)  # Kemenperin's idle desk took it up at once

"""The complaints desk across the drill's handover, through the public API.

Before the ceremony Telkomsel's desk files a complaint in every state on
its register; at the end the drill reads every complaint (as Kominfo, which
reads them all) from the custodian at the end, and counts those lost,
doubled or changed: a complaint keeps its tracking id, what was filed, its
deadline and its history (a desk move may add a MOVED step and change the
owner of an open one; a closed one stays exactly as it was).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from ceir.v1 import complaints_pb2 as pb
from ceir.v1 import complaints_pb2_grpc

__all__ = ["CarriedComplaints", "compare", "file_every_state", "read_all"]

_OTHER = pb.COMPLAINT_CATEGORY_OTHER
_STEPS: dict[str, list[tuple[pb.ComplaintState.ValueType, str]]] = {
    "submitted": [],
    "investigating": [(pb.COMPLAINT_STATE_INVESTIGATING, "")],
    "waiting": [
        (pb.COMPLAINT_STATE_INVESTIGATING, ""),
        (pb.COMPLAINT_STATE_WAITING_FOR_SUBSCRIBER, "box asked for"),
    ],
    "resolved": [
        (pb.COMPLAINT_STATE_INVESTIGATING, ""),
        (pb.COMPLAINT_STATE_RESOLVED, "fixed by the network"),
    ],
    "rejected": [
        (pb.COMPLAINT_STATE_INVESTIGATING, ""),
        (pb.COMPLAINT_STATE_REJECTED, "not a register problem"),
    ],
}
_CLOSED = (pb.COMPLAINT_STATE_RESOLVED, pb.COMPLAINT_STATE_REJECTED)


def file_every_state(channel: grpc.Channel, imeis: Sequence[str], run_id: str) -> list[str]:
    """File one complaint per state on the register behind ``channel`` (an
    operator's desk) and work it to that state; their tracking ids."""
    stub = complaints_pb2_grpc.ComplaintServiceStub(channel)
    made = []
    for (name, steps), value in zip(_STEPS.items(), imeis, strict=False):
        request = pb.FileComplaintRequest(
            request_id=f"{run_id}-file-{name}",
            imeis=[value],
            category=_OTHER,
            description=f"drill: a complaint left {name}",
        )
        tracking_id = stub.FileComplaint(request, timeout=10).complaint.tracking_id
        for number, (state, note) in enumerate(steps):
            update = pb.UpdateComplaintRequest(
                request_id=f"{run_id}-update-{name}-{number}",
                tracking_id=tracking_id,
                state=state,
                note=note,
            )
            stub.UpdateComplaint(update, timeout=10)
        made.append(tracking_id)
    return made


def read_all(channel: grpc.Channel) -> list[pb.Complaint]:
    """Every complaint the caller reads, every page."""
    stub = complaints_pb2_grpc.ComplaintServiceStub(channel)
    found: list[pb.Complaint] = []
    token = ""
    while True:
        page = stub.ListComplaints(
            pb.ListComplaintsRequest(page_size=1000, page_token=token), timeout=30
        )
        found.extend(page.complaints)
        token = page.next_page_token
        if not token:
            return found


@dataclass(frozen=True)
class CarriedComplaints:
    """The complaints filed before the ceremony, as found after it."""

    filed: int
    lost: int
    doubled: int
    changed: int


def compare(before: Sequence[pb.Complaint], after: Sequence[pb.Complaint]) -> CarriedComplaints:
    """How the complaints ``before`` the ceremony fared in the listing ``after`` it."""
    times = Counter(c.tracking_id for c in after)
    found = {c.tracking_id: c for c in after}
    lost = doubled = changed = 0
    for was in before:
        now = found.get(was.tracking_id)
        if now is None:
            lost += 1
            continue
        doubled += times[was.tracking_id] > 1
        changed += not _kept(was, now)
    return CarriedComplaints(len(before), lost, doubled, changed)


def _kept(was: pb.Complaint, now: pb.Complaint) -> bool:
    if was.state in _CLOSED:
        return now == was
    added = now.history[len(was.history) :]
    moved = all(step.kind == pb.COMPLAINT_STEP_KIND_MOVED for step in added)
    same = (
        was.category,
        list(was.imei_keys),
        was.description,
        was.filed_by,
        was.file_time,
        was.deadline,
        was.state,
    ) == (
        now.category,
        list(now.imei_keys),
        now.description,
        now.filed_by,
        now.file_time,
        now.deadline,
        now.state,
    )
    return same and moved and list(now.history[: len(was.history)]) == list(was.history)

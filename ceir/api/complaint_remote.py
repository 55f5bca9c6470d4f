"""Reading the outgoing register's complaints at a handover
(``ceir.service.complaint_carry``), over the standby's channel.

The incoming register pages the public ``ListComplaints`` as the incoming
custodian's organisation (a regulator, which reads every complaint and
every subscriber), asking on the last page for the outgoing's own count and
digest, and converts each message back to the domain's ``Complaint``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from ceir.domain.complaints import (
    Category,
    Complaint,
    ComplaintStep,
    State,
    StepKind,
    parse_tracking_id,
)
from ceir.domain.errors import FailedPrecondition, InvalidArgument
from ceir.service.complaint_carry import OutgoingComplaints
from ceir.v1 import complaints_pb2 as pb
from ceir.v1 import complaints_pb2_grpc

from .convert import micros

__all__ = ["PAGE_SIZE", "from_message", "remote_complaints"]

PAGE_SIZE = 1_000  # ListComplaints' largest page


def remote_complaints(
    channel: grpc.Channel, metadata: tuple[tuple[str, str], ...] = ()
) -> Callable[[float], OutgoingComplaints]:
    """Reads every complaint of the register at the other end of ``channel``,
    with its count and digest, within ``timeout`` seconds in all."""
    stub = complaints_pb2_grpc.ComplaintServiceStub(channel)

    def fetch(timeout: float) -> OutgoingComplaints:
        deadline = time.monotonic() + max(timeout, 1.0)
        fetched: list[Complaint] = []
        token = ""
        while True:
            request = pb.ListComplaintsRequest(
                page_size=PAGE_SIZE, page_token=token, include_digest=True
            )
            try:
                page = stub.ListComplaints(
                    request,
                    timeout=max(deadline - time.monotonic(), 1.0),
                    metadata=metadata,
                    wait_for_ready=True,
                )
            except grpc.RpcError as error:
                raise FailedPrecondition(
                    "cannot read the custodian's complaints: "
                    f"{error.code().name} {error.details()}",
                    reason="COMPLAINTS_UNREADABLE",
                    retry_after=1.0,
                ) from None
            fetched.extend(_converted(message) for message in page.complaints)
            token = page.next_page_token
            if not token:
                return OutgoingComplaints(tuple(fetched), page.total_size, page.digest)

    return fetch


def _converted(message: pb.Complaint) -> Complaint:
    try:
        return from_message(message)
    except (ValueError, InvalidArgument) as error:
        raise FailedPrecondition(
            f"the custodian sent a complaint this register cannot store "
            f"({message.tracking_id!r}): {error}",
            reason="COMPLAINTS_UNREADABLE",
        ) from None


def _at(stamp: Timestamp) -> int:
    value = micros(stamp, True)
    assert value is not None
    return value


def from_message(message: pb.Complaint) -> Complaint:
    """The domain complaint a ``Complaint`` message states (the inverse of
    ``complaint_requests.complaint``); ValueError or InvalidArgument if it
    states something no register stores."""
    history = tuple(
        ComplaintStep(
            number=step.number,
            kind=StepKind(step.kind),
            at_us=_at(step.step_time),
            actor=step.actor,
            from_state=State(step.from_state) if step.from_state else None,
            to_state=State(step.to_state),
            note=step.note,
            action=step.action,
            change_sequences=tuple(step.change_sequences),
        )
        for step in message.history
    )
    return Complaint(
        id=parse_tracking_id(message.tracking_id),
        category=Category(message.category),
        state=State(message.state),
        imei_keys=tuple(int(key) for key in message.imei_keys),
        imsi=message.imsi,
        msisdn=message.msisdn,
        description=message.description,
        filed_by=message.filed_by,
        owner=message.owner,
        filed_at_us=_at(message.file_time),
        deadline_us=_at(message.deadline),
        deadline_missed=message.deadline_missed,
        escalated_to=message.escalated_to,
        closed_at_us=micros(message.close_time, message.HasField("close_time")),
        history=history,
    )

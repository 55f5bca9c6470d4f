"""The parts of carrying the complaints desk across a handover that need no
second register (the handover itself: tests/custody/test_handover_complaints.py):
the outgoing's count and digest in ListComplaints, the incoming's checks of
what it fetched, and storing a copy with its own tracking numbers on SQLite
and PostgreSQL, the next number continuing after the highest."""

from __future__ import annotations

import dataclasses

import grpc
import pytest

from ceir.domain.complaint_digest import digest_of
from ceir.domain.complaints import Category, Complaint, ComplaintStep, State, StepKind
from ceir.domain.errors import FailedPrecondition
from ceir.service import complaint_carry
from ceir.service.complaint_carry import OutgoingComplaints
from ceir.storage import complaint_repository as complaints_repo
from ceir.storage.database import Database
from ceir.v1 import complaints_pb2 as pb

from .custody.ceremony import error_info, refused
from .helpers import Client, imei
from .test_complaints import NO_SIGNAL, file


def complaint(number: int, state: State = State.SUBMITTED, note: str = "") -> Complaint:
    filed = ComplaintStep(1, StepKind.FILED, 1_000 * number, "telkomsel", None, State.SUBMITTED)
    history = [filed]
    if state is not State.SUBMITTED:
        history.append(
            ComplaintStep(
                2,
                StepKind.STATE_CHANGED,
                2_000 * number,
                "telkomsel",
                State.SUBMITTED,
                state,
                note,
                "",
                (7, 9),
            )
        )
    return Complaint(
        id=number,
        category=Category.NO_SIGNAL,
        state=state,
        imei_keys=(35209900000000 + number,),
        imsi="510101234567890",
        msisdn="628111",
        description=f"complaint {number} ✓",
        filed_by="telkomsel",
        owner="telkomsel",
        filed_at_us=1_000 * number,
        deadline_us=9_000_000 + number,
        deadline_missed=number % 2 == 0,
        escalated_to="kemenperin" if number % 2 == 0 else "",
        closed_at_us=None,
        history=tuple(history),
    )


def outgoing(complaints: list[Complaint]) -> OutgoingComplaints:
    total, digest = digest_of(sorted(complaints, key=lambda c: c.id))
    return OutgoingComplaints(tuple(complaints), total, digest)


def test_the_digest_is_only_for_those_who_read_every_complaint(
    clients: dict[str, Client],
) -> None:
    request = pb.ListComplaintsRequest(include_digest=True)
    xl = clients["xl"]
    denied = refused(xl.call, xl.complaints.ListComplaints, request)
    assert denied.code() is grpc.StatusCode.PERMISSION_DENIED
    assert error_info(denied)[0] == "DIGEST_NOT_ALLOWED"
    file(xl, imei(1), category=NO_SIGNAL)
    file(xl, imei(2), category=NO_SIGNAL)
    kominfo = clients["kominfo"]
    first = kominfo.call(
        kominfo.complaints.ListComplaints,
        pb.ListComplaintsRequest(include_digest=True, page_size=1),
    )
    assert first.next_page_token and (first.total_size, first.digest) == (0, "")
    last = kominfo.call(
        kominfo.complaints.ListComplaints,
        pb.ListComplaintsRequest(
            include_digest=True, page_size=1, page_token=first.next_page_token
        ),
    )
    assert last.total_size == 2 and len(last.digest) == 64
    plain = kominfo.call(kominfo.complaints.ListComplaints, pb.ListComplaintsRequest())
    assert (plain.total_size, plain.digest) == (0, "")  # not asked for


def test_a_copy_with_a_complaint_dropped_doubled_or_changed_is_refused() -> None:
    held = [complaint(1), complaint(2, State.INVESTIGATING, "looking"), complaint(3)]
    complaint_carry.check(outgoing(held))
    stated = outgoing(held)
    cases = {
        "dropped": held[:2],
        "doubled": [*held, held[1]],
        "changed": [held[0], dataclasses.replace(held[1], deadline_us=1), held[2]],
        "history": [held[0], dataclasses.replace(held[1], history=held[1].history[:1]), held[2]],
    }
    for name, fetched in cases.items():
        with pytest.raises(FailedPrecondition) as caught:
            complaint_carry.check(dataclasses.replace(stated, complaints=tuple(fetched)))
        assert caught.value.reason == "COMPLAINTS_DIFFER", name


def test_a_copy_is_stored_with_its_numbers_and_the_next_number_follows(db_url: str) -> None:
    db = Database(db_url)
    db.migrate()
    try:
        stale = [complaint(2)]
        copied = [complaint(4, State.INVESTIGATING, "x"), complaint(7), complaint(12)]
        with db.write() as session:
            complaints_repo.replace_all(session, stale)
        for _ in range(2):  # idempotent: the same copy twice holds it once
            with db.write() as session:
                complaint_carry.store(session, outgoing(copied))
        with db.read() as connection:
            assert complaints_repo.page(connection, None, None, 0, 100) == copied
        with db.write() as session:
            row = dict(
                category=1,
                state=1,
                imei_keys="1",
                imsi="",
                msisdn="",
                description="",
                filed_by="xl",
                owner="xl",
                filed_at_us=1,
                deadline_us=2,
                deadline_missed=0,
                escalated_to="",
                closed_at_us=None,
                updated_at_us=1,
            )
            assert complaints_repo.insert_complaint(session, row) == 13
    finally:
        db.dispose()

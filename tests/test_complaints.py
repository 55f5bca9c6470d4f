"""The complaints desk through a real server, on SQLite and PostgreSQL:
filing, the lifecycle and its refused transitions, every resolution action
with its change linked in the history and in the feed, failed resolutions
that write nothing, idempotent retries."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from ceir.api.server import RunningServer
from ceir.domain.errors import WritesRefused
from ceir.v1 import complaints_pb2 as pb
from ceir.v1 import list_sync_pb2, registry_pb2, types_pb2

from .helpers import INDOSAT_IMSI, TELKOMSEL_IMSI, Client, error_reason, imei, violations

NO_SIGNAL = pb.COMPLAINT_CATEGORY_NO_SIGNAL
SECOND_SLOT = pb.COMPLAINT_CATEGORY_SECOND_SLOT_DEAD
WRONGLY_BLOCKED = pb.COMPLAINT_CATEGORY_WRONGLY_BLOCKED
INVESTIGATING = pb.COMPLAINT_STATE_INVESTIGATING
WAITING = pb.COMPLAINT_STATE_WAITING_FOR_SUBSCRIBER
RESOLVED = pb.COMPLAINT_STATE_RESOLVED
REJECTED = pb.COMPLAINT_STATE_REJECTED
GRANDFATHERED = types_pb2.REGISTRATION_SOURCE_GRANDFATHERED


def file(client: Client, *imeis: str, category: Any = NO_SIGNAL, **fields: Any) -> pb.Complaint:
    request = pb.FileComplaintRequest(imeis=list(imeis), category=category, **fields)
    return client.call(client.complaints.FileComplaint, request).complaint


def update(client: Client, tracking_id: str, state: Any, note: str = "", **kw: Any) -> pb.Complaint:
    request = pb.UpdateComplaintRequest(tracking_id=tracking_id, state=state, note=note, **kw)
    return client.call(client.complaints.UpdateComplaint, request).complaint


def resolve(client: Client, tracking_id: str, **action: Any) -> pb.ResolveComplaintResponse:
    request = pb.ResolveComplaintRequest(tracking_id=tracking_id, note="done", **action)
    return client.call(client.complaints.ResolveComplaint, request)


def get(client: Client, tracking_id: str) -> pb.Complaint:
    request = pb.GetComplaintRequest(tracking_id=tracking_id)
    return client.call(client.complaints.GetComplaint, request).complaint


def seen_device(telkomsel: Client, *slots: str) -> None:
    """A grandfathered device: telkomsel's dump, so an operator has seen it."""
    telkomsel.register(*slots, source=GRANDFATHERED, reference="dump-2020-09")


def head(client: Client) -> int:
    snapshot = client.call(client.sync.GetSnapshot, list_sync_pb2.GetSnapshotRequest())
    for message in snapshot:
        return int(message.sequence)
    raise AssertionError("an empty snapshot")


def feed(client: Client, after: int) -> list[types_pb2.ListChange]:
    """The changes after ``after`` as the change feed sends them."""
    stream = client.call(
        client.sync.WatchChanges, list_sync_pb2.WatchChangesRequest(after_sequence=after)
    )
    try:
        for message in stream:
            return list(message.changes)
    finally:
        stream.cancel()  # type: ignore[no-untyped-call]
    return []


def failure(call: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def test_filing_gives_a_tracking_id_and_the_lifecycle_refuses_other_steps(
    clients: dict[str, Client],
) -> None:
    telkomsel = clients["telkomsel"]
    seen_device(telkomsel, imei(1))
    complaint = file(telkomsel, imei(1), imsi=TELKOMSEL_IMSI, msisdn="+628111234567")
    assert complaint.tracking_id == "C-000001"
    assert complaint.owner == "telkomsel" and complaint.filed_by == "telkomsel"
    assert complaint.state == pb.COMPLAINT_STATE_SUBMITTED
    assert complaint.msisdn == "628111234567"
    tid = complaint.tracking_id
    # SUBMITTED -> RESOLVED skips the investigation.
    error = failure(lambda: update(telkomsel, tid, RESOLVED, "quick"))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(error) == "TRANSITION_NOT_ALLOWED"
    assert "SUBMITTED" in (error.details() or "") and "RESOLVED" in (error.details() or "")
    update(telkomsel, tid, INVESTIGATING, "looking at the lists")
    update(telkomsel, tid, WAITING, "asked for the box")
    update(telkomsel, tid, INVESTIGATING, "box received")
    error = failure(lambda: update(telkomsel, tid, REJECTED))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in violations(error)] == ["note"]
    done = update(telkomsel, tid, REJECTED, "the phone is a black-market import")
    assert done.state == REJECTED and done.HasField("close_time")
    steps = [(s.actor, s.from_state, s.to_state, s.note) for s in done.history]
    assert steps[1:] == [
        ("telkomsel", pb.COMPLAINT_STATE_SUBMITTED, INVESTIGATING, "looking at the lists"),
        ("telkomsel", INVESTIGATING, WAITING, "asked for the box"),
        ("telkomsel", WAITING, INVESTIGATING, "box received"),
        ("telkomsel", INVESTIGATING, REJECTED, "the phone is a black-market import"),
    ]
    # A closed complaint goes nowhere.
    error = failure(lambda: update(telkomsel, tid, INVESTIGATING))
    assert error_reason(error) == "TRANSITION_NOT_ALLOWED"
    assert len(get(telkomsel, tid).history) == 5


def test_an_imei_no_operator_has_seen_goes_to_the_registers_desk(
    clients: dict[str, Client],
) -> None:
    indosat, telkomsel = clients["indosat"], clients["telkomsel"]
    complaint = file(indosat, imei(7), imsi=INDOSAT_IMSI)
    # The register's own desk: without a custody policy, --complaints-desk (telkomsel).
    assert complaint.owner == "telkomsel"
    assert "no operator has seen" in complaint.history[0].note
    error = failure(lambda: update(indosat, complaint.tracking_id, INVESTIGATING))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(error) == "NOT_DESK_OWNER"
    assert "telkomsel" in (error.details() or "")
    # The filing desk still reads it; the owning desk reads the subscriber
    # it must reach.
    assert get(indosat, complaint.tracking_id).imsi == INDOSAT_IMSI
    assert get(telkomsel, complaint.tracking_id).imsi == INDOSAT_IMSI
    # xl neither owns nor filed it.
    error = failure(lambda: get(clients["xl"], complaint.tracking_id))
    assert error.code() is grpc.StatusCode.NOT_FOUND
    # Once an operator's check has seen it (a notification), the operator's desk owns it.
    indosat.check_imei(imei(7), imsi=INDOSAT_IMSI)
    assert file(indosat, imei(7), imsi=INDOSAT_IMSI).owner == "indosat"


def test_whitelisting_a_dead_second_slot_links_the_change(
    clients: dict[str, Client],
) -> None:
    telkomsel = clients["telkomsel"]
    first, second = imei(10), imei(11)
    seen_device(telkomsel, first)
    assert telkomsel.check_imei(second).status != types_pb2.EQUIPMENT_STATUS_WHITELISTED
    complaint = file(telkomsel, first, second, category=SECOND_SLOT, imsi=TELKOMSEL_IMSI)
    update(telkomsel, complaint.tracking_id, INVESTIGATING, "box lists both IMEIs")
    before = head(telkomsel)
    done = resolve(
        telkomsel,
        complaint.tracking_id,
        whitelist_sibling=pb.WhitelistSibling(
            imei=second, registered_imei=first, box_reference="box photo 55"
        ),
    )
    last = done.complaint.history[-1]
    assert done.complaint.state == RESOLVED
    assert last.kind == pb.COMPLAINT_STEP_KIND_RESOLVED and last.action == "whitelist_sibling"
    # The slot was checked (notified) before: its registration ends that too.
    assert list(last.change_sequences) == [before + 1, before + 2]
    assert done.sequence == before + 2
    changes = feed(telkomsel, before)
    assert [c.sequence for c in changes] == [before + 1, before + 2]
    added, ended = changes
    assert added.kind == types_pb2.CHANGE_KIND_WHITELIST_ADDED
    assert ended.kind == types_pb2.CHANGE_KIND_NOTIFICATION_RESOLVED
    assert added.imei_key == second[:14] and added.actor == "telkomsel"
    assert added.source == GRANDFATHERED
    assert complaint.tracking_id in added.reference and "box photo 55" in added.reference
    assert telkomsel.check_imei(second).status == types_pb2.EQUIPMENT_STATUS_WHITELISTED


def test_a_sibling_must_look_like_a_dead_second_slot(clients: dict[str, Client]) -> None:
    """Another TAC, or a registration that already holds two slots: refused,
    nothing written, so a desk cannot whitelist any IMEI by naming a phone."""
    telkomsel = clients["telkomsel"]
    first = imei(60)
    seen_device(telkomsel, first)
    foreign_tac = imei(61, tac=86000000)
    complaint = file(telkomsel, first, foreign_tac, category=SECOND_SLOT, imsi=TELKOMSEL_IMSI)
    tid = complaint.tracking_id
    update(telkomsel, tid, INVESTIGATING, "box?")
    sequence = head(telkomsel)
    sibling = pb.WhitelistSibling(imei=foreign_tac, registered_imei=first, box_reference="b")
    error = failure(lambda: resolve(telkomsel, tid, whitelist_sibling=sibling))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(error) == "SIBLING_TAC_DIFFERS"
    assert [f for f, _ in violations(error)] == ["whitelist_sibling.imei"]
    _unchanged(telkomsel, tid, sequence, 2)
    # A two-slot registration has no slot left to whitelist.
    telkomsel.call(
        telkomsel.registry.RegisterDevice,
        registry_pb2.RegisterDeviceRequest(
            request_id="two-slots",
            device=registry_pb2.DeviceRegistration(
                imeis=[imei(62), imei(63)],
                source=types_pb2.REGISTRATION_SOURCE_GRANDFATHERED,
                reference="dump",
            ),
        ),
    )
    other = file(telkomsel, imei(62), imei(64), category=SECOND_SLOT, imsi=TELKOMSEL_IMSI)
    update(telkomsel, other.tracking_id, INVESTIGATING, "box?")
    sequence = head(telkomsel)
    third = pb.WhitelistSibling(imei=imei(64), registered_imei=imei(62), box_reference="b")
    error = failure(lambda: resolve(telkomsel, other.tracking_id, whitelist_sibling=third))
    assert error_reason(error) == "SIBLING_NOT_SINGLE_SLOT"
    _unchanged(telkomsel, other.tracking_id, sequence, 2)


def _investigating(client: Client, *imeis: str, category: Any, **fields: Any) -> str:
    complaint = file(client, *imeis, category=category, **fields)
    update(client, complaint.tracking_id, INVESTIGATING, "on it")
    return complaint.tracking_id


def test_pairing_unblocking_and_registering_resolve_through_the_register(
    clients: dict[str, Client],
) -> None:
    telkomsel = clients["telkomsel"]
    seen_device(telkomsel, imei(20))
    # Pair: the existing AddException.
    tid = _investigating(telkomsel, imei(20), category=NO_SIGNAL, imsi=TELKOMSEL_IMSI)
    before = head(telkomsel)
    done = resolve(telkomsel, tid, pair_sim=pb.PairSim(imei=imei(20), imsi=TELKOMSEL_IMSI))
    (change,) = feed(telkomsel, before)
    assert change.kind == types_pb2.CHANGE_KIND_EXCEPTION_ADDED
    assert list(done.complaint.history[-1].change_sequences) == [change.sequence]
    # Unblock: the existing ReportRecovered, after a stolen report.
    telkomsel.call(
        telkomsel.registry.ReportStolen,
        registry_pb2.ReportStolenRequest(
            imeis=[imei(20)], police_report="LP/1/2020", subscriber_imsi=TELKOMSEL_IMSI
        ),
    )
    tid = _investigating(
        telkomsel, imei(20), category=pb.COMPLAINT_CATEGORY_RECOVERED, imsi=TELKOMSEL_IMSI
    )
    before = head(telkomsel)
    done = resolve(telkomsel, tid, unblock=pb.Unblock(imei=imei(20)))
    (change,) = feed(telkomsel, before)
    assert change.kind == types_pb2.CHANGE_KIND_BLACKLIST_UNBLOCKED
    assert list(done.complaint.history[-1].change_sequences) == [change.sequence]
    # Register: a tourist's phone whose passport the desk checked.
    telkomsel.check_imei(imei(21))  # seen: a notification
    tid = _investigating(telkomsel, imei(21), category=NO_SIGNAL, imsi=TELKOMSEL_IMSI)
    until = registry_pb2.DeviceRegistration(
        imeis=[imei(21)],
        source=types_pb2.REGISTRATION_SOURCE_TOURIST,
        reference="passport X123",
    )
    until.valid_until.FromSeconds(int(head_time()) + 30 * 86_400)
    before = head(telkomsel)
    done = resolve(telkomsel, tid, register_device=pb.RegisterDeviceAction(device=until))
    kinds = [c.kind for c in feed(telkomsel, before)]
    assert types_pb2.CHANGE_KIND_WHITELIST_ADDED in kinds
    assert len(done.complaint.history[-1].change_sequences) == len(kinds)
    # No action: closed without a change.
    tid = _investigating(telkomsel, imei(20), category=pb.COMPLAINT_CATEGORY_OTHER)
    before = head(telkomsel)
    done = resolve(telkomsel, tid, no_action=pb.NoAction())
    assert done.complaint.state == RESOLVED and not done.complaint.history[-1].change_sequences
    assert head(telkomsel) == before


def head_time() -> float:
    import time

    return time.time()


def _unchanged(telkomsel: Client, tid: str, sequence: int, steps: int) -> None:
    complaint = get(telkomsel, tid)
    assert complaint.state == INVESTIGATING and len(complaint.history) == steps
    assert head(telkomsel) == sequence


def test_a_failed_resolution_writes_neither_step_nor_change(
    clients: dict[str, Client],
) -> None:
    telkomsel = clients["telkomsel"]
    seen_device(telkomsel, imei(30))
    tid = _investigating(telkomsel, imei(30), category=NO_SIGNAL, imsi=TELKOMSEL_IMSI)
    pair = pb.PairSim(imei=imei(30), imsi=TELKOMSEL_IMSI)
    telkomsel.call(
        telkomsel.registry.AddException,
        registry_pb2.AddExceptionRequest(imei=imei(30), imsi=TELKOMSEL_IMSI),
    )
    sequence = head(telkomsel)
    # The action fails in the register: the pair exists.
    error = failure(lambda: resolve(telkomsel, tid, pair_sim=pair))
    assert error.code() is grpc.StatusCode.ALREADY_EXISTS
    _unchanged(telkomsel, tid, sequence, 2)
    # An action the category does not allow.
    error = failure(lambda: resolve(telkomsel, tid, unblock=pb.Unblock(imei=imei(30))))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(error) == "ACTION_NOT_ALLOWED_FOR_CATEGORY"
    assert [f for f, _ in violations(error)] == ["unblock"]
    _unchanged(telkomsel, tid, sequence, 2)
    # A source the desk may not register (TPP is Kemenperin's): the
    # register's own rule (require_source).
    device = registry_pb2.DeviceRegistration(
        imeis=[imei(31)], source=types_pb2.REGISTRATION_SOURCE_TPP_IMPORT
    )
    error = failure(
        lambda: resolve(telkomsel, tid, register_device=pb.RegisterDeviceAction(device=device))
    )
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(error) == "SOURCE_NOT_ALLOWED"
    _unchanged(telkomsel, tid, sequence, 2)
    # Another operator's subscriber (require_own_imsi of AddException).
    foreign = pb.PairSim(imei=imei(30), imsi=INDOSAT_IMSI)
    error = failure(lambda: resolve(telkomsel, tid, pair_sim=foreign))
    assert error_reason(error) == "FOREIGN_SUBSCRIBER"
    _unchanged(telkomsel, tid, sequence, 2)


def test_retries_with_a_request_id_replay_the_first_answer(
    clients: dict[str, Client],
) -> None:
    telkomsel = clients["telkomsel"]
    seen_device(telkomsel, imei(40))
    request = pb.FileComplaintRequest(
        request_id="file-1", imeis=[imei(40)], category=NO_SIGNAL, imsi=TELKOMSEL_IMSI
    )
    first = telkomsel.call(telkomsel.complaints.FileComplaint, request)
    again = telkomsel.call(telkomsel.complaints.FileComplaint, request)
    assert first == again
    listed = telkomsel.call(telkomsel.complaints.ListComplaints, pb.ListComplaintsRequest())
    assert len(listed.complaints) == 1
    other = pb.FileComplaintRequest(request_id="file-1", imeis=[imei(41)], category=NO_SIGNAL)
    error = failure(lambda: telkomsel.call(telkomsel.complaints.FileComplaint, other))
    assert error_reason(error) == "REQUEST_ID_REUSED"
    tid = first.complaint.tracking_id
    moved = pb.UpdateComplaintRequest(request_id="u-1", tracking_id=tid, state=INVESTIGATING)
    assert telkomsel.call(telkomsel.complaints.UpdateComplaint, moved) == telkomsel.call(
        telkomsel.complaints.UpdateComplaint, moved
    )
    resolution = pb.ResolveComplaintRequest(
        request_id="r-1",
        tracking_id=tid,
        note="paired",
        pair_sim=pb.PairSim(imei=imei(40), imsi=TELKOMSEL_IMSI),
    )
    done = telkomsel.call(telkomsel.complaints.ResolveComplaint, resolution)
    sequence = head(telkomsel)
    assert telkomsel.call(telkomsel.complaints.ResolveComplaint, resolution) == done
    assert head(telkomsel) == sequence
    assert len(get(telkomsel, tid).history) == 3


BAD_FILINGS = [
    ({"imeis": []}, "imeis"),
    ({"imeis": ["12345"]}, "imeis[0]"),
    ({"imeis": [imei(1)[:14] + "0" if imei(1)[14] != "0" else imei(1)[:14] + "1"]}, "imeis[0]"),
    ({"category": 0}, "category"),
    ({"category": 99}, "category"),
    ({"imsi": "51010abc"}, "imsi"),
    ({"msisdn": "12"}, "msisdn"),
    ({"description": "x" * 1_001}, "description"),
]


@pytest.mark.parametrize(("fields", "field"), BAD_FILINGS)
def test_bad_filings_name_the_field_and_store_nothing(
    clients: dict[str, Client], fields: dict[str, Any], field: str
) -> None:
    telkomsel = clients["telkomsel"]
    values: dict[str, Any] = {"imeis": [imei(50)], "category": NO_SIGNAL, **fields}
    error = failure(
        lambda: telkomsel.call(
            telkomsel.complaints.FileComplaint, pb.FileComplaintRequest(**values)
        )
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert field in [f for f, _ in violations(error)]
    listed = clients["kominfo"].call(
        clients["kominfo"].complaints.ListComplaints, pb.ListComplaintsRequest()
    )
    assert not listed.complaints


def test_bad_updates_and_resolutions_name_the_field(clients: dict[str, Client]) -> None:
    telkomsel = clients["telkomsel"]
    for request, field in (
        (pb.UpdateComplaintRequest(tracking_id="X-1", state=INVESTIGATING), "tracking_id"),
        (pb.UpdateComplaintRequest(tracking_id="C-000001"), "state"),
        (
            pb.UpdateComplaintRequest(tracking_id="C-000001", state=pb.COMPLAINT_STATE_SUBMITTED),
            "state",
        ),
    ):
        error = failure(lambda r=request: telkomsel.call(telkomsel.complaints.UpdateComplaint, r))
        assert field in [f for f, _ in violations(error)]
    for resolution, field in (
        (pb.ResolveComplaintRequest(tracking_id="C-000001", note="x"), "action"),
        (pb.ResolveComplaintRequest(tracking_id="C-000001", no_action=pb.NoAction()), "note"),
        (
            pb.ResolveComplaintRequest(
                tracking_id="C-000001", note="x", pair_sim=pb.PairSim(imei="1", imsi="x")
            ),
            "pair_sim.imsi",
        ),
        (
            pb.ResolveComplaintRequest(
                tracking_id="C-000001",
                note="x",
                whitelist_sibling=pb.WhitelistSibling(imei=imei(1), registered_imei=imei(2)),
            ),
            "whitelist_sibling.box_reference",
        ),
        (
            pb.ResolveComplaintRequest(
                tracking_id="C-000001",
                note="x",
                register_device=pb.RegisterDeviceAction(
                    device=registry_pb2.DeviceRegistration(imeis=["1"])
                ),
            ),
            "register_device.device.imeis[0]",
        ),
    ):
        error = failure(
            lambda r=resolution: telkomsel.call(telkomsel.complaints.ResolveComplaint, r)
        )
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, error
        assert field in [f for f, _ in violations(error)], violations(error)


def test_who_reads_what(clients: dict[str, Client], server: RunningServer) -> None:
    telkomsel, indosat = clients["telkomsel"], clients["indosat"]
    seen_device(telkomsel, imei(60))
    indosat.check_imei(imei(61), imsi=INDOSAT_IMSI)
    file(telkomsel, imei(60), imsi=TELKOMSEL_IMSI)
    file(indosat, imei(61), imsi=INDOSAT_IMSI)
    mine = telkomsel.call(telkomsel.complaints.ListComplaints, pb.ListComplaintsRequest())
    assert [c.owner for c in mine.complaints] == ["telkomsel"]
    for regulator in ("kominfo", "kemenperin"):
        client = clients[regulator]
        every = client.call(client.complaints.ListComplaints, pb.ListComplaintsRequest(page_size=1))
        assert len(every.complaints) == 1 and every.next_page_token
        rest = client.call(
            client.complaints.ListComplaints,
            pb.ListComplaintsRequest(page_size=1, page_token=every.next_page_token),
        )
        assert [c.imsi for c in (*every.complaints, *rest.complaints)] == [
            TELKOMSEL_IMSI,
            INDOSAT_IMSI,
        ]
    # Kominfo reads but does not work complaints; customs may not call the desk.
    error = failure(lambda: update(clients["kominfo"], "C-000001", INVESTIGATING))
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    error = failure(lambda: file(clients["customs"], imei(62)))
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED


def test_a_register_that_takes_no_writes_refuses_complaint_writes_but_reads(
    clients: dict[str, Client], server: RunningServer
) -> None:
    telkomsel = clients["telkomsel"]
    seen_device(telkomsel, imei(70))
    tid = file(telkomsel, imei(70), imsi=TELKOMSEL_IMSI).tracking_id
    update(telkomsel, tid, INVESTIGATING)

    def frozen(session: object, command: object) -> None:
        raise WritesRefused("frozen for a handover", reason="REGISTER_FROZEN", retry_after=5)

    server.register.write_gate = frozen
    try:
        for call in (
            lambda: file(telkomsel, imei(70), imsi=TELKOMSEL_IMSI),
            lambda: update(telkomsel, tid, WAITING),
            lambda: resolve(telkomsel, tid, no_action=pb.NoAction()),
        ):
            error = failure(call)
            assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
            assert error_reason(error) == "REGISTER_FROZEN"
        assert get(telkomsel, tid).state == INVESTIGATING
        assert len(get(telkomsel, tid).history) == 2
    finally:
        server.register.write_gate = None
    assert resolve(telkomsel, tid, no_action=pb.NoAction()).complaint.state == RESOLVED

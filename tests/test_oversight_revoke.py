"""The bulk revocation of an abused account's registrations, through a real
server on SQLite and PostgreSQL: paged, idempotent, row by row, audited
(in the feed and the IMEI's history), whole or not at all."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from ceir.api.server import RunningServer
from ceir.service import register as register_module
from ceir.service.clock import ManualClock
from ceir.storage import projection
from ceir.v1 import (
    equipment_check_pb2,
    list_sync_pb2,
    list_sync_pb2_grpc,
    oversight_pb2,
    registry_pb2,
    types_pb2,
)

from .helpers import TELKOMSEL_IMSI, error_reason, imei, violations
from .oversight_helpers import INSIDER, Caller, insider_token, stamp, watched

__all__ = ["insider_token", "watched"]  # fixtures

TAC = 35_777_000
OV = oversight_pb2
REASON = "insider abuse, case 2022-10"


def key(serial: int) -> str:
    return f"{TAC * 1_000_000 + serial:014d}"


@pytest.fixture
def callers(
    watched: RunningServer, tokens: dict[str, str], insider_token: str
) -> Iterator[dict[str, Caller]]:
    with grpc.insecure_channel(f"127.0.0.1:{watched.port}") as channel:
        found = {name: Caller(channel, token) for name, token in tokens.items()}
        found[INSIDER] = Caller(channel, insider_token)
        yield found


def _revoke_one(caller: Caller, serial: int) -> None:
    caller.call(
        caller.registry.RevokeRegistration,
        registry_pb2.RevokeRegistrationRequest(imeis=[imei(serial, TAC)], reason="earlier"),
    )


def _outcomes(pages: list[Any]) -> list[tuple[str, int]]:
    return [(row.imei_key, row.outcome) for page in pages for row in page.rows]


def test_bulk_revocation_pages_reports_every_row_and_is_idempotent(
    watched: RunningServer, callers: dict[str, Caller], clock: ManualClock
) -> None:
    insider, kemenperin, customs = callers[INSIDER], callers["kemenperin"], callers["customs"]
    insider.import_keys([999])  # before the window: never touched
    clock.advance(60)
    start = clock.now_us()
    insider.import_keys(range(25))
    _revoke_one(kemenperin, 3)  # already off the whitelist
    _revoke_one(kemenperin, 5)  # ... and registered again by customs
    customs.import_keys([5], types_pb2.REGISTRATION_SOURCE_CUSTOMS, tac=TAC)
    _revoke_one(kemenperin, 7)  # ... and registered again by the insider
    insider.import_keys([7])
    before = watched.register.state.sequence

    pages = kemenperin.revoke_all(INSIDER, start, None, "case-1", page_size=10)
    assert [len(p.rows) for p in pages] == [10, 10, 6]
    assert len({p.set_sequence for p in pages}) == 1 and pages[0].set_sequence == before
    expected = [(key(s), OV.REVOCATION_OUTCOME_REVOKED) for s in range(25) if s not in (3, 5, 7)]
    got = _outcomes(pages)
    assert got[3] == (key(3), OV.REVOCATION_OUTCOME_ALREADY_OFF_WHITELIST)
    assert got[5] == (key(5), OV.REVOCATION_OUTCOME_REREGISTERED_BY_OTHERS)
    assert got[7] == (key(7), OV.REVOCATION_OUTCOME_SUPERSEDED)
    assert got[25] == (key(7), OV.REVOCATION_OUTCOME_REVOKED)  # its later registration
    assert [g for g in got[:25] if g[0] not in (key(3), key(5), key(7))] == expected
    revoked = [row for page in pages for row in page.rows if row.revocation_sequence]
    assert len(revoked) == sum(p.revoked for p in pages) == 23
    assert [r.revocation_sequence for r in revoked] == list(range(before + 1, before + 24))
    after = watched.register.state.sequence
    assert after == before + 23 == pages[-1].sequence

    # A page sent again replays its answer and changes nothing.
    again = kemenperin.revoke_page(INSIDER, start, None, "case-1", pages[0].next_page_token, 10)
    assert again == pages[1]
    assert watched.register.state.sequence == after
    # The same request id and page with another reason is a different request.
    with pytest.raises(grpc.RpcError) as caught:
        kemenperin.revoke_page(
            INSIDER, start, None, "case-1", pages[0].next_page_token, 10, reason="other"
        )
    assert error_reason(caught.value) == "REQUEST_ID_REUSED"
    # Run again after completion, under a new id: nothing new is revoked.
    rerun = kemenperin.revoke_all(INSIDER, start, None, "case-2", page_size=10)
    assert sum(p.revoked for p in rerun) == 0
    assert watched.register.state.sequence == after
    assert {o for _k, o in _outcomes(rerun)} == {
        OV.REVOCATION_OUTCOME_ALREADY_OFF_WHITELIST,
        OV.REVOCATION_OUTCOME_REREGISTERED_BY_OTHERS,
    }

    # What is left: the customs registration, and the one before the window.
    telkomsel = callers["telkomsel"]
    for serial, status in ((5, "WHITELISTED"), (999, "WHITELISTED"), (0, "GREYLISTED")):
        answer = telkomsel.call(
            telkomsel.registry_check,
            equipment_check_pb2.CheckEquipmentRequest(imei=imei(serial, TAC), imsi=TELKOMSEL_IMSI),
        )
        assert types_pb2.EquipmentStatus.Name(answer.status).endswith(status), serial

    # Audited: in the feed and in the IMEI's history, with the reason.
    sync = list_sync_pb2_grpc.ListSyncServiceStub(kemenperin.channel)
    stream = sync.WatchChanges(
        list_sync_pb2.WatchChangesRequest(after_sequence=before),
        metadata=kemenperin.metadata,
        timeout=30,
    )
    feed: list[types_pb2.ListChange] = []
    for response in stream:
        feed.extend(response.changes)
        if len(feed) >= 23:
            stream.cancel()  # type: ignore[no-untyped-call]
            break
    feed = feed[:23]
    assert [c.imei_key for c in feed] == [r.imei_key for r in revoked]
    assert {(c.kind, c.reason, c.actor) for c in feed} == {
        (types_pb2.CHANGE_KIND_WHITELIST_REMOVED, REASON, "kemenperin")
    }
    record = kemenperin.call(
        kemenperin.registry.GetImeiRecord, registry_pb2.GetImeiRecordRequest(imei=imei(0, TAC))
    )
    assert not record.HasField("registration")
    kinds = [c.kind for c in record.history]
    assert kinds[:2] == [
        types_pb2.CHANGE_KIND_WHITELIST_ADDED,
        types_pb2.CHANGE_KIND_WHITELIST_REMOVED,
    ]  # then the check's notification
    assert (record.history[1].reason, record.history[1].actor) == (REASON, "kemenperin")
    listed = kemenperin.registrations_by(INSIDER, start)
    assert not any(r.on_whitelist for r in listed)


def test_a_failed_page_writes_nothing_and_its_retry_does_it_all(
    watched: RunningServer,
    callers: dict[str, Caller],
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    insider, kemenperin = callers[INSIDER], callers["kemenperin"]
    start = clock.now_us()
    insider.import_keys(range(12))
    before = watched.register.state.sequence
    real = projection.write_projection

    def broken(session: Any, changes: Any) -> None:
        real(session, changes)  # the rows are written in the transaction...
        raise RuntimeError("the disk is gone")  # ... and then it fails

    monkeypatch.setattr(register_module, "write_projection", broken)
    with pytest.raises(grpc.RpcError) as caught:
        kemenperin.revoke_page(INSIDER, start, None, "case-x", page_size=5)
    assert caught.value.code() is grpc.StatusCode.INTERNAL
    monkeypatch.setattr(register_module, "write_projection", real)
    assert watched.register.state.sequence == before
    assert all(r.on_whitelist for r in kemenperin.registrations_by(INSIDER, start))
    # Nothing of the answer was stored either: the same page now runs.
    page = kemenperin.revoke_page(INSIDER, start, None, "case-x", page_size=5)
    assert page.revoked == 5 and page.sequence == before + 5


def test_a_large_set_pages_under_the_message_limit(
    callers: dict[str, Caller], clock: ManualClock
) -> None:
    insider, kemenperin = callers[INSIDER], callers["kemenperin"]
    start = clock.now_us()
    insider.import_keys(range(10_001))
    first = kemenperin.call(
        kemenperin.oversight.ListRegistrationsBy,
        OV.ListRegistrationsByRequest(
            organisation=INSIDER, start_time=stamp(start), page_size=1_000_000
        ),
    )
    assert len(first.registrations) == 10_000 and first.next_page_token
    assert first.ByteSize() < 4 * 1024 * 1024
    pages = kemenperin.revoke_all(INSIDER, start, None, "big", page_size=1_000_000)
    assert [len(p.rows) for p in pages] == [10_000, 1]
    assert all(p.ByteSize() < 4 * 1024 * 1024 for p in pages)
    assert sum(p.revoked for p in pages) == 10_001


def test_bad_revocations_are_refused_with_field_details_and_change_nothing(
    watched: RunningServer, callers: dict[str, Caller], clock: ManualClock
) -> None:
    insider, kemenperin = callers[INSIDER], callers["kemenperin"]
    now = clock.now_us()
    insider.import_keys(range(3))
    before = watched.register.state.sequence
    request = OV.RevokeRegistrationsByRequest
    good = {
        "request_id": "bad-1",
        "organisation": INSIDER,
        "start_time": stamp(now),
        "reason": REASON,
    }
    cases: list[tuple[dict[str, Any], str]] = [
        ({"organisation": "nobody"}, "organisation"),
        ({"organisation": ""}, "organisation"),
        ({"reason": ""}, "reason"),
        ({"reason": "x" * 257}, "reason"),
        ({"request_id": ""}, "request_id"),
        ({"start_time": None}, "start_time"),
        ({"end_time": stamp(now - 1)}, "end_time"),
        ({"page_size": -5}, "page_size"),
        ({"page_token": "bm90IGEgdG9rZW4="}, "page_token"),
    ]
    for change, field in cases:
        fields = {**good, **change}
        with pytest.raises(grpc.RpcError) as caught:
            kemenperin.call(kemenperin.oversight.RevokeRegistrationsBy, request(**fields))
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT, (change, caught.value)
        assert field in [f for f, _ in violations(caught.value)], (change, caught.value)
    assert watched.register.state.sequence == before
    # A token given for one window is refused for another.
    page = kemenperin.revoke_page(INSIDER, now, None, "bad-2", page_size=1)
    with pytest.raises(grpc.RpcError) as caught:
        kemenperin.revoke_page(INSIDER, now + 1, None, "bad-2", page.next_page_token, 1)
    assert error_reason(caught.value) == "BAD_PAGE_TOKEN"


@pytest.mark.parametrize("who", ["telkomsel", "customs", "kemlu", "kominfo"])
def test_only_kemenperin_revokes_in_bulk(
    watched: RunningServer, callers: dict[str, Caller], clock: ManualClock, who: str
) -> None:
    start = clock.now_us()
    callers[INSIDER].import_keys(range(3))
    before = watched.register.state.sequence
    with pytest.raises(grpc.RpcError) as caught:
        callers[who].revoke_page(INSIDER, start, None, "not-mine")
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert watched.register.state.sequence == before

"""Reading an IMEI's record: an operator sees only its own subscribers'
IMSIs and MSISDNs (regulators see everyone's), the history is paged
(AIP-158), and the notifications and pairs a record lists are bounded."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
import sqlalchemy
from sqlalchemy.pool import NullPool

from ceir.api.server import RunningServer
from ceir.service.orgs import add_organisation
from ceir.v1 import registry_pb2, types_pb2

from .helpers import INDOSAT_IMSI, TELKOMSEL_IMSI, Client, error_reason, imei, violations

TAC = 35_333_000
INDOSAT_21_IMSI = "510211234567890"  # Indosat's second MCC-MNC
XL_IMSI = "510111234567890"
MSISDN = {TELKOMSEL_IMSI: "+6281100000001", INDOSAT_IMSI: "+6285600000002"}


def device(serial: int) -> str:
    return imei(serial, tac=TAC)


def record(client: Client, serial: int, **fields: object) -> registry_pb2.GetImeiRecordResponse:
    return client.call(
        client.registry.GetImeiRecord,
        registry_pb2.GetImeiRecordRequest(imei=device(serial), **fields),  # type: ignore[arg-type]
    )


def refused(client: Client, serial: int, **fields: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        record(client, serial, **fields)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    return caught.value


@pytest.fixture
def engine(db_url: str) -> Iterator[sqlalchemy.Engine]:
    engine = sqlalchemy.create_engine(db_url, poolclass=NullPool)
    yield engine
    engine.dispose()


# --- whose subscribers a caller sees ------------------------------------------------------


@pytest.fixture
def shared(clients: dict[str, Client]) -> int:
    """One unregistered IMEI seen on Telkomsel and Indosat subscribers' SIMs,
    paired with a subscriber of each and of XL, and reported stolen by
    Indosat for its subscriber."""
    serial = 1
    telkomsel, indosat = clients["telkomsel"], clients["indosat"]
    telkomsel.check_imei(device(serial), TELKOMSEL_IMSI, MSISDN[TELKOMSEL_IMSI])
    indosat.check_imei(device(serial), INDOSAT_IMSI, MSISDN[INDOSAT_IMSI])
    for client, imsi in (
        (telkomsel, TELKOMSEL_IMSI),
        (indosat, INDOSAT_IMSI),
        (clients["kemenperin"], XL_IMSI),
    ):
        client.call(
            client.registry.AddException,
            registry_pb2.AddExceptionRequest(imei=device(serial), imsi=imsi, reason="aduan"),
        )
    indosat.call(
        indosat.registry.ReportStolen,
        registry_pb2.ReportStolenRequest(
            imeis=[device(serial)], police_report="LP/7/2020", subscriber_imsi=INDOSAT_IMSI
        ),
    )
    return serial


def subscriber_data(answer: registry_pb2.GetImeiRecordResponse) -> set[str]:
    """Every IMSI and MSISDN anywhere in a record."""
    found = {n.imsi for n in answer.notifications} | {n.msisdn for n in answer.notifications}
    found |= {e.imsi for e in answer.exceptions}
    found |= {c.imsi for c in answer.history} | {c.msisdn for c in answer.history}
    found.add(answer.blacklist.subscriber_imsi)
    return found - {""}


def test_an_operator_sees_only_its_own_subscribers_in_a_record(
    clients: dict[str, Client], shared: int
) -> None:
    full = record(clients["kominfo"], shared)
    mine = record(clients["telkomsel"], shared)
    assert [n.imsi for n in mine.notifications] == [TELKOMSEL_IMSI]
    assert [n.msisdn for n in mine.notifications] == ["6281100000001"]
    assert [e.imsi for e in mine.exceptions] == [TELKOMSEL_IMSI]
    assert mine.blacklist.blocked_by == "indosat" and mine.blacklist.subscriber_imsi == ""
    assert subscriber_data(mine) == {TELKOMSEL_IMSI, "6281100000001"}
    # The history keeps every change, with others' subscribers blanked.
    assert [(c.sequence, c.kind) for c in mine.history] == [
        (c.sequence, c.kind) for c in full.history
    ]
    blanked = [c for c in mine.history if c.kind == types_pb2.CHANGE_KIND_EXCEPTION_ADDED]
    assert sorted(c.imsi for c in blanked) == ["", "", TELKOMSEL_IMSI]


def test_the_subscribers_operator_sees_its_stolen_report(
    clients: dict[str, Client], shared: int
) -> None:
    theirs = record(clients["indosat"], shared)
    assert theirs.blacklist.subscriber_imsi == INDOSAT_IMSI
    assert subscriber_data(theirs) == {INDOSAT_IMSI, "6285600000002"}


@pytest.mark.parametrize("regulator", ["kominfo", "kemenperin"])
def test_regulators_see_every_subscriber_in_a_record(
    clients: dict[str, Client], shared: int, regulator: str
) -> None:
    answer = record(clients[regulator], shared)
    assert [n.imsi for n in answer.notifications] == [INDOSAT_IMSI, TELKOMSEL_IMSI]
    assert [e.imsi for e in answer.exceptions] == [INDOSAT_IMSI, TELKOMSEL_IMSI, XL_IMSI]
    assert answer.blacklist.subscriber_imsi == INDOSAT_IMSI
    assert subscriber_data(answer) == {
        TELKOMSEL_IMSI,
        INDOSAT_IMSI,
        XL_IMSI,
        "6281100000001",
        "6285600000002",
    }


def test_notification_lists_show_an_operator_only_its_own_subscribers(
    clients: dict[str, Client],
) -> None:
    telkomsel, indosat = clients["telkomsel"], clients["indosat"]
    telkomsel.check_imei(device(2), TELKOMSEL_IMSI, MSISDN[TELKOMSEL_IMSI])
    indosat.check_imei(device(2), INDOSAT_IMSI, MSISDN[INDOSAT_IMSI])
    indosat.check_imei(device(3), INDOSAT_21_IMSI)

    def listed(client: Client) -> set[tuple[str, str, str]]:
        page = client.call(
            client.registry.ListNotifications, registry_pb2.ListNotificationsRequest()
        )
        return {(n.imei_key, n.imsi, n.msisdn) for n in page.notifications}

    two, three = device(2)[:14], device(3)[:14]
    assert listed(telkomsel) == {(two, TELKOMSEL_IMSI, "6281100000001")}
    assert listed(indosat) == {(two, INDOSAT_IMSI, "6285600000002"), (three, INDOSAT_21_IMSI, "")}
    assert listed(clients["xl"]) == set()
    assert listed(clients["kominfo"]) == listed(telkomsel) | listed(indosat)


def test_an_operator_with_a_three_digit_mnc_lists_its_own_notifications(
    server: RunningServer, channel: grpc.Channel, clients: dict[str, Client]
) -> None:
    # The notification's operator column cannot be read off an IMSI with a
    # 3-digit MNC; the list follows the IMSI, and the column the operator.
    token = add_organisation(server.register.db, "three", "operator", ["510-123"])
    three = Client(channel, token)
    imsi = "510123000000001"
    three.check_imei(device(4), imsi)
    page = three.call(three.registry.ListNotifications, registry_pb2.ListNotificationsRequest())
    assert [(n.imsi, n.operator_mcc_mnc) for n in page.notifications] == [(imsi, "510-123")]
    others = clients["telkomsel"].call(
        clients["telkomsel"].registry.ListNotifications, registry_pb2.ListNotificationsRequest()
    )
    assert list(others.notifications) == []


# --- paging the history -------------------------------------------------------------------


def churn(client: Client, serial: int, changes: int) -> None:
    """Give an IMEI ``changes`` changes: registered, revoked, registered, ..."""
    for n in range(changes):
        if n % 2 == 0:
            client.register(device(serial))
        else:
            client.call(
                client.registry.RevokeRegistration,
                registry_pb2.RevokeRegistrationRequest(imeis=[device(serial)], reason="churn"),
            )


def test_the_history_comes_in_pages(clients: dict[str, Client]) -> None:
    kemenperin = clients["kemenperin"]
    churn(kemenperin, 10, 7)  # ends registered
    pages: list[list[int]] = []
    token = ""
    while True:
        answer = record(kemenperin, 10, page_size=3, page_token=token)
        assert answer.imei_key == device(10)[:14]
        assert answer.registration.device_id  # every page carries the record
        pages.append([c.sequence for c in answer.history])
        token = answer.next_page_token
        if not token:
            break
    assert [len(page) for page in pages] == [3, 3, 1]
    whole = [c.sequence for c in record(kemenperin, 10, page_size=1_000).history]
    assert [sequence for page in pages for sequence in page] == whole
    assert whole == sorted(whole) and len(whole) == 7


def test_the_history_page_is_100_by_default_and_1000_at_most(clients: dict[str, Client]) -> None:
    kemenperin = clients["kemenperin"]
    churn(kemenperin, 11, 102)
    first = record(kemenperin, 11)
    assert len(first.history) == 100 and first.next_page_token
    rest = record(kemenperin, 11, page_token=first.next_page_token)
    assert len(rest.history) == 2 and not rest.next_page_token
    assert len(record(kemenperin, 11, page_size=5_000).history) == 102


def test_a_bad_history_page_token_is_refused(clients: dict[str, Client]) -> None:
    kemenperin = clients["kemenperin"]
    churn(kemenperin, 12, 3)
    churn(kemenperin, 13, 3)
    for token in ("garbage", "aDE6MTox", "djE6MTox"):  # junk, h1:1:1 (bad key), v1:1:1
        error = refused(kemenperin, 12, page_token=token)
        assert error_reason(error) == "BAD_PAGE_TOKEN"
        assert [field for field, _ in violations(error)] == ["page_token"]
    # A token of another IMEI would skip this IMEI's changes silently.
    other = record(kemenperin, 13, page_size=1).next_page_token
    error = refused(kemenperin, 12, page_token=other)
    assert error_reason(error) == "BAD_PAGE_TOKEN"
    error = refused(kemenperin, 12, page_size=-1)
    assert [field for field, _ in violations(error)] == ["page_size"]


# --- bounded lists -------------------------------------------------------------------------


def test_a_record_lists_at_most_100_exception_pairs(clients: dict[str, Client]) -> None:
    telkomsel = clients["telkomsel"]
    for n in range(101):
        telkomsel.call(
            telkomsel.registry.AddException,
            registry_pb2.AddExceptionRequest(imei=device(20), imsi=f"51010{n:010d}"),
        )
    answer = record(telkomsel, 20)
    assert len(answer.exceptions) == 100 and answer.exceptions_truncated
    assert [e.imsi for e in answer.exceptions] == [f"51010{n:010d}" for n in range(100)]
    assert not answer.notifications_truncated


def test_a_record_lists_at_most_100_notifications(
    clients: dict[str, Client], engine: sqlalchemy.Engine
) -> None:
    # Written straight into the table: however many a register holds (from
    # before notifications per IMEI were bounded), a record stays bounded.
    key = int(device(21)[:14])
    rows = [(f"51010{n:010d}", "510-10") for n in range(150)]
    rows += [(f"51001{n:010d}", "510-01") for n in range(5)]
    with engine.begin() as connection:
        connection.execute(
            sqlalchemy.text(
                "INSERT INTO notifications (imei_key, imsi, msisdn, operator_mcc_mnc,"
                " first_seen_us, block_date_us) VALUES (:key, :imsi, '', :op, 1, 2)"
            ),
            [{"key": key, "imsi": imsi, "op": op} for imsi, op in rows],
        )
    mine = record(clients["telkomsel"], 21)
    assert len(mine.notifications) == 100 and mine.notifications_truncated
    assert {n.operator_mcc_mnc for n in mine.notifications} == {"510-10"}
    theirs = record(clients["indosat"], 21)
    assert len(theirs.notifications) == 5 and not theirs.notifications_truncated
    everyone = record(clients["kominfo"], 21)
    assert len(everyone.notifications) == 100 and everyone.notifications_truncated
    assert everyone.notifications[0].imsi.startswith("51001")  # ordered by IMSI

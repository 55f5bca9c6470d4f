"""What a check leaves behind, through a real server on SQLite and PostgreSQL:
a notification only for the checking operator's own subscribers, at most
``MAX_NOTIFICATIONS_PER_IMEI`` of them per IMEI, and a block for an expired
grace whoever checks."""

from __future__ import annotations

from ceir.domain.lists import MAX_NOTIFICATIONS_PER_IMEI
from ceir.service.clock import ManualClock
from ceir.v1 import equipment_check_pb2 as check_pb
from ceir.v1 import registry_pb2, types_pb2

from .helpers import INDOSAT_IMSI, TELKOMSEL_IMSI, Client, imei, status_names

DAY = 86_400
PENDING = ("EQUIPMENT_STATUS_GREYLISTED", ["REASON_NOT_REGISTERED", "REASON_NOTIFICATION_PENDING"])
EXPIRED = ("EQUIPMENT_STATUS_BLACKLISTED", ["REASON_NOT_REGISTERED", "REASON_NOTIFICATION_EXPIRED"])


def record(client: Client, device: str) -> registry_pb2.GetImeiRecordResponse:
    return client.call(
        client.registry.GetImeiRecord, registry_pb2.GetImeiRecordRequest(imei=device)
    )


def notified(client: Client, device: str) -> list[str]:
    """The IMSIs the register notified for this IMEI (as a regulator reads them)."""
    return sorted(n.imsi for n in record(client, device).notifications)


def own_notifications(client: Client, device: str) -> list[str]:
    page = client.call(
        client.registry.ListNotifications, registry_pb2.ListNotificationsRequest(page_size=1_000)
    )
    return sorted(n.imsi for n in page.notifications if n.imei_key == device[:14])


def test_a_check_of_another_operators_subscriber_is_answered_but_leaves_no_effect(
    clients: dict[str, Client],
) -> None:
    device = imei(1)
    telkomsel, indosat, kominfo = clients["telkomsel"], clients["indosat"], clients["kominfo"]
    before = clients["kemenperin"].register(imei(2)).sequence
    answer = telkomsel.check_imei(device, imsi=INDOSAT_IMSI, msisdn="+6285500000001")
    assert status_names(answer) == PENDING
    assert answer.sequence == before  # nothing was written
    assert notified(kominfo, device) == []
    assert own_notifications(indosat, device) == []
    # The subscriber's own operator notifies it.
    assert status_names(indosat.check_imei(device, imsi=INDOSAT_IMSI)) == PENDING
    assert notified(kominfo, device) == [INDOSAT_IMSI]


def test_a_batch_records_only_the_operators_own_subscribers(clients: dict[str, Client]) -> None:
    telkomsel, kominfo = clients["telkomsel"], clients["kominfo"]
    devices = [imei(10), imei(11)]
    results = telkomsel.call(
        telkomsel.check.CheckEquipmentBatch,
        check_pb.CheckEquipmentBatchRequest(
            checks=[
                check_pb.CheckEquipmentRequest(imei=devices[0], imsi=INDOSAT_IMSI),
                check_pb.CheckEquipmentRequest(imei=devices[1], imsi=TELKOMSEL_IMSI),
                check_pb.CheckEquipmentRequest(imei=devices[1], imsi=INDOSAT_IMSI),
            ]
        ),
    ).results
    assert [status_names(r) for r in results] == [PENDING, PENDING, PENDING]
    assert notified(kominfo, devices[0]) == []
    assert notified(kominfo, devices[1]) == [TELKOMSEL_IMSI]


def test_a_check_without_an_imsi_leaves_no_notification(clients: dict[str, Client]) -> None:
    device = imei(20)
    answer = clients["telkomsel"].check_imei(device, imsi="")
    assert status_names(answer) == PENDING
    assert notified(clients["kominfo"], device) == []


def test_regulators_checks_notify_no_one_but_block_an_expired_grace(
    clients: dict[str, Client], clock: ManualClock
) -> None:
    device = imei(30)
    kominfo, kemenperin = clients["kominfo"], clients["kemenperin"]
    for regulator in (kominfo, kemenperin):
        assert status_names(regulator.check_imei(device, imsi=TELKOMSEL_IMSI)) == PENDING
    assert notified(kominfo, device) == []
    clients["telkomsel"].check_imei(device, imsi=TELKOMSEL_IMSI)
    assert notified(kominfo, device) == [TELKOMSEL_IMSI]
    clock.advance(31 * DAY)
    # The grace ran out: a fact about the IMEI, recorded whoever checks.
    assert status_names(kemenperin.check_imei(device, imsi=TELKOMSEL_IMSI)) == EXPIRED
    blocked = record(kominfo, device)
    assert blocked.blacklist.cause == types_pb2.BLACKLIST_CAUSE_NOTIFICATION_EXPIRED
    assert not blocked.notifications


def test_an_imei_holds_a_bounded_number_of_notified_pairs(clients: dict[str, Client]) -> None:
    device = imei(40)
    telkomsel = clients["telkomsel"]
    imsis = [f"510100000000{n:03d}" for n in range(MAX_NOTIFICATIONS_PER_IMEI + 6)]
    # More than the bound in one batch, then more again, one check at a time.
    first = telkomsel.call(
        telkomsel.check.CheckEquipmentBatch,
        check_pb.CheckEquipmentBatchRequest(
            checks=[
                check_pb.CheckEquipmentRequest(imei=device, imsi=imsi)
                for imsi in imsis[: MAX_NOTIFICATIONS_PER_IMEI + 2]
            ]
        ),
    ).results
    later = [telkomsel.check_imei(device, imsi=imsi) for imsi in imsis[-4:]]
    answers = [*first, *later]
    # Past the bound a check is answered as before, with the IMEI's block date.
    assert {status_names(a)[1][1] for a in answers} == {"REASON_NOTIFICATION_PENDING"}
    assert {a.block_date.seconds for a in answers} == {first[0].block_date.seconds}
    listed = own_notifications(telkomsel, device)
    assert listed == imsis[:MAX_NOTIFICATIONS_PER_IMEI]

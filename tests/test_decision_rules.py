"""Every decision rule of the brief, through a real server on SQLite and
PostgreSQL, with the clock moved by hand for expiries."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp

from ceir.api.server import RunningServer
from ceir.service.clock import ManualClock
from ceir.v1 import equipment_check_pb2 as check_pb
from ceir.v1 import policy_pb2, registry_pb2, types_pb2

from .helpers import INDOSAT_IMSI, ROAMER_IMSI, TELKOMSEL_IMSI, Client, imei, status_names

DAY = 86_400


def in_days(clock: ManualClock, days: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromMicroseconds(clock.now_us() + int(days * DAY * 1_000_000))
    return stamp


def set_policy(kominfo: Client, **values: int) -> None:
    policy = types_pb2.Policy()
    for name, value in values.items():
        setattr(policy, name, value)
    kominfo.call(
        kominfo.policy.UpdatePolicy,
        policy_pb2.UpdatePolicyRequest(policy=policy, update_mask=FieldMask(paths=list(values))),
    )


def test_registered_device_is_whitelisted_in_all_three_forms(clients: dict[str, Client]) -> None:
    device = imei(1)
    clients["kemenperin"].register(device)
    op = clients["telkomsel"]
    for form in (device[:14], device, device[:14] + "07"):
        answer = op.check_imei(form)
        assert status_names(answer) == ("EQUIPMENT_STATUS_WHITELISTED", ["REASON_REGISTERED"])
        assert answer.imei_key == device[:14]


@pytest.mark.parametrize(
    "bad",
    [
        "123",
        "3520990017614x",
        "352099001761482",
        "٣٥٢٠٩٩٠٠١٧٦١٤٨",
        "３５２０９９００１７６１４８",
        "12345678901234567",
    ],
)
def test_malformed_imei_is_blacklisted(clients: dict[str, Client], bad: str) -> None:
    answer = clients["telkomsel"].check_imei(bad)
    assert status_names(answer) == ("EQUIPMENT_STATUS_BLACKLISTED", ["REASON_MALFORMED_IMEI"])
    assert answer.imei_key == ""


def test_empty_imei_is_invalid_argument(clients: dict[str, Client]) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        clients["telkomsel"].check_imei("")
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_inbound_roamer_is_whitelisted_even_when_stolen(clients: dict[str, Client]) -> None:
    device = imei(2)
    clients["kemenperin"].register(device)
    clients["telkomsel"].call(
        clients["telkomsel"].registry.ReportStolen,
        registry_pb2.ReportStolenRequest(
            imeis=[device], police_report="P1", subscriber_imsi=TELKOMSEL_IMSI
        ),
    )
    answer = clients["telkomsel"].check_imei(device, imsi=ROAMER_IMSI)
    assert status_names(answer) == ("EQUIPMENT_STATUS_WHITELISTED", ["REASON_INBOUND_ROAMER"])


def test_exception_pair_beats_the_blacklist(clients: dict[str, Client]) -> None:
    device = imei(3)
    op = clients["telkomsel"]
    op.call(
        op.registry.ReportStolen,
        registry_pb2.ReportStolenRequest(
            imeis=[device], police_report="P2", subscriber_imsi=TELKOMSEL_IMSI
        ),
    )
    op.call(
        op.registry.AddException,
        registry_pb2.AddExceptionRequest(imei=device, imsi=TELKOMSEL_IMSI, reason="complaint 7"),
    )
    assert status_names(op.check_imei(device)) == (
        "EQUIPMENT_STATUS_WHITELISTED",
        ["REASON_EXCEPTION_PAIR"],
    )
    # The pair is specific: another SIM in the same phone is still blocked.
    assert status_names(op.check_imei(device, imsi="510109999999999")) == (
        "EQUIPMENT_STATUS_BLACKLISTED",
        ["REASON_STOLEN"],
    )


def test_stolen_then_recovered(clients: dict[str, Client]) -> None:
    device = imei(4)
    clients["kemenperin"].register(device)
    op = clients["telkomsel"]
    op.call(
        op.registry.ReportStolen,
        registry_pb2.ReportStolenRequest(
            imeis=[device], police_report="P3", subscriber_imsi=TELKOMSEL_IMSI
        ),
    )
    assert status_names(op.check_imei(device)) == (
        "EQUIPMENT_STATUS_BLACKLISTED",
        ["REASON_STOLEN"],
    )
    op.call(
        op.registry.ReportRecovered,
        registry_pb2.ReportRecoveredRequest(imeis=[device], police_report="P3-R"),
    )
    assert status_names(op.check_imei(device)) == (
        "EQUIPMENT_STATUS_WHITELISTED",
        ["REASON_REGISTERED"],
    )


def test_tourist_registration_expires(clients: dict[str, Client], clock: ManualClock) -> None:
    device = imei(5)
    op = clients["telkomsel"]
    op.register(device, source=types_pb2.REGISTRATION_SOURCE_TOURIST, valid_until=in_days(clock, 1))
    assert status_names(op.check_imei(device))[0] == "EQUIPMENT_STATUS_WHITELISTED"
    clock.advance(2 * DAY)
    answer = op.check_imei(device)
    assert status_names(answer) == (
        "EQUIPMENT_STATUS_GREYLISTED",
        ["REASON_REGISTRATION_EXPIRED", "REASON_NOTIFICATION_PENDING"],
    )
    assert answer.HasField("block_date")


def test_unregistered_device_is_notified_then_blocked(
    clients: dict[str, Client], clock: ManualClock
) -> None:
    device = imei(6)
    op = clients["telkomsel"]
    first = op.check_imei(device, msisdn="+6281100000001")
    assert status_names(first) == (
        "EQUIPMENT_STATUS_GREYLISTED",
        ["REASON_NOT_REGISTERED", "REASON_NOTIFICATION_PENDING"],
    )
    expected_block = (clock.now_us() // 1_000_000) + 30 * DAY
    assert abs(first.block_date.seconds - expected_block) <= 2
    # The same IMEI on another SIM keeps the IMEI's block date.
    other = clients["indosat"].check_imei(device, imsi=INDOSAT_IMSI)
    assert other.block_date == first.block_date
    listed = op.call(op.registry.ListNotifications, registry_pb2.ListNotificationsRequest())
    assert [(n.imei_key, n.imsi, n.msisdn) for n in listed.notifications] == [
        (device[:14], TELKOMSEL_IMSI, "6281100000001")
    ]
    clock.advance(31 * DAY)
    late = op.check_imei(device)
    assert status_names(late) == (
        "EQUIPMENT_STATUS_BLACKLISTED",
        ["REASON_NOT_REGISTERED", "REASON_NOTIFICATION_EXPIRED"],
    )
    record = op.call(op.registry.GetImeiRecord, registry_pb2.GetImeiRecordRequest(imei=device))
    assert record.blacklist.cause == types_pb2.BLACKLIST_CAUSE_NOTIFICATION_EXPIRED
    assert not record.notifications


def test_registering_a_blocked_unregistered_device_unblocks_it(
    clients: dict[str, Client], clock: ManualClock
) -> None:
    device = imei(7)
    op = clients["telkomsel"]
    op.check_imei(device)
    clock.advance(31 * DAY)
    assert status_names(op.check_imei(device))[0] == "EQUIPMENT_STATUS_BLACKLISTED"
    clients["customs"].register(
        device, source=types_pb2.REGISTRATION_SOURCE_CUSTOMS, reference="BC-2020-1"
    )
    assert status_names(op.check_imei(device)) == (
        "EQUIPMENT_STATUS_WHITELISTED",
        ["REASON_REGISTERED"],
    )


def test_enforcement_phase_blocks_unregistered_at_once(clients: dict[str, Client]) -> None:
    set_policy(clients["kominfo"], phase=types_pb2.PHASE_ENFORCE)
    answer = clients["telkomsel"].check_imei(imei(8))
    assert status_names(answer) == (
        "EQUIPMENT_STATUS_BLACKLISTED",
        ["REASON_NOT_REGISTERED", "REASON_ENFORCEMENT_PHASE"],
    )


def test_one_imei_on_too_many_sims_is_greylisted_as_a_clone(clients: dict[str, Client]) -> None:
    device = imei(9)
    clients["kemenperin"].register(device)
    set_policy(clients["kominfo"], clone_threshold=2)
    op = clients["telkomsel"]
    answers = [op.check_imei(device, imsi=f"51010000000000{n}") for n in range(3)]
    assert [status_names(a)[0] for a in answers] == [
        "EQUIPMENT_STATUS_WHITELISTED",
        "EQUIPMENT_STATUS_WHITELISTED",
        "EQUIPMENT_STATUS_GREYLISTED",
    ]
    assert status_names(answers[2])[1] == ["REASON_REGISTERED", "REASON_DUPLICATE_SUSPECTED"]


def test_batch_answers_in_request_order(clients: dict[str, Client]) -> None:
    registered, stolen = imei(10), imei(11)
    clients["kemenperin"].register(registered)
    op = clients["telkomsel"]
    op.call(
        op.registry.ReportStolen,
        registry_pb2.ReportStolenRequest(
            imeis=[stolen], police_report="P4", subscriber_imsi=TELKOMSEL_IMSI
        ),
    )
    request = check_pb.CheckEquipmentBatchRequest(
        checks=[
            check_pb.CheckEquipmentRequest(imei=registered, imsi=TELKOMSEL_IMSI),
            check_pb.CheckEquipmentRequest(imei="bad", imsi=TELKOMSEL_IMSI),
            check_pb.CheckEquipmentRequest(imei=stolen, imsi=TELKOMSEL_IMSI),
            check_pb.CheckEquipmentRequest(imei=imei(12), imsi=ROAMER_IMSI),
        ]
    )
    results = op.call(op.check.CheckEquipmentBatch, request).results
    assert [status_names(r)[1][0] for r in results] == [
        "REASON_REGISTERED",
        "REASON_MALFORMED_IMEI",
        "REASON_STOLEN",
        "REASON_INBOUND_ROAMER",
    ]


def test_stream_answers_each_check_and_survives_a_bad_one(clients: dict[str, Client]) -> None:
    device = imei(13)
    clients["kemenperin"].register(device)
    op = clients["telkomsel"]
    requests = [
        check_pb.CheckEquipmentStreamRequest(
            correlation_id=1, check=check_pb.CheckEquipmentRequest(imei=device, imsi=TELKOMSEL_IMSI)
        ),
        check_pb.CheckEquipmentStreamRequest(
            correlation_id=2, check=check_pb.CheckEquipmentRequest(imei="", imsi=TELKOMSEL_IMSI)
        ),
        check_pb.CheckEquipmentStreamRequest(
            correlation_id=3,
            check=check_pb.CheckEquipmentRequest(imei=device[:14], imsi=TELKOMSEL_IMSI),
        ),
    ]
    answers = list(op.check.CheckEquipmentStream(iter(requests), metadata=op.metadata, timeout=30))
    assert [a.correlation_id for a in answers] == [1, 2, 3]
    assert answers[0].result.status == types_pb2.EQUIPMENT_STATUS_WHITELISTED
    assert "IMEI is required" in answers[1].error_message
    assert answers[2].result.status == types_pb2.EQUIPMENT_STATUS_WHITELISTED


def test_answers_carry_the_register_sequence(
    clients: dict[str, Client], server: RunningServer
) -> None:
    response = clients["kemenperin"].register(imei(14))
    assert clients["telkomsel"].check_imei(imei(14)).sequence == response.sequence
    assert server.register.state.sequence == response.sequence

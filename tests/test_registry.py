"""Audited list operations: idempotency, permissions, errors, records, paging."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from ceir.service.clock import ManualClock
from ceir.v1 import registry_pb2, types_pb2

from .helpers import (
    INDOSAT_IMSI,
    TELKOMSEL_IMSI,
    Client,
    error_reason,
    imei,
    violations,
)


def fails(code: grpc.StatusCode, call: object, *args: object, **kwargs: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    assert caught.value.code() is code, caught.value.details()
    return caught.value


def test_retry_with_the_same_request_id_replays_the_first_answer(
    clients: dict[str, Client],
) -> None:
    kemenperin = clients["kemenperin"]
    first = kemenperin.register(imei(100), request_id="reg-100")
    again = kemenperin.register(imei(100), request_id="reg-100")
    assert again == first
    history = kemenperin.call(
        kemenperin.registry.GetImeiRecord, registry_pb2.GetImeiRecordRequest(imei=imei(100))
    ).history
    assert [types_pb2.ChangeKind.Name(c.kind) for c in history] == ["CHANGE_KIND_WHITELIST_ADDED"]
    # Without the id the second call is a new request, and the IMEI is taken.
    error = fails(grpc.StatusCode.ALREADY_EXISTS, kemenperin.register, imei(100))
    assert error_reason(error) == "IMEI_ALREADY_REGISTERED"
    assert violations(error)[0][0] == "device.imeis[0]"


def test_a_request_id_reused_for_another_request_is_refused(clients: dict[str, Client]) -> None:
    kemenperin = clients["kemenperin"]
    kemenperin.register(imei(101), request_id="reg-101")
    error = fails(
        grpc.StatusCode.INVALID_ARGUMENT, kemenperin.register, imei(102), request_id="reg-101"
    )
    assert violations(error)[0][0] == "request_id"
    assert kemenperin.check_imei(imei(102)).status != types_pb2.EQUIPMENT_STATUS_WHITELISTED


def test_malformed_imeis_are_named_field_by_field(clients: dict[str, Client]) -> None:
    error = fails(
        grpc.StatusCode.INVALID_ARGUMENT,
        clients["kemenperin"].register,
        imei(103),
        "352099001761482",
        "３５２０９９００１７６１４８",
    )
    fields = [field for field, _ in violations(error)]
    assert fields == ["device.imeis[1]", "device.imeis[2]"]
    assert "３５２０" in violations(error)[1][1]


@pytest.mark.parametrize(
    ("org", "source", "allowed"),
    [
        ("kemenperin", types_pb2.REGISTRATION_SOURCE_TPP_IMPORT, True),
        ("telkomsel", types_pb2.REGISTRATION_SOURCE_TPP_IMPORT, False),
        ("customs", types_pb2.REGISTRATION_SOURCE_CUSTOMS, True),
        ("kemenperin", types_pb2.REGISTRATION_SOURCE_CUSTOMS, False),
        ("kemlu", types_pb2.REGISTRATION_SOURCE_DIPLOMAT, True),
        ("customs", types_pb2.REGISTRATION_SOURCE_DIPLOMAT, False),
        ("xl", types_pb2.REGISTRATION_SOURCE_GRANDFATHERED, True),
        ("kominfo", types_pb2.REGISTRATION_SOURCE_GRANDFATHERED, False),
    ],
)
def test_who_may_register_which_source(
    clients: dict[str, Client],
    org: str,
    source: types_pb2.RegistrationSource.ValueType,
    allowed: bool,
) -> None:
    device = imei(104)
    if allowed:
        assert clients[org].register(device, source=source).registration.registered_by == org
    else:
        fails(grpc.StatusCode.PERMISSION_DENIED, clients[org].register, device, source=source)


def test_calls_without_a_valid_token_are_unauthenticated(clients: dict[str, Client]) -> None:
    op = clients["telkomsel"]
    request = registry_pb2.GetImeiRecordRequest(imei=imei(1))
    fails(grpc.StatusCode.UNAUTHENTICATED, op.registry.GetImeiRecord, request)
    fails(
        grpc.StatusCode.UNAUTHENTICATED,
        op.registry.GetImeiRecord,
        request,
        metadata=(("authorization", "Bearer ceir_not-a-token"),),
    )
    fails(
        grpc.StatusCode.UNAUTHENTICATED,
        op.registry.GetImeiRecord,
        request,
        metadata=(("authorization", "Basic dXNlcjpwYXNz"),),
    )


def test_only_the_regulator_changes_policy(clients: dict[str, Client]) -> None:
    from google.protobuf.field_mask_pb2 import FieldMask

    from ceir.v1 import policy_pb2

    request = policy_pb2.UpdatePolicyRequest(
        policy=types_pb2.Policy(grace_days=14), update_mask=FieldMask(paths=["grace_days"])
    )
    for org in ("telkomsel", "kemenperin", "customs"):
        fails(
            grpc.StatusCode.PERMISSION_DENIED,
            clients[org].call,
            clients[org].policy.UpdatePolicy,
            request,
        )
    kominfo = clients["kominfo"]
    assert kominfo.call(kominfo.policy.UpdatePolicy, request).policy.grace_days == 14
    shown = (
        clients["telkomsel"]
        .call(clients["telkomsel"].policy.GetPolicy, policy_pb2.GetPolicyRequest())
        .policy
    )
    assert (shown.grace_days, shown.updated_by) == (14, "kominfo")
    bad = policy_pb2.UpdatePolicyRequest(
        policy=types_pb2.Policy(grace_days=999),
        update_mask=FieldMask(paths=["grace_days", "colour"]),
    )
    error = fails(grpc.StatusCode.INVALID_ARGUMENT, kominfo.call, kominfo.policy.UpdatePolicy, bad)
    assert violations(error)[0][0] == "update_mask"


def test_operators_act_only_for_their_own_subscribers(clients: dict[str, Client]) -> None:
    op = clients["telkomsel"]
    fails(
        grpc.StatusCode.PERMISSION_DENIED,
        op.call,
        op.registry.AddException,
        registry_pb2.AddExceptionRequest(imei=imei(105), imsi=INDOSAT_IMSI),
    )
    fails(
        grpc.StatusCode.PERMISSION_DENIED,
        op.call,
        op.registry.ReportStolen,
        registry_pb2.ReportStolenRequest(
            imeis=[imei(105)], police_report="P", subscriber_imsi=INDOSAT_IMSI
        ),
    )


def test_recovering_a_device_that_is_not_stolen_fails(clients: dict[str, Client]) -> None:
    op = clients["telkomsel"]
    error = fails(
        grpc.StatusCode.FAILED_PRECONDITION,
        op.call,
        op.registry.ReportRecovered,
        registry_pb2.ReportRecoveredRequest(imeis=[imei(106)], police_report="P"),
    )
    assert error_reason(error) == "IMEI_NOT_STOLEN"


def test_revocation_and_the_record_history(clients: dict[str, Client]) -> None:
    kemenperin, op = clients["kemenperin"], clients["telkomsel"]
    kemenperin.register(imei(107), imei(108), brand="Oppo", model="A5")
    fails(
        grpc.StatusCode.PERMISSION_DENIED,
        op.call,
        op.registry.RevokeRegistration,
        registry_pb2.RevokeRegistrationRequest(imeis=[imei(107)], reason="fraud"),
    )
    kemenperin.call(
        kemenperin.registry.RevokeRegistration,
        registry_pb2.RevokeRegistrationRequest(imeis=[imei(107)], reason="fraud"),
    )
    assert op.check_imei(imei(107)).status == types_pb2.EQUIPMENT_STATUS_GREYLISTED
    assert op.check_imei(imei(108)).status == types_pb2.EQUIPMENT_STATUS_WHITELISTED
    record = op.call(op.registry.GetImeiRecord, registry_pb2.GetImeiRecordRequest(imei=imei(108)))
    assert list(record.registration.imei_keys) == [imei(107)[:14], imei(108)[:14]]
    assert record.registration.model == "A5"
    history = op.call(
        op.registry.GetImeiRecord, registry_pb2.GetImeiRecordRequest(imei=imei(107))
    ).history
    assert [types_pb2.ChangeKind.Name(c.kind) for c in history] == [
        "CHANGE_KIND_WHITELIST_ADDED",
        "CHANGE_KIND_WHITELIST_REMOVED",
        "CHANGE_KIND_NOTIFICATION_NEW",
    ]


def test_tourist_validity_is_checked(clients: dict[str, Client], clock: ManualClock) -> None:
    op = clients["telkomsel"]
    too_long = Timestamp()
    too_long.FromMicroseconds(clock.now_us() + 91 * 86_400 * 1_000_000)
    error = fails(
        grpc.StatusCode.INVALID_ARGUMENT,
        op.register,
        imei(109),
        source=types_pb2.REGISTRATION_SOURCE_TOURIST,
        valid_until=too_long,
    )
    assert violations(error) == [
        ("device.valid_until", "a tourist registration lasts at most 90 days")
    ]


def test_notification_lists_are_per_operator_and_paged(clients: dict[str, Client]) -> None:
    telkomsel, indosat = clients["telkomsel"], clients["indosat"]
    for n in range(5):
        telkomsel.check_imei(imei(200 + n), imsi=TELKOMSEL_IMSI)
    indosat.check_imei(imei(300), imsi=INDOSAT_IMSI)
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = telkomsel.call(
            telkomsel.registry.ListNotifications,
            registry_pb2.ListNotificationsRequest(page_size=2, page_token=token),
        )
        seen.extend(n.imei_key for n in page.notifications)
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == [imei(200 + n)[:14] for n in range(5)] and pages == 3
    others = indosat.call(
        indosat.registry.ListNotifications, registry_pb2.ListNotificationsRequest()
    )
    assert [n.imei_key for n in others.notifications] == [imei(300)[:14]]
    everyone = clients["kemenperin"].call(
        clients["kemenperin"].registry.ListNotifications, registry_pb2.ListNotificationsRequest()
    )
    assert len(everyone.notifications) == 6
    fails(
        grpc.StatusCode.INVALID_ARGUMENT,
        telkomsel.call,
        telkomsel.registry.ListNotifications,
        registry_pb2.ListNotificationsRequest(page_token="garbage"),
    )


def _rows(
    *devices: tuple[int, list[str], types_pb2.RegistrationSource.ValueType],
) -> list[registry_pb2.ImportRow]:
    return [
        registry_pb2.ImportRow(
            row=row,
            device=registry_pb2.DeviceRegistration(
                imeis=imeis, source=source, reference=f"TPP-{row}"
            ),
        )
        for row, imeis, source in devices
    ]


def test_import_registers_good_rows_and_reports_bad_ones(clients: dict[str, Client]) -> None:
    kemenperin = clients["kemenperin"]
    tpp = types_pb2.REGISTRATION_SOURCE_TPP_IMPORT
    chunks = [
        registry_pb2.ImportRegistrationsRequest(
            request_id="import-1",
            rows=_rows((2, [imei(400)], tpp), (3, [imei(401), "bad"], tpp), (4, [imei(402)], tpp)),
        ),
        registry_pb2.ImportRegistrationsRequest(
            rows=_rows(
                (5, [imei(400)], tpp),
                (6, [imei(403)], types_pb2.REGISTRATION_SOURCE_CUSTOMS),
                (7, [imei(404), imei(405)], tpp),
            )
        ),
    ]
    result = kemenperin.call(kemenperin.registry.ImportRegistrations, iter(chunks))
    assert (result.rows_received, result.rows_accepted, result.rows_rejected) == (6, 3, 3)
    assert [(r.row, r.field) for r in result.rejections] == [
        (3, "device.imeis[1]"),
        (5, "device.imeis[0]"),
        (6, "device.source"),
    ]
    for n in (400, 402, 404, 405):
        assert kemenperin.check_imei(imei(n)).status == types_pb2.EQUIPMENT_STATUS_WHITELISTED
    # The same import again changes nothing and gives the same summary.
    again = kemenperin.call(kemenperin.registry.ImportRegistrations, iter(chunks))
    assert again == result


def test_operators_close_only_their_own_cases(
    clients: dict[str, Client], clock: ManualClock
) -> None:
    telkomsel, indosat = clients["telkomsel"], clients["indosat"]
    until = Timestamp()
    until.FromMicroseconds(clock.now_us() + 86_400 * 1_000_000)
    telkomsel.register(imei(500), source=types_pb2.REGISTRATION_SOURCE_TOURIST, valid_until=until)
    error = fails(
        grpc.StatusCode.PERMISSION_DENIED,
        indosat.call,
        indosat.registry.RevokeRegistration,
        registry_pb2.RevokeRegistrationRequest(imeis=[imei(500)], reason="not ours"),
    )
    assert error_reason(error) == "NOT_REGISTRANT"
    telkomsel.call(
        telkomsel.registry.ReportStolen,
        registry_pb2.ReportStolenRequest(
            imeis=[imei(501)], police_report="P", subscriber_imsi=TELKOMSEL_IMSI
        ),
    )
    error = fails(
        grpc.StatusCode.PERMISSION_DENIED,
        indosat.call,
        indosat.registry.ReportRecovered,
        registry_pb2.ReportRecoveredRequest(imeis=[imei(501)], police_report="P-R"),
    )
    assert error_reason(error) == "NOT_REPORTER"
    telkomsel.call(
        telkomsel.registry.ReportRecovered,
        registry_pb2.ReportRecoveredRequest(imeis=[imei(501)], police_report="P-R"),
    )


def test_a_check_stream_from_customs_is_refused_before_any_check(
    clients: dict[str, Client],
) -> None:
    customs = clients["customs"]
    stream = customs.check.CheckEquipmentStream(iter(()), metadata=customs.metadata, timeout=30)
    with pytest.raises(grpc.RpcError) as caught:
        list(stream)
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED

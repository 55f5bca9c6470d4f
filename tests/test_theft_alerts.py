"""Theft alerts: a blocked case's IMEI tried anywhere, with any SIM, is told
to the case's reporter, and to nobody else.

The checks go through the real server (unary, batch and stream); alerts are
written by the server's writer thread, which ``theft_watch.flush()`` runs at
once so the test need not wait.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from ceir.api.server import RunningServer
from ceir.domain.model import Caller, OrgKind
from ceir.service.clock import ManualClock
from ceir.service.theft_alerts import TheftWatch
from ceir.v1 import equipment_check_pb2, stolen_pb2

from .helpers import INDOSAT_IMSI, ROAMER_IMSI, TELKOMSEL_IMSI, Client, violations
from .test_stolen_cases import BLOCKED, RECOVERED, cases, device, file_case, key, update

XL_IMSI = "510111234567890"


def alerts(client: Client, page_size: int = 0) -> list[stolen_pb2.TheftAlert]:
    found: list[stolen_pb2.TheftAlert] = []
    token = ""
    while True:
        answer = client.call(
            cases(client).ListTheftAlerts,
            stolen_pb2.ListTheftAlertsRequest(page_size=page_size, page_token=token),
        )
        found.extend(answer.alerts)
        token = answer.next_page_token
        if not token:
            return found


def seen(server: RunningServer) -> None:
    assert server.theft_watch is not None
    server.theft_watch.flush()


def raised(server: RunningServer) -> float:
    value = server.metrics.registry.get_sample_value("ceir_theft_alerts_total")
    return value or 0.0


def test_an_attach_by_another_operator_with_another_sim_alerts_the_reporter_only(
    clients: dict[str, Client], server: RunningServer, clock: ManualClock
) -> None:
    telkomsel, indosat, kominfo = clients["telkomsel"], clients["indosat"], clients["kominfo"]
    case = file_case(telkomsel, 101)
    update(telkomsel, case.case_id, BLOCKED)
    indosat.check_imei(device(101), imsi=INDOSAT_IMSI, msisdn="+628561234567")
    seen(server)
    found = alerts(telkomsel)
    assert [(a.case_id, a.imei_key, a.imsi, a.msisdn, a.seen_by) for a in found] == [
        (case.case_id, key(101), INDOSAT_IMSI, "628561234567", "indosat")
    ]
    assert found[0].seen_time.ToMicroseconds() <= clock.now_us()
    assert raised(server) == 1
    # Nobody else reads them: not the operator that saw it, not a regulator.
    assert alerts(indosat) == [] and alerts(kominfo) == []
    error = _refused(clients["kemenperin"])
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED


def _refused(client: Client) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        alerts(client)
    return caught.value


def test_batches_streams_and_roamers_alert_too(
    clients: dict[str, Client], server: RunningServer
) -> None:
    telkomsel, xl = clients["telkomsel"], clients["xl"]
    case = file_case(telkomsel, 102, 103)
    update(telkomsel, case.case_id, BLOCKED)
    batch = equipment_check_pb2.CheckEquipmentBatchRequest(
        checks=[
            equipment_check_pb2.CheckEquipmentRequest(imei=device(104), imsi=XL_IMSI),
            equipment_check_pb2.CheckEquipmentRequest(imei=device(102), imsi=XL_IMSI),
        ]
    )
    xl.call(xl.check.CheckEquipmentBatch, batch)
    stream = xl.check.CheckEquipmentStream(
        iter(
            [
                equipment_check_pb2.CheckEquipmentStreamRequest(
                    correlation_id=1,
                    check=equipment_check_pb2.CheckEquipmentRequest(
                        imei=device(103),
                        imsi=ROAMER_IMSI,  # a foreign SIM: allowed, still seen
                    ),
                )
            ]
        ),
        metadata=xl.metadata,
        timeout=30,
    )
    assert [answer.correlation_id for answer in stream] == [1]
    seen(server)
    assert sorted((a.imei_key, a.imsi, a.seen_by) for a in alerts(telkomsel)) == [
        (key(102), XL_IMSI, "xl"),
        (key(103), ROAMER_IMSI, "xl"),
    ]


def test_a_burst_raises_one_alert_a_minute(
    clients: dict[str, Client], server: RunningServer, clock: ManualClock
) -> None:
    telkomsel, indosat = clients["telkomsel"], clients["indosat"]
    case = file_case(telkomsel, 105)
    update(telkomsel, case.case_id, BLOCKED)
    for _ in range(5):
        indosat.check_imei(device(105), imsi=INDOSAT_IMSI)
    seen(server)
    assert len(alerts(telkomsel)) == 1
    indosat.check_imei(device(105), imsi="510019999999999")  # another SIM: its own alert
    clock.advance(61)
    indosat.check_imei(device(105), imsi=INDOSAT_IMSI)  # a minute later: again
    seen(server)
    assert [a.imsi for a in alerts(telkomsel, page_size=1)] == [
        INDOSAT_IMSI,
        "510019999999999",
        INDOSAT_IMSI,
    ]


def test_pending_and_recovered_cases_raise_no_alert(
    clients: dict[str, Client], server: RunningServer
) -> None:
    telkomsel, indosat = clients["telkomsel"], clients["indosat"]
    pending = file_case(telkomsel, 106)
    recovered = file_case(telkomsel, 107)
    update(telkomsel, recovered.case_id, BLOCKED)
    update(telkomsel, recovered.case_id, RECOVERED)
    for serial in (106, 107):
        indosat.check_imei(device(serial), imsi=INDOSAT_IMSI)
    seen(server)
    assert alerts(telkomsel) == []
    assert pending.state == stolen_pb2.STOLEN_CASE_STATE_PENDING


def test_kominfo_reads_the_alerts_of_the_cases_it_filed(
    clients: dict[str, Client], server: RunningServer
) -> None:
    telkomsel, kominfo = clients["telkomsel"], clients["kominfo"]
    case = file_case(kominfo, 108, imsi=INDOSAT_IMSI)
    update(kominfo, case.case_id, BLOCKED, "police order")
    telkomsel.check_imei(device(108), imsi=TELKOMSEL_IMSI)
    seen(server)
    assert [(a.case_id, a.seen_by) for a in alerts(kominfo)] == [(case.case_id, "telkomsel")]
    assert alerts(telkomsel) == []


def test_a_bad_page_token_is_named(clients: dict[str, Client]) -> None:
    telkomsel = clients["telkomsel"]
    with pytest.raises(grpc.RpcError) as caught:
        telkomsel.call(
            cases(telkomsel).ListTheftAlerts, stolen_pb2.ListTheftAlertsRequest(page_token="x")
        )
    assert [field for field, _ in violations(caught.value)] == ["page_token"]


@pytest.fixture
def slow_watch(server: RunningServer) -> Iterator[TheftWatch]:
    watch = TheftWatch(server.register, limit=2, interval=3600)
    yield watch
    watch.close()


def test_a_full_queue_drops_and_counts_and_never_blocks(slow_watch: TheftWatch) -> None:
    slow_watch.block([int(key(109))], "SC-X", "telkomsel")
    caller = Caller("indosat", OrgKind.OPERATOR, ("510-01",))
    for _ in range(5):
        slow_watch.saw(caller, int(key(109)), INDOSAT_IMSI, "")
    assert slow_watch.dropped.value == 3  # type: ignore[attr-defined]
    assert slow_watch.flush() == 1  # the two queued are one burst

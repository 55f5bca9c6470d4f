"""Timestamps in requests: a google.protobuf.Timestamp holds 0001-01-01 to
9999-12-31 and nanos of 0 to 999,999,999; anything else is refused with the
field named, by RegisterDevice and row by row by ImportRegistrations."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from ceir.service.clock import ManualClock
from ceir.v1 import registry_pb2, types_pb2

from .helpers import Client, error_reason, imei, violations

DAY = 86_400
TIMESTAMP_MIN, TIMESTAMP_MAX = -62_135_596_800, 253_402_300_799


def _tourist(
    serial: int, seconds: int, nanos: int, source: int = types_pb2.REGISTRATION_SOURCE_TOURIST
) -> registry_pb2.DeviceRegistration:
    return registry_pb2.DeviceRegistration(
        imeis=[imei(serial, tac=35_111_000)],
        source=source,  # type: ignore[arg-type]
        valid_until=Timestamp(seconds=seconds, nanos=nanos),
    )


def _register(client: Client, device: registry_pb2.DeviceRegistration) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        client.call(
            client.registry.RegisterDevice, registry_pb2.RegisterDeviceRequest(device=device)
        )
    return caught.value


@pytest.mark.parametrize("nanos", [-1, 1_000_000_000, -(2**31), 2**31 - 1])
def test_register_device_refuses_nanos_out_of_range(
    clients: dict[str, Client], clock: ManualClock, nanos: int
) -> None:
    # A week ahead is a valid tourist expiry; only the nanos are wrong.
    seconds = clock.now_us() // 1_000_000 + 7 * DAY
    error = _register(clients["telkomsel"], _tourist(1, seconds, nanos))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(error) == "INVALID_REGISTRATION"
    assert [field for field, _ in violations(error)] == ["device.valid_until.nanos"]


@pytest.mark.parametrize("seconds", [TIMESTAMP_MIN - 1, TIMESTAMP_MAX + 1, -(2**63), 2**63 - 1])
@pytest.mark.parametrize(
    "source", [types_pb2.REGISTRATION_SOURCE_TOURIST, types_pb2.REGISTRATION_SOURCE_GRANDFATHERED]
)
def test_register_device_refuses_seconds_outside_years_1_to_9999(
    clients: dict[str, Client], seconds: int, source: int
) -> None:
    error = _register(clients["telkomsel"], _tourist(2, seconds, 0, source))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    # Named once, as the value it is, and not judged again as an expiry.
    assert [field for field, _ in violations(error)] == ["device.valid_until.seconds"]


def test_a_bad_timestamp_is_reported_with_the_devices_other_violations(
    clients: dict[str, Client],
) -> None:
    device = _tourist(3, TIMESTAMP_MAX + 1, -5)
    device.imeis.append("12345")
    error = _register(clients["telkomsel"], device)
    assert sorted(field for field, _ in violations(error)) == [
        "device.imeis[1]",
        "device.valid_until.nanos",
        "device.valid_until.seconds",
    ]


def test_an_import_rejects_the_row_with_a_bad_timestamp_and_keeps_the_others(
    clients: dict[str, Client], clock: ManualClock
) -> None:
    telkomsel = clients["telkomsel"]
    seconds = clock.now_us() // 1_000_000 + 7 * DAY
    rows = [
        registry_pb2.ImportRow(row=2, device=_tourist(10, seconds, 0)),
        registry_pb2.ImportRow(row=3, device=_tourist(11, seconds, 1_000_000_000)),
        registry_pb2.ImportRow(row=4, device=_tourist(12, TIMESTAMP_MIN - 1, 0)),
    ]
    answer = telkomsel.call(
        telkomsel.registry.ImportRegistrations,
        iter([registry_pb2.ImportRegistrationsRequest(rows=rows)]),
    )
    assert answer.rows_accepted == 1
    assert [(r.row, r.field) for r in answer.rejections] == [
        (3, "device.valid_until.nanos"),
        (4, "device.valid_until.seconds"),
    ]


def test_timestamps_at_the_edges_of_the_range_are_judged_as_expiries(
    clients: dict[str, Client],
) -> None:
    # In range for a Timestamp, so the tourist rules speak.
    for serial, seconds, expected in (
        (20, TIMESTAMP_MIN, "must be in the future"),
        (21, TIMESTAMP_MAX, "a tourist registration lasts at most 90 days"),
    ):
        error = _register(clients["telkomsel"], _tourist(serial, seconds, 999_999_999))
        assert violations(error) == [("device.valid_until", expected)]

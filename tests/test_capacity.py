"""The register's capacity, its range guard and the range finder, through
a real server on a socket (``ceir serve --capacity N --range-guard K``)."""

from __future__ import annotations

import gc
import logging
import urllib.request
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from ceir.api.server import RunningServer, ServerConfig, create_server
from ceir.service.clock import ManualClock
from ceir.service.orgs import add_organisation
from ceir.storage.database import Database
from ceir.v1 import equipment_check_pb2, registry_pb2, types_pb2

from .helpers import ORGS, TELKOMSEL_IMSI, Client, error_reason, imei, violations

CAPACITY = 100
TAC = 35209900
RANGE_TAC = 86000001


def _quota(error: grpc.RpcError) -> list[tuple[str, str]]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    found: list[tuple[str, str]] = []
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
            quota = error_details_pb2.QuotaFailure()
            detail.Unpack(quota)
            found.extend((v.subject, v.description) for v in quota.violations)
    return found


def _start(url: str, **settings: int) -> RunningServer:
    return create_server(
        ServerConfig(
            db=url,
            address="127.0.0.1:0",
            clock=ManualClock(),
            access_log=False,
            insecure=True,
            ephemeral_signing_key=True,
            metrics_port=0,
            **settings,  # type: ignore[arg-type]
        )
    )


@pytest.fixture
def url(db_url: str) -> str:
    return db_url  # SQLite and PostgreSQL: a refused write rolls back on both


@pytest.fixture
def org_tokens(url: str) -> dict[str, str]:
    db = Database(url)
    db.migrate()
    try:
        return {n: add_organisation(db, n, kind, codes) for n, (kind, codes) in ORGS.items()}
    finally:
        db.dispose()


@pytest.fixture
def capped(url: str, org_tokens: dict[str, str]) -> Iterator[RunningServer]:
    running = _start(url, capacity=CAPACITY, range_guard=50)
    yield running
    running.stop(grace=1)
    gc.collect()


@pytest.fixture
def orgs(capped: RunningServer, org_tokens: dict[str, str]) -> Iterator[dict[str, Client]]:
    with grpc.insecure_channel(f"127.0.0.1:{capped.port}") as channel:
        yield {name: Client(channel, token) for name, token in org_tokens.items()}


def _rows(keys: list[int], first_row: int = 1, reference: str = "TPP-1") -> list[Any]:
    return [
        registry_pb2.ImportRow(
            row=first_row + index,
            device=registry_pb2.DeviceRegistration(
                imeis=[imei(key % 1_000_000, key // 1_000_000)],
                source=types_pb2.REGISTRATION_SOURCE_TPP_IMPORT,
                reference=reference,
            ),
        )
        for index, key in enumerate(keys)
    ]


def _import(
    client: Client,
    chunks: list[list[Any]],
    request_id: str = "",
    confirm: bool = False,
) -> registry_pb2.ImportRegistrationsResponse:
    requests = [
        registry_pb2.ImportRegistrationsRequest(
            request_id=request_id, rows=rows, confirm_ranges=confirm
        )
        for rows in chunks
    ]
    return client.call(client.registry.ImportRegistrations, iter(requests))


def _scattered(count: int, start: int = 0) -> list[int]:
    """Keys two serials apart: no two consecutive (the guard lets them through)."""
    return [TAC * 1_000_000 + start + 2 * i for i in range(count)]


def _record(client: Client, value: str) -> registry_pb2.GetImeiRecordResponse:
    return client.call(client.registry.GetImeiRecord, registry_pb2.GetImeiRecordRequest(imei=value))


def test_a_chunk_past_the_capacity_is_refused_whole_with_a_quota_failure(
    capped: RunningServer, orgs: dict[str, Client]
) -> None:
    kemenperin = orgs["kemenperin"]
    first = _import(kemenperin, [_rows(_scattered(60))], "first")
    assert first.rows_accepted == 60
    sequence = capped.register.state.sequence
    # Two chunks in one stream: the first (30) fits, the second (30) does not.
    with pytest.raises(grpc.RpcError) as refused:
        _import(kemenperin, [_rows(_scattered(30, 1_000)), _rows(_scattered(30, 2_000))], "second")
    error = refused.value
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_reason(error) == "REGISTER_FULL"
    [(subject, description)] = _quota(error)
    assert subject == "whitelist"
    assert "capacity 100 IMEIs" in description and "90 used" in description
    # The first chunk was acknowledged and stays; nothing of the second is written.
    assert capped.register.state.sizes()["whitelist"] == 90
    assert capped.register.state.sequence == sequence + 30
    second_first = imei(2_000, TAC)
    assert not _record(kemenperin, second_first).HasField("registration")
    # A single registration that fits is taken; one past the capacity refused.
    for serial in range(3_000, 3_020, 2):
        kemenperin.register(imei(serial, TAC))
    with pytest.raises(grpc.RpcError) as full:
        kemenperin.register(imei(3_100, TAC), request_id="late-1")
    assert full.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _quota(full.value)
    record = _record(kemenperin, imei(3_000, TAC))
    assert (record.capacity.used, record.capacity.limit, record.capacity.near_limit) == (
        100,
        100,
        True,
    )
    # Revoking makes room; the refused request, sent again with its id, is taken.
    kemenperin.call(
        kemenperin.registry.RevokeRegistration,
        registry_pb2.RevokeRegistrationRequest(imeis=[imei(0, TAC)], reason="range cleanup"),
    )
    again = kemenperin.register(imei(3_100, TAC), request_id="late-1")
    assert again.sequence == capped.register.state.sequence


def test_the_register_warns_once_at_90_percent(
    capped: RunningServer, orgs: dict[str, Client], caplog: pytest.LogCaptureFixture
) -> None:
    kemenperin = orgs["kemenperin"]
    caplog.set_level(logging.WARNING, logger="ceir.capacity")
    _import(kemenperin, [_rows(_scattered(89))])
    assert _metric(capped, "ceir_whitelist_near_capacity") == 0.0
    assert not [r for r in caplog.records if r.name == "ceir.capacity"]
    for serial in range(5_000, 5_008, 2):
        kemenperin.register(imei(serial, TAC))  # 90, 91, 92, 93: one crossing
    warnings = [r for r in caplog.records if r.name == "ceir.capacity"]
    assert len(warnings) == 1
    assert "near its capacity" in warnings[0].getMessage()
    assert warnings[0].__dict__["used"] == 90 and warnings[0].__dict__["limit"] == 100
    assert _metric(capped, "ceir_whitelist_near_capacity") == 1.0
    assert _metric(capped, "ceir_whitelist_capacity") == 100.0
    assert _metric(capped, "ceir_whitelist_capacity_fill") == pytest.approx(0.93)


def _metric(server: RunningServer, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics") as answer:
        text = answer.read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported:\n{text}")


def test_the_range_guard_refuses_a_dense_chunk_unless_confirmed(
    capped: RunningServer, orgs: dict[str, Client]
) -> None:
    kemenperin = orgs["kemenperin"]
    dense = [RANGE_TAC * 1_000_000 + serial for serial in range(60)]  # 60 > 50 consecutive
    sequence = capped.register.state.sequence
    with pytest.raises(grpc.RpcError) as refused:
        _import(kemenperin, [_rows(dense, first_row=10)], "range")
    error = refused.value
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(error) == "DENSE_RANGE"
    [(field, description)] = violations(error)
    assert field == "rows"
    assert "rows 10 to 69" in description and "60 consecutive serials" in description
    assert f"{dense[0]:014d} to {dense[-1]:014d}" in description
    assert capped.register.state.sequence == sequence
    # 50 consecutive are allowed; 60 confirmed are taken.
    assert _import(kemenperin, [_rows(dense[:50])], "short").rows_accepted == 50
    more = [RANGE_TAC * 1_000_000 + 100 + serial for serial in range(40)]
    confirmed = _import(kemenperin, [_rows(more)], "confirmed", confirm=True)
    assert confirmed.rows_accepted == 40


def test_without_limits_nothing_is_refused(url: str, org_tokens: dict[str, str]) -> None:
    running = _start(url)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            kemenperin = Client(channel, org_tokens["kemenperin"])
            dense = [RANGE_TAC * 1_000_000 + serial for serial in range(300)]
            assert _import(kemenperin, [_rows(dense)]).rows_accepted == 300
            record = _record(kemenperin, imei(0, RANGE_TAC))
            assert (record.capacity.used, record.capacity.limit) == (300, 0)
            assert not record.capacity.near_limit
    finally:
        running.stop(grace=1)


def test_the_range_finder_lists_unseen_runs_by_uploader(
    url: str, org_tokens: dict[str, str]
) -> None:
    running = _start(url)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            orgs = {name: Client(channel, token) for name, token in org_tokens.items()}
            kemenperin = orgs["kemenperin"]
            base = RANGE_TAC * 1_000_000
            # Importer A uploads 0..299 (300 IMEIs); one of them, 150, is a real phone.
            _import(kemenperin, [_rows([base + s for s in range(300)], reference="TPP-A")])
            # Importer B: 300..399 right after A's (another reference: another run).
            _import(kemenperin, [_rows([base + 300 + s for s in range(100)], reference="TPP-B")])
            # Real units: scattered serials; and a short run of 20 (below min_run).
            _import(kemenperin, [_rows(_scattered(50), reference="TPP-C")])
            _import(kemenperin, [_rows([base + 5_000 + s for s in range(20)], reference="TPP-D")])
            telkomsel = orgs["telkomsel"]
            for key in (base + 150, TAC * 1_000_000):
                answer = telkomsel.check_imei(imei(key % 1_000_000, key // 1_000_000))
                assert answer.status == types_pb2.EQUIPMENT_STATUS_WHITELISTED
            request = registry_pb2.FindRangeUploadsRequest(min_run=50)
            with pytest.raises(grpc.RpcError) as denied:
                telkomsel.call(telkomsel.registry.FindRangeUploads, request)
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
            found = orgs["kominfo"].call(orgs["kominfo"].registry.FindRangeUploads, request)
            runs = [(r.reference, r.first_imei_key, r.last_imei_key, r.imeis) for r in found.ranges]
            assert runs == [
                ("TPP-A", f"{base:014d}", f"{base + 149:014d}", 150),
                ("TPP-A", f"{base + 151:014d}", f"{base + 299:014d}", 149),
                ("TPP-B", f"{base + 300:014d}", f"{base + 399:014d}", 100),
            ]
            assert all(r.registered_by == "kemenperin" for r in found.ranges)
            assert found.total_imeis == 399
            assert found.checks_observed == 2
            # Pages of one range each follow on.
            first = kemenperin.call(
                kemenperin.registry.FindRangeUploads,
                registry_pb2.FindRangeUploadsRequest(min_run=50, page_size=2),
            )
            assert len(first.ranges) == 2 and first.next_page_token
            rest = kemenperin.call(
                kemenperin.registry.FindRangeUploads,
                registry_pb2.FindRangeUploadsRequest(
                    min_run=50, page_size=2, page_token=first.next_page_token
                ),
            )
            assert [r.reference for r in rest.ranges] == ["TPP-B"] and not rest.next_page_token
    finally:
        running.stop(grace=1)


def test_a_check_batch_marks_imeis_seen(url: str, org_tokens: dict[str, str]) -> None:
    running = _start(url)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            kemenperin = Client(channel, org_tokens["kemenperin"])
            telkomsel = Client(channel, org_tokens["telkomsel"])
            base = RANGE_TAC * 1_000_000
            _import(kemenperin, [_rows([base + s for s in range(100)])])
            batch = equipment_check_pb2.CheckEquipmentBatchRequest(
                checks=[
                    equipment_check_pb2.CheckEquipmentRequest(
                        imei=imei(s, RANGE_TAC), imsi=TELKOMSEL_IMSI
                    )
                    for s in range(0, 100, 10)
                ]
            )
            telkomsel.call(telkomsel.check.CheckEquipmentBatch, batch)
            found = kemenperin.call(
                kemenperin.registry.FindRangeUploads,
                registry_pb2.FindRangeUploadsRequest(min_run=5),
            )
            assert [r.imeis for r in found.ranges] == [9] * 10
    finally:
        running.stop(grace=1)

"""The server as a generic client sees it: health, reflection, metrics,
graceful shutdown, and a whole round trip using reflection and a token only."""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from ceir.api.server import RunningServer, ServerConfig, create_server
from ceir.service.orgs import add_organisation
from ceir.storage.database import Database

from .helpers import TELKOMSEL_IMSI, imei


def test_health_reports_serving_without_a_token(channel: grpc.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", "ceir.v1.EquipmentCheckService", "ceir.v1.ListSyncService"):
        answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


class ReflectionClient:
    """Calls any method knowing only its full name, as grpcurl does."""

    def __init__(self, channel: grpc.Channel, token: str) -> None:
        self.channel = channel
        self.metadata = (("authorization", f"Bearer {token}"),)
        self.pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))

    def services(self) -> list[str]:
        database = ProtoReflectionDescriptorDatabase(self.channel)
        return sorted(database.get_services())

    def call(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        service_name, method_name = method.rsplit("/", 1)
        described = self.pool.FindServiceByName(service_name).FindMethodByName(method_name)
        request_type = message_factory.GetMessageClass(described.input_type)
        response_type = message_factory.GetMessageClass(described.output_type)
        request = json_format.ParseDict(body, request_type())
        path = f"/{service_name}/{method_name}"
        if described.server_streaming:
            stream = self.channel.unary_stream(
                path,
                request_serializer=request_type.SerializeToString,
                response_deserializer=response_type.FromString,
            )(request, metadata=self.metadata, timeout=30)
            first = next(iter(stream))
            stream.cancel()  # type: ignore[no-untyped-call]
            return json_format.MessageToDict(first)
        answer = self.channel.unary_unary(
            path,
            request_serializer=request_type.SerializeToString,
            response_deserializer=response_type.FromString,
        )(request, metadata=self.metadata, timeout=30)
        return json_format.MessageToDict(answer)


def test_a_generic_client_needs_only_reflection_and_a_token(
    channel: grpc.Channel, tokens: dict[str, str]
) -> None:
    kemenperin = ReflectionClient(channel, tokens["kemenperin"])
    assert {
        "ceir.v1.EquipmentCheckService",
        "ceir.v1.RegistryService",
        "ceir.v1.ListSyncService",
        "ceir.v1.PolicyService",
        "grpc.health.v1.Health",
    } <= set(kemenperin.services())
    device = imei(77)
    registered = kemenperin.call(
        "ceir.v1.RegistryService/RegisterDevice",
        {
            "requestId": "grpcurl-1",
            "device": {
                "imeis": [device],
                "source": "REGISTRATION_SOURCE_TPP_IMPORT",
                "brand": "Nokia",
                "model": "3310",
            },
        },
    )
    assert registered["sequence"] == "1"
    operator = ReflectionClient(channel, tokens["telkomsel"])
    for form in (device[:14], device, device[:14] + "12"):
        answer = operator.call(
            "ceir.v1.EquipmentCheckService/CheckEquipment",
            {"imei": form, "imsi": "510101234567890"},
        )
        assert answer["status"] == "EQUIPMENT_STATUS_WHITELISTED"
        assert answer["reasons"] == ["REASON_REGISTERED"]
    change = operator.call("ceir.v1.ListSyncService/WatchChanges", {"afterSequence": "0"})
    assert change["changes"][0]["kind"] == "CHANGE_KIND_WHITELIST_ADDED"
    assert change["changes"][0]["imeiKey"] == device[:14]


@pytest.fixture
def metered(tmp_path: Path) -> Iterator[tuple[RunningServer, str]]:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    db = Database(url)
    db.migrate()
    token = add_organisation(db, "telkomsel", "operator", ["510-10"])
    db.dispose()
    running = create_server(
        ServerConfig(db=url, address="127.0.0.1:0", metrics_port=0, access_log=True, insecure=True)
    )
    yield running, token
    running.stop(grace=1)


def test_metrics_count_calls_by_method_and_code(
    metered: tuple[RunningServer, str], caplog: pytest.LogCaptureFixture
) -> None:
    from ceir.v1 import equipment_check_pb2, equipment_check_pb2_grpc

    running, token = metered
    caplog.set_level(logging.INFO, logger="ceir.access")
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        stub = equipment_check_pb2_grpc.EquipmentCheckServiceStub(channel)
        stub.CheckEquipment(
            # the operator's own subscriber: a notification
            equipment_check_pb2.CheckEquipmentRequest(imei=imei(1), imsi=TELKOMSEL_IMSI),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=10,
        )
        with pytest.raises(grpc.RpcError):
            stub.CheckEquipment(equipment_check_pb2.CheckEquipmentRequest(imei=imei(1)), timeout=10)
    assert running.metrics_port is not None
    url = f"http://127.0.0.1:{running.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as page:
        text = page.read().decode()
    assert 'ceir_rpc_calls_total{code="OK",method="CheckEquipment"} 1.0' in text
    assert 'ceir_rpc_calls_total{code="UNAUTHENTICATED",method="CheckEquipment"} 1.0' in text
    assert 'ceir_list_entries{list="notification"} 1.0' in text
    assert "ceir_rpc_latency_seconds_bucket" in text
    assert running.access_log is not None
    running.access_log.flush()  # written by the access log's thread
    lines = [r for r in caplog.records if r.name == "ceir.access"]
    assert [(r.method, r.code, r.org) for r in lines] == [  # type: ignore[attr-defined]
        ("CheckEquipment", "OK", "telkomsel"),
        ("CheckEquipment", "UNAUTHENTICATED", "-"),
    ]


def test_shutdown_turns_health_off_and_stops_serving(metered: tuple[RunningServer, str]) -> None:
    running, _token = metered
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert (
            health.Check(health_pb2.HealthCheckRequest(), timeout=10).status
            == health_pb2.HealthCheckResponse.SERVING
        )
        running.stop(grace=1)
        with pytest.raises(grpc.RpcError) as caught:
            health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert caught.value.code() in (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.DEADLINE_EXCEEDED,
        )

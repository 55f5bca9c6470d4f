"""The hostile load of the starvation test and of ``make bench`` does what it
says: its silent calls reach the server without ever sending a message, its
frozen child is stopped, and it leaves no process behind."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from benchmarks.hostile_load import SILENT_METHODS, HostileLoad, HostileSpec
from ceir.v1 import equipment_check_pb2

NONE = HostileSpec(silent=0, watches=0, frozen=0, lifetime=60)


@dataclass
class Seen(grpc.ServerInterceptor):  # type: ignore[type-arg]  # generic only in stubs
    """The methods of the calls the server has begun (before any message)."""

    methods: list[str] = field(default_factory=list)

    def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        self.methods.append(details.method)
        return continuation(details)


@dataclass
class BareServer:
    target: str
    seen: Seen
    requests: list[equipment_check_pb2.CheckEquipmentRequest]


@pytest.fixture
def bare_server() -> Iterator[BareServer]:
    """A threaded server answering CheckEquipment only, recording every
    call it begins and every request message it receives."""
    seen = Seen()
    requests: list[equipment_check_pb2.CheckEquipmentRequest] = []

    def check(
        request: equipment_check_pb2.CheckEquipmentRequest, context: grpc.ServicerContext
    ) -> equipment_check_pb2.CheckEquipmentResponse:
        requests.append(request)
        return equipment_check_pb2.CheckEquipmentResponse()

    handler = grpc.unary_unary_rpc_method_handler(
        check,
        request_deserializer=equipment_check_pb2.CheckEquipmentRequest.FromString,
        response_serializer=equipment_check_pb2.CheckEquipmentResponse.SerializeToString,
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8),
        interceptors=[seen],
        handlers=[
            grpc.method_handlers_generic_handler(
                "ceir.v1.EquipmentCheckService", {"CheckEquipment": handler}
            )
        ],
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield BareServer(f"127.0.0.1:{port}", seen, requests)
    server.stop(0).wait()


def test_silent_calls_reach_the_server_and_never_send_a_message(bare_server: BareServer) -> None:
    spec = HostileSpec(silent=2 * len(SILENT_METHODS), watches=0, frozen=0, lifetime=60)
    with HostileLoad(bare_server.target, "no-token", spec, after_sequence=0) as load:
        deadline = time.monotonic() + 10
        while len(bare_server.seen.methods) < spec.silent and time.monotonic() < deadline:
            time.sleep(0.05)
        (tally,) = load.status()
    assert sorted(bare_server.seen.methods) == sorted(SILENT_METHODS * 2)
    assert bare_server.requests == []
    # The unary CheckEquipment calls were held, waiting for their message;
    # the methods this server lacks were answered at once.
    assert tally.held == 2
    assert [(code, count) for code, count, _details in tally.ended] == [
        ("UNIMPLEMENTED", spec.silent - 2)
    ]


def test_the_load_stops_its_frozen_child_and_leaves_no_process_behind(
    bare_server: BareServer,
) -> None:
    before = {child.pid for child in multiprocessing.active_children()}
    spec = HostileSpec(silent=3, watches=3, frozen=3, lifetime=60)
    with HostileLoad(bare_server.target, "token", spec, after_sequence=0):
        children = [c for c in multiprocessing.active_children() if c.pid not in before]
        states = sorted(_state(child.pid) for child in children if child.pid is not None)
    assert len(children) == 3
    assert states.count("T") == 1  # the frozen one
    assert not any(child.is_alive() for child in children)


def test_the_load_refuses_a_target_off_this_machine() -> None:
    with pytest.raises(ValueError, match="loopback"):
        HostileLoad("192.0.2.1:443", "token", NONE)


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]

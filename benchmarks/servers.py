"""Servers under load, each in a process of its own.

The load generator runs in the benchmark's process; a server in the same
process would share its interpreter lock with the client threads and the
comparison would measure the client as much as the server. Each server
process answers two commands on a pipe: its CPU time so far, and stop.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

import grpc

from ceir.api.observability import configure_logging
from ceir.api.server import GRPC_OPTIONS, ServerConfig, create_server
from ceir.v1 import equipment_check_pb2 as check_pb
from ceir.v1 import equipment_check_pb2_grpc as check_grpc
from ceir.v1 import types_pb2

_SPAWN = multiprocessing.get_context("spawn")
START_TIMEOUT = 120.0
ECHO_THREADS = 32  # the threaded echo server's pool, as the register once had


class ServerProcess:
    """A server running in a child process, stopped on exit from ``with``."""

    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        self._pipe, child = _SPAWN.Pipe()
        self._process = _SPAWN.Process(target=target, args=(*args, child), daemon=True)
        self._process.start()
        child.close()
        if not self._pipe.poll(START_TIMEOUT):
            self._process.kill()
            raise RuntimeError(f"{target.__name__} did not start in {START_TIMEOUT:.0f}s")
        self.port: int = self._pipe.recv()
        self.target = f"127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far."""
        self._pipe.send("cpu")
        seconds: float = self._pipe.recv()
        return seconds

    def stop(self) -> None:
        if self._process.is_alive():
            self._pipe.send("stop")
            self._process.join(30)
        if self._process.is_alive():
            self._process.kill()
        self._pipe.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def ceir_server(db: str, access_log: bool, log_path: str) -> ServerProcess:
    """The register with its default settings, logging JSON lines to a file
    as it would to its log collector."""
    return ServerProcess(_run_ceir, db, access_log, log_path)


def echo_server(kind: str = "threaded") -> ServerProcess:
    """A bare EquipmentCheckService with the register's server settings:
    ``threaded`` (a pool of threads) or ``asyncio`` (grpc.aio, as the register)."""
    return ServerProcess(_run_echo if kind == "threaded" else _run_aio_echo)


# --- in the child process -----------------------------------------------------------


def _run_ceir(db: str, access_log: bool, log_path: str, pipe: Connection) -> None:
    with open(log_path, "a", encoding="utf-8") as log:
        configure_logging("INFO", stream=log)  # as `ceir serve` does, to a file
        running = create_server(
            ServerConfig(db=db, address="127.0.0.1:0", access_log=access_log, insecure=True)
        )
        _answer(pipe, running.port, lambda: running.stop(grace=1.0))


# The answer the echo server gives: the shape of the register's answer to a
# registered device (status, one reason, a 14-digit key, a sequence).
ECHO_RESPONSE = check_pb.CheckEquipmentResponse(
    status=types_pb2.EQUIPMENT_STATUS_WHITELISTED,
    reasons=[types_pb2.REASON_REGISTERED],
    imei_key="35209900176148",
    sequence=200_123,
)
ECHO_BYTES = ECHO_RESPONSE.SerializeToString()


class EchoServicer(check_grpc.EquipmentCheckServiceServicer):
    """Answers every CheckEquipment with the same response, doing nothing else."""

    def CheckEquipment(
        self, request: check_pb.CheckEquipmentRequest, context: grpc.ServicerContext
    ) -> check_pb.CheckEquipmentResponse:
        return ECHO_RESPONSE

    def CheckEquipmentBatch(
        self, request: check_pb.CheckEquipmentBatchRequest, context: grpc.ServicerContext
    ) -> check_pb.CheckEquipmentBatchResponse:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "the echo server answers CheckEquipment")

    def CheckEquipmentStream(
        self,
        request_iterator: Iterator[check_pb.CheckEquipmentStreamRequest],
        context: grpc.ServicerContext,
    ) -> Iterator[check_pb.CheckEquipmentStreamResponse]:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "the echo server answers CheckEquipment")


def _run_echo(pipe: Connection) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=ECHO_THREADS), options=GRPC_OPTIONS)
    check_grpc.add_EquipmentCheckServiceServicer_to_server(EchoServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()

    def stop() -> None:
        server.stop(1.0).wait()

    _answer(pipe, port, stop)


def _run_aio_echo(pipe: Connection) -> None:
    loop = asyncio.new_event_loop()

    async def check(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        return ECHO_BYTES

    async def start() -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server(options=GRPC_OPTIONS)
        handler = grpc.unary_unary_rpc_method_handler(check)  # raw bytes both ways
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "ceir.v1.EquipmentCheckService", {"CheckEquipment": handler}
                ),
            )
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server, port = asyncio.run_coroutine_threadsafe(start(), loop).result()

    def stop() -> None:
        asyncio.run_coroutine_threadsafe(server.stop(1.0), loop).result()
        loop.call_soon_threadsafe(loop.stop)

    _answer(pipe, port, stop)


def _answer(pipe: Connection, port: int, stop: Callable[[], None]) -> None:
    pipe.send(port)
    while True:
        try:
            command = pipe.recv()
        except EOFError:  # the benchmark died: do not outlive it
            command = "stop"
        if command == "cpu":
            pipe.send(time.process_time())
        elif command == "stop":
            stop()
            return

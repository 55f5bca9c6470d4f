"""Servers under load, each in a process of its own.

The load generator runs in the benchmark's process; a server in the same
process would share its interpreter lock with the client threads and the
comparison would measure the client as much as the server. Each server
process answers two commands on a pipe: its CPU time so far, and stop.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import grpc

from ceir.api.observability import configure_logging
from ceir.api.server import GRPC_OPTIONS, ServerConfig, create_server
from ceir.v1 import equipment_check_pb2 as check_pb
from ceir.v1 import equipment_check_pb2_grpc as check_grpc
from ceir.v1 import types_pb2

from .child import START_TIMEOUT, ChildProcess

ECHO_THREADS = 32  # the threaded echo server's pool, as the register once had


class ServerProcess(ChildProcess):
    """A server running in a child process, stopped on exit from ``with``."""

    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        super().__init__(target, *args)
        self.port: int = self.ready
        self.target = f"127.0.0.1:{self.port}"


def ceir_server(
    db: str,
    access_log: bool,
    log_path: str,
    *,
    signing_key: str = "",
    ephemeral_signing_key: bool = False,
) -> ServerProcess:
    """The register with its default settings, logging JSON lines to a file
    as it would to its log collector; signing checkpoints with the key in
    ``signing_key``, or one made up at start (``ephemeral_signing_key``)."""
    return ServerProcess(_run_ceir, db, access_log, log_path, signing_key, ephemeral_signing_key)


def echo_server(kind: str = "threaded") -> ServerProcess:
    """A bare EquipmentCheckService with the register's server settings:
    ``threaded`` (a pool of threads) or ``asyncio`` (grpc.aio, as the register)."""
    return ServerProcess(_run_echo if kind == "threaded" else _run_aio_echo)


# --- in the child process -----------------------------------------------------------


def _run_ceir(
    db: str,
    access_log: bool,
    log_path: str,
    signing_key: str,
    ephemeral_signing_key: bool,
    pipe: Connection,
) -> None:
    with open(log_path, "a", encoding="utf-8") as log:
        configure_logging("INFO", stream=log)  # as `ceir serve` does, to a file
        running = create_server(
            ServerConfig(
                db=db,
                address="127.0.0.1:0",
                access_log=access_log,
                insecure=True,
                signing_key=Path(signing_key) if signing_key else None,
                ephemeral_signing_key=ephemeral_signing_key,
            )
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


class CeirServe:
    """``ceir serve`` on a database in a process of its own, its log in a file
    beside the database (JSON lines on stderr), no access log."""

    def __init__(self, db: Path, key: Path | None = None, timeout: float = START_TIMEOUT) -> None:
        ceir = str(Path(sys.executable).parent / "ceir")
        signing = ("--signing-key", str(key)) if key is not None else ()
        self.timeout = timeout
        self.log = db.with_suffix(".log")
        self._log_file = open(self.log, "w", encoding="utf-8")  # noqa: SIM115  # closed on exit
        self.process = subprocess.Popen(
            [
                *(ceir, "serve", "--db", str(db), *signing),
                *("--insecure", "--listen", "127.0.0.1:0", "--no-access-log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=self._log_file,
        )
        self.port = self._port()

    def _port(self) -> int:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ceir serve exited: {self.log.read_text()[-2000:]}")
            for line in self.log.read_text(encoding="utf-8").splitlines():
                if line.startswith("{") and json.loads(line).get("msg") == "serving":
                    return int(json.loads(line)["port"])
            time.sleep(0.02)
        raise RuntimeError("ceir serve did not start")

    def rss(self) -> int:
        """The server process's resident memory in bytes (Linux)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        kilobytes = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(kilobytes.split()[1]) * 1024

    def stop_and_read(self) -> list[str]:
        """SIGTERM (a clean shutdown), then the server's log lines."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(self.timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()
        return self.log.read_text(encoding="utf-8").splitlines()

    def __enter__(self) -> CeirServe:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop_and_read()

"""The drill's servers, each a process of its own: ``ceir serve`` twice and the witness.

They are started as an operator would start them, from the ``ceir``
command line, each logging to its own file in the report's ``logs/``; the
drill talks to them over gRPC only. A server is killed with SIGKILL to
stage a crash, and started again on the same database and port.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

__all__ = ["ServerProcess", "ceir_command", "free_port", "wait_serving"]


def free_port() -> int:
    """A port nothing listens on now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ceir_command() -> list[str]:
    """How to run ``ceir``: the installed script beside this interpreter, if any."""
    script = Path(sys.executable).parent / "ceir"
    if script.is_file():
        return [str(script)]
    found = shutil.which("ceir")
    if found:
        return [found]
    return [sys.executable, "-c", "from ceir.cli import app; app()"]


def wait_serving(channel: grpc.Channel, timeout: float, alive: Callable[[], bool]) -> bool:
    """Wait until the server's health service says SERVING."""
    stub = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        try:
            answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
            if answer.status == health_pb2.HealthCheckResponse.SERVING:
                return True
        except grpc.RpcError:
            pass
        time.sleep(0.1)
    return False


class ServerProcess:
    """A server the drill runs: its command line, its log file, its process."""

    def __init__(self, name: str, command: Sequence[str], log_path: Path) -> None:
        self.name = name
        self.command = list(command)
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            log.write(f"--- {time.strftime('%H:%M:%S')} {' '.join(self.command)}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,  # a ^C to the drill is the drill's to pass on
            )

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def kill(self) -> None:
        """SIGKILL: no chance to shut down cleanly (a crash)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def tail(self, characters: int = 3000) -> str:
        """The end of the log, for an error message."""
        try:
            return self.log_path.read_text(errors="replace")[-characters:]
        except OSError:
            return ""

"""A benchmark's helper process (a server, a load client) and the pipe to it.

The child gets its end of the pipe as its last argument and sends one
message once it is ready (a server: its port); then it answers ``"cpu"``
with its CPU seconds and returns on ``"stop"``.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

SPAWN = multiprocessing.get_context("spawn")
START_TIMEOUT = 120.0


class ChildProcess:
    """A child process started and waited for; stopped on exit from ``with``."""

    def __init__(self, target: Callable[..., None], *args: Any, stop_timeout: float = 30) -> None:
        self._pipe, child = SPAWN.Pipe()
        self._process = SPAWN.Process(target=target, args=(*args, child), daemon=True)
        self._process.start()
        child.close()
        self._stop_timeout = stop_timeout
        if not self._pipe.poll(START_TIMEOUT):
            self._process.kill()
            raise RuntimeError(f"{target.__name__} did not start in {START_TIMEOUT:.0f}s")
        self.ready: Any = self._pipe.recv()  # what the child said once ready

    def cpu_seconds(self) -> float:
        """User + system CPU time the child process has used so far."""
        self._pipe.send("cpu")
        seconds: float = self._pipe.recv()
        return seconds

    def stop(self) -> None:
        if self._process.is_alive():
            self._pipe.send("stop")
            self._process.join(self._stop_timeout)
        if self._process.is_alive():
            self._process.kill()
        self._pipe.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

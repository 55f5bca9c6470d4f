"""Clocks. Production uses the system clock; tests and the demo move time by
hand, so phases, grace periods and tourist expiry are tested without sleeping."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now_us(self) -> int:
        """The current time in Unix microseconds."""
        ...


class SystemClock:
    def now_us(self) -> int:
        return time.time_ns() // 1_000


class ManualClock:
    """A clock that runs with the system clock plus an offset that can be moved."""

    def __init__(self, offset_us: int = 0) -> None:
        self._offset_us = offset_us
        self._lock = threading.Lock()

    def now_us(self) -> int:
        return time.time_ns() // 1_000 + self._offset_us

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset_us += int(seconds * 1_000_000)

"""What happened when during a drill: ceremony steps and write outcomes.

Every time is in seconds since the drill's traffic started (``Timeline.now``),
so the report can draw steps, attaches and writes on one axis.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Mark:
    """A ceremony step or a fault the drill caused (``FROZEN``, ``incoming killed``)."""

    at: float
    step: str
    detail: str = ""


@dataclass(frozen=True)
class WriteEvent:
    """One outcome of one attempt of a list write.

    ``kind``: ``acknowledged`` (the register answered with a sequence),
    ``refused`` (an error the writer follows: REGISTER_FROZEN, REGISTER_MOVED,
    NOT_CUSTODIAN, or the register unreachable), ``retried`` (the same
    request id sent again), ``failed`` (an error the writer gives up on).
    """

    at: float
    kind: str
    reason: str = ""
    endpoint: str = ""


class Timeline:
    """Marks and write events, appended from any thread."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self._lock = threading.Lock()
        self._marks: list[Mark] = []
        self._writes: list[WriteEvent] = []

    def restart(self) -> None:
        """Count from now: the traffic starts (setup marks keep their negative times)."""
        with self._lock:
            shift = time.perf_counter() - self.started
            self.started += shift
            self._marks = [Mark(m.at - shift, m.step, m.detail) for m in self._marks]

    def now(self) -> float:
        return time.perf_counter() - self.started

    def mark(self, step: str, detail: str = "") -> Mark:
        mark = Mark(self.now(), step, detail)
        with self._lock:
            self._marks.append(mark)
        return mark

    def write(self, kind: str, reason: str = "", endpoint: str = "") -> None:
        with self._lock:
            self._writes.append(WriteEvent(self.now(), kind, reason, endpoint))

    @property
    def marks(self) -> list[Mark]:
        with self._lock:
            return list(self._marks)

    @property
    def writes(self) -> list[WriteEvent]:
        with self._lock:
            return list(self._writes)

    def first(self, step: str) -> Mark | None:
        """The first mark of ``step``."""
        return next((m for m in self.marks if m.step == step), None)

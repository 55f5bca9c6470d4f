"""The simulation's writes through a custody handover: retried, followed, remembered.

A register that is FROZEN refuses writes with FAILED_PRECONDITION, ErrorInfo
reason ``REGISTER_FROZEN`` and a RetryInfo delay; a RETIRED one with
``REGISTER_MOVED`` and the new custodian's endpoint in the ErrorInfo
metadata. A writer waits the delay and sends the same request again (same
request id: the register answers a request id it stored with the stored
answer, so a write is never applied twice), or reconnects to the endpoint
and sends it there. It counts refusals and resends, and the ``WriteLedger``
remembers every acknowledged write (request id, what it wrote, the sequence
the answer names) so that a drill can check that none was lost or applied
twice.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field

__all__ = ["REGISTER_FROZEN", "REGISTER_MOVED", "AckedWrite", "WriteLedger", "WriteStats"]

REGISTER_FROZEN = "REGISTER_FROZEN"
REGISTER_MOVED = "REGISTER_MOVED"
DEFAULT_RETRY_FOR = 120.0  # seconds a write keeps being retried through a freeze


@dataclass(frozen=True)
class AckedWrite:
    """A write the register acknowledged."""

    request_id: str
    method: str  # the RPC, e.g. "ReportStolen"
    what: str  # what it wrote, for people: "stolen device 123 (LP/run/123)"
    organisation: str
    sequence: int  # the sequence the answer names
    target: str  # the register that answered


@dataclass
class WriteStats:
    acknowledged: int = 0
    refused_frozen: int = 0  # answers REGISTER_FROZEN
    refused_moved: int = 0  # answers REGISTER_MOVED
    retried: int = 0  # sends of a request id sent before
    moved: int = 0  # times the writers reconnected to a new custodian
    failed: int = 0  # writes given up (another error, or the retry time ran out)


@dataclass
class WriteLedger:
    """Every acknowledged write, and the counts, shared by the writer threads."""

    writes: list[AckedWrite] = field(default_factory=list)
    stats: WriteStats = field(default_factory=WriteStats)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def acknowledged(self, write: AckedWrite) -> None:
        with self._lock:
            self.writes.append(write)
            self.stats.acknowledged += 1

    def count(self, what: str) -> None:
        """Add one to the named counter of ``WriteStats``."""
        with self._lock:
            setattr(self.stats, what, getattr(self.stats, what) + 1)

    def conflicts(self) -> list[str]:
        """Request ids acknowledged twice with different sequences: applied twice."""
        with self._lock:
            seen: dict[str, int] = {}
            conflicts = []
            for write in self.writes:
                first = seen.setdefault(write.request_id, write.sequence)
                if first != write.sequence:
                    conflicts.append(
                        f"{write.request_id}: sequence {first} and then {write.sequence}"
                    )
            return conflicts

    def as_dict(self) -> dict[str, object]:
        """The counts for report.json (the writes themselves: ``writes``)."""
        with self._lock:
            data: dict[str, object] = asdict(self.stats)
            data["distinct_requests"] = len({w.request_id for w in self.writes})
        data["applied_twice"] = self.conflicts()
        return data

"""Reporting sightings to the CEIR from a synchronize-mode node.

A node in synchronize mode decides locally, but the notification list is the
register's: a first sighting of an unregistered device (and a sighting past
its block date) must reach the CEIR, which records it and publishes it in
the feed. The reporter sends those sightings as ``CheckEquipmentBatch``
calls from a background thread, keeps them queued while the CEIR is
unreachable, and does not report the same (IMEI, IMSI) twice while a report
is outstanding (until the feed confirms it, or ``retry_after`` seconds).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass

from ceir.v1 import equipment_check_pb2 as check_pb

from .follower import Backoff
from .transport import MAX_BATCH, CeirLink, LinkDown, LinkError

log = logging.getLogger("operators_sim.reporter")


@dataclass(frozen=True)
class Sighting:
    """One check to report: the IMEI key, the IMSI (text and code), MSISDN."""

    imei_key: int
    imsi: str
    imsi_code: int
    msisdn: str


@dataclass
class ReporterStats:
    submitted: int = 0
    sent: int = 0
    failed_batches: int = 0
    dropped: int = 0  # the queue was full
    queued: int = 0


class Reporter:
    def __init__(
        self,
        link: CeirLink,
        *,
        name: str = "reporter",
        max_queue: int = 500_000,
        retry_after: float = 30.0,
    ) -> None:
        self.link = link
        self.name = name
        self.max_queue = max_queue
        self.retry_after = retry_after
        self.stats = ReporterStats()
        self._queue: collections.deque[Sighting] = collections.deque()
        self._outstanding: dict[tuple[int, int], float] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.backoff = Backoff(0.05, 1.0)

    def submit(self, sightings: list[Sighting]) -> None:
        now = time.monotonic()
        with self._lock:
            for sighting in sightings:
                pair = (sighting.imei_key, sighting.imsi_code)
                since = self._outstanding.get(pair)
                if since is not None and now - since < self.retry_after:
                    continue
                if len(self._queue) >= self.max_queue:
                    self.stats.dropped += 1
                    continue
                self._outstanding[pair] = now
                self._queue.append(sighting)
                self.stats.submitted += 1
            self.stats.queued = len(self._queue)
            if self._queue:
                self._idle.clear()
        self._wake.set()

    def confirm(self, imei_key: int, imsi_code: int) -> None:
        """The feed carried this pair's notification: the report is done."""
        with self._lock:
            self._outstanding.pop((imei_key, imsi_code), None)

    def forget_key(self, imei_key: int) -> None:
        """The IMEI got blocked or registered: its reports are done."""
        with self._lock:
            for pair in [p for p in self._outstanding if p[0] == imei_key]:
                del self._outstanding[pair]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def flush(self, timeout: float) -> bool:
        """Wait until every queued sighting was sent (True) or timeout."""
        return self._idle.wait(timeout)

    def _take(self) -> list[Sighting]:
        with self._lock:
            count = min(len(self._queue), MAX_BATCH)
            batch = [self._queue.popleft() for _ in range(count)]
            self.stats.queued = len(self._queue)
            if not batch:
                self._idle.set()
            return batch

    def _put_back(self, batch: list[Sighting]) -> None:
        with self._lock:
            self._queue.extendleft(reversed(batch))
            self.stats.queued = len(self._queue)

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self._take()
            if not batch:
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            requests = [
                check_pb.CheckEquipmentRequest(
                    imei=f"{s.imei_key:014d}", imsi=s.imsi, msisdn=s.msisdn
                )
                for s in batch
            ]
            try:
                self.link.check_batch(requests)
            except LinkDown:
                self._put_back(batch)
                self.stats.failed_batches += 1
                self._stop.wait(self.backoff.next())
                continue
            except LinkError as error:  # a rejected batch will not pass on a retry
                log.error("%s: reports rejected: %s", self.name, error)
                self.stats.failed_batches += 1
                continue
            self.backoff.reset()
            self.stats.sent += len(batch)

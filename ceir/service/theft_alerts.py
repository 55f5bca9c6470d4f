"""Theft alerts: a blocked case's IMEI seen in a check, told to its reporter.

The check path is the register's hottest, so an alert costs it one
dictionary lookup per checked IMEI (none when no case is blocked) and, for
a hit, one append to a bounded queue. Everything else happens in the
watch's writer thread:

- ``blocked``: IMEI key -> (case id, reporter) of every BLOCKED case, kept
  current by the case service after each of its commits (``block`` /
  ``unblock``) and reloaded from the tables whenever the register's
  sequence has moved (a listener on the register sets a flag; the writer
  thread reloads), which also catches cases blocked by another server
  sharing the database.
- Bursts are deduplicated: one alert per (IMEI, IMSI, seeing organisation)
  per ``DEDUP_SECONDS`` (60 s, by the register's clock). A phone that
  retries an attach every few seconds raises one alert a minute. The
  table of recent bursts holds at most ``4 * QUEUE_LIMIT`` entries; past
  that it is emptied (a flood of made-up SIMs costs duplicate alerts, not
  memory).
- A full queue (``QUEUE_LIMIT`` sightings waiting) drops the sighting and
  counts it (``ceir_theft_alerts_dropped_total``); the check is answered
  all the same. Alerts written are counted in ``ceir_theft_alerts_total``.
- What a crash can lose: the sightings still queued (at most about
  ``WRITE_INTERVAL`` seconds' worth). A clean stop writes them first.

The limit, by design: only checks that reach the register raise alerts.
Nodes in synchronize mode decide locally from their copy of the lists; the
attaches they decide alone are not seen here.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Iterable, Sequence
from typing import Protocol

from ceir.domain.model import Caller, Decision
from ceir.domain.stolen import TheftAlert
from ceir.storage import stolen_repository as stolen_repo

from .register import Register

log = logging.getLogger("ceir.theft_alerts")

QUEUE_LIMIT = 10_000
WRITE_INTERVAL = 0.2  # seconds between the writer's batches
DEDUP_SECONDS = 60
# (IMEI key, IMSI, MSISDN, seeing organisation, seen at) of one sighting.
Sighting = tuple[int, str, str, str, int]


class Counts(Protocol):
    """What the watch counts with (the server gives Prometheus counters)."""

    def inc(self, amount: float = 1) -> None: ...


class Counter:
    """A plain count, for a watch without metrics."""

    def __init__(self) -> None:
        self.value = 0

    def inc(self, amount: float = 1) -> None:
        self.value += int(amount)


class TheftWatch:
    """The blocked IMEIs, the queue of sightings, and the thread writing alerts."""

    def __init__(
        self,
        register: Register,
        *,
        limit: int = QUEUE_LIMIT,
        interval: float = WRITE_INTERVAL,
        dedup_seconds: int = DEDUP_SECONDS,
        raised: Counts | None = None,
        dropped: Counts | None = None,
    ) -> None:
        self.register = register
        self.raised: Counts = raised or Counter()
        self.dropped: Counts = dropped or Counter()
        # Replaced whole, never changed in place: checks read it without a lock.
        self.blocked: dict[int, tuple[str, str]] = {}
        self._limit = limit
        self._interval = interval
        self._dedup_us = dedup_seconds * 1_000_000
        self._last: dict[tuple[int, str, str], int] = {}  # writer thread only
        self._queue: collections.deque[Sighting] = collections.deque()
        self._writing = threading.Lock()
        self._stale = threading.Event()
        self._closed = threading.Event()
        self._reloaded_at = -1
        self.reload()
        register.add_listener(self._stale.set)
        self._thread = threading.Thread(target=self._run, name="ceir-theft-alerts", daemon=True)
        self._thread.start()

    # --- on the check path (never blocks, never touches the database) -------------------

    def saw(self, caller: Caller, key: int | None, imsi: str, msisdn: str) -> None:
        """One check of IMEI ``key`` (the decision's; None for a malformed
        IMEI): queue a sighting if it is in a blocked case."""
        if key is not None and key in self.blocked:
            self._queue_sighting(key, imsi, msisdn, caller.name)

    def saw_decisions(
        self,
        caller: Caller,
        decisions: Sequence[Decision],
        imsis: Sequence[str],
        msisdns: Sequence[str],
    ) -> None:
        """A batch (the decisions carry the IMEI keys)."""
        blocked = self.blocked
        if not blocked:
            return
        for index, decision in enumerate(decisions):
            if decision.imei_key in blocked:
                self._queue_sighting(decision.imei_key, imsis[index], msisdns[index], caller.name)

    def _queue_sighting(self, key: int | None, imsi: str, msisdn: str, org: str) -> None:
        assert key is not None
        if len(self._queue) >= self._limit:
            self.dropped.inc()
            return
        self._queue.append((key, imsi, msisdn, org, self.register.clock.now_us()))

    # --- kept current by the case service --------------------------------------------

    def block(self, keys: Iterable[int], case_id: str, reporter: str) -> None:
        self.blocked = {**self.blocked, **{key: (case_id, reporter) for key in keys}}

    def unblock(self, keys: Iterable[int]) -> None:
        gone = set(keys)
        self.blocked = {k: v for k, v in self.blocked.items() if k not in gone}

    def reload(self) -> None:
        """Read the blocked cases' IMEIs from the tables."""
        sequence = self.register.state.sequence
        with self.register.db.read() as connection:
            rows = stolen_repo.blocked_imeis(connection)
        self.blocked = {key: (case_id, reporter) for key, case_id, reporter in rows}
        self._reloaded_at = sequence

    # --- in the writer thread ---------------------------------------------------------

    def flush(self) -> int:
        """Write the alerts of every sighting queued so far; how many were written."""
        with self._writing:
            batch: list[Sighting] = []
            while self._queue:
                batch.append(self._queue.popleft())
            alerts = self._alerts(batch)
            if alerts:
                with self.register.db.write() as session:
                    stolen_repo.insert_alerts(session, alerts)
                self.raised.inc(len(alerts))
                for alert in alerts:
                    log.warning(
                        "theft alert",
                        extra={
                            "case_id": alert.case_id,
                            "reporter": alert.reporter,
                            "seen_by": alert.seen_by,
                        },
                    )
            return len(alerts)

    def _alerts(self, batch: list[Sighting]) -> list[TheftAlert]:
        alerts: list[TheftAlert] = []
        blocked = self.blocked
        for key, imsi, msisdn, org, at_us in batch:
            case = blocked.get(key)
            if case is None:  # unblocked since it was queued
                continue
            burst = (key, imsi, org)
            last = self._last.get(burst)
            if last is not None and at_us - last < self._dedup_us:
                continue
            self._last[burst] = at_us
            alerts.append(TheftAlert(0, case[0], case[1], key, imsi, msisdn, org, at_us))
        if len(self._last) > 4 * self._limit:  # forget bursts older than the window
            now = self.register.clock.now_us()
            self._last = {b: t for b, t in self._last.items() if now - t < self._dedup_us}
            if len(self._last) > 4 * self._limit:  # a flood of SIMs: memory before folding
                self._last.clear()
        return alerts

    def close(self) -> None:
        """Stop the writer once every queued sighting is written."""
        self._closed.set()
        self._thread.join()
        self.flush()

    def _run(self) -> None:
        while not self._closed.wait(self._interval):
            try:
                if self._stale.is_set() and self.register.state.sequence != self._reloaded_at:
                    self._stale.clear()
                    self.reload()
                self.flush()
            except Exception:  # the database may be restarting; try again next tick
                log.exception("writing theft alerts failed")

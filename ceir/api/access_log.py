"""The access log: one JSON line per call, written off the request path.

A call only appends a tuple to a bounded queue (a microsecond); a writer
thread of the server's turns what is queued into lines every
``WRITE_INTERVAL`` seconds. Writing a line through ``logging`` as the call
ends cost about 65 us of the call's time on the machine the figures were
taken on (a record, the handler's lock, the JSON, a flush per line).

When the lines go only to the JSON stream handler ``configure_logging``
installs (as under ``ceir serve``), the writer formats a whole batch and
writes it in one go. Any other setup (another handler, a filter, pytest's
log capture) gets one ``LogRecord`` per line through the ``ceir.access``
logger, as before.

Never blocking a call: when the queue holds ``QUEUE_LIMIT`` lines (the
writer cannot keep up, say a log pipe nobody reads), further lines are
dropped and counted (``ceir_access_log_dropped_total``, and ``dropped``).

What a crash can lose: the lines still queued, at most about
``WRITE_INTERVAL`` seconds of calls and never more than ``QUEUE_LIMIT``
lines. The calls themselves are not lost: their effects are committed
before they are answered, and the metrics count them. A clean stop
(SIGTERM, ``RunningServer.stop``) writes every queued line first.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Protocol

from .observability import JsonFormatter, JsonStreamHandler

QUEUE_LIMIT = 100_000
WRITE_INTERVAL = 0.05  # seconds between the writer's batches
# created, method, code, organisation, seconds, peer
Line = tuple[float, str, str, str, float, str]


class Counts(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class AccessLog:
    """The bounded queue of a server's access-log lines and its writer thread."""

    def __init__(
        self,
        logger: logging.Logger | None = None,
        *,
        limit: int | None = None,
        interval: float = WRITE_INTERVAL,
        dropped: Counts | None = None,
    ) -> None:
        self.logger = logger or logging.getLogger("ceir.access")
        self.dropped = 0  # lines dropped on a full queue
        self._dropped_metric = dropped
        self._limit = QUEUE_LIMIT if limit is None else limit
        self._interval = interval
        self._lines: collections.deque[Line] = collections.deque()
        self._template: dict[str, Any] | None = None
        self._writing = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._write_forever, name="ceir-access-log")
        self._thread.daemon = True
        self._thread.start()

    def add(self, method: str, code: str, org: str, seconds: float, peer: str) -> None:
        """Queue a call's line (from the thread that handles calls; never blocks)."""
        if not self.logger.isEnabledFor(logging.INFO):
            return
        if len(self._lines) >= self._limit:
            self.dropped += 1
            if self._dropped_metric is not None:
                self._dropped_metric.inc()
            return
        if self._template is None:  # the record's standard fields, from a call's thread
            self._template = dict(
                self.logger.makeRecord(
                    self.logger.name, logging.INFO, "", 0, "rpc", (), None
                ).__dict__
            )
        self._lines.append((time.time(), method, code, org, seconds, peer))

    def flush(self) -> None:
        """Write every line queued so far (the writer thread does it on its own)."""
        with self._writing:
            batch: list[Line] = []
            lines = self._lines
            while lines:
                batch.append(lines.popleft())
            if batch:
                self._write(batch)

    def close(self) -> None:
        """Stop the writer once every queued line is written."""
        self._closed.set()
        self._thread.join()
        self.flush()

    # --- in the writer thread ---------------------------------------------------------

    def _write_forever(self) -> None:
        while not self._closed.wait(self._interval):
            try:
                self.flush()
            except Exception:  # a broken handler must not end the access log
                logging.getLogger("ceir.server").exception("writing the access log failed")

    def _write(self, batch: list[Line]) -> None:
        streams = _json_streams(self.logger)
        if streams is not None:
            name = self.logger.name
            for handler in streams:
                formatter = handler.formatter
                assert isinstance(formatter, JsonFormatter)
                handler.write_lines([formatter.access_line(name, *line) for line in batch])
            return
        for line in batch:
            self.logger.handle(self._record(line))

    def _record(self, line: Line) -> logging.LogRecord:
        """The record ``logger.info("rpc", extra=...)`` would have made for ``line``."""
        created, method, code, org, seconds, peer = line
        template = self._template
        assert template is not None
        record = logging.LogRecord.__new__(logging.LogRecord)
        record.__dict__ = {
            **template,
            "created": created,
            "msecs": (created - int(created)) * 1000,
            # relativeCreated counts from the logging module's start
            "relativeCreated": template["relativeCreated"] + (created - template["created"]) * 1000,
            "method": method,
            "code": code,
            "org": org,
            "ms": round(seconds * 1000, 3),
            "peer": peer,
        }
        return record


def _json_streams(logger: logging.Logger) -> list[JsonStreamHandler] | None:
    """The handlers an INFO record of ``logger`` reaches, if every one is a
    plain JSON stream handler (no filters anywhere): then lines can be
    formatted and written in batches. None: records must go one by one."""
    handlers: list[JsonStreamHandler] = []
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return None
        for handler in current.handlers:
            if (
                type(handler) is not JsonStreamHandler
                or type(handler.formatter) is not JsonFormatter
                or handler.filters
                or handler.level > logging.INFO
            ):
                return None
            handlers.append(handler)
        current = current.parent if current.propagate else None
    return handlers

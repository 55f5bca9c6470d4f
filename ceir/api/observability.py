"""Structured logs (one JSON line per call) and Prometheus metrics."""

from __future__ import annotations

import json
import json.encoder
import logging
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from ceir.domain.lists import ListState

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


# json.dumps(..., default=str) would build an encoder for every line.
_ENCODER = json.JSONEncoder(default=str)
# The encoder's own string escaping (ensure_ascii), for lines written out.
_ESCAPE: Callable[[str], str] = json.encoder.encode_basestring_ascii


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and extras."""

    def __init__(self) -> None:
        super().__init__()
        # The access log writes a line per call: format each second once.
        self._second: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": f"{self._timestamp(record.created)}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({key: value for key, value in record.__dict__.items() if key not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _ENCODER.encode(entry)

    def access_line(
        self,
        logger: str,
        created: float,
        method: str,
        code: str,
        org: str,
        seconds: float,
        peer: str,
    ) -> str:
        """What ``format`` gives for the access log's record of a call
        (``access_log``), without the record: the same text as the JSON
        encoder's (its separators, ASCII escapes and float repr), written
        out, as the access log writes thousands of these a second."""
        text = _ESCAPE
        stamp = f"{self._timestamp(created)}.{int((created - int(created)) * 1000):03d}Z"
        return (
            f'{{"ts": {text(stamp)}, "level": "info", "logger": {text(logger)}, "msg": "rpc", '
            f'"method": {text(method)}, "code": {text(code)}, "org": {text(org)}, '
            f'"ms": {float.__repr__(round(seconds * 1000, 3))}, "peer": {text(peer)}}}'
        )

    def _timestamp(self, created: float) -> str:
        """``created`` to the second, as YYYY-MM-DDTHH:MM:SS in UTC."""
        second = int(created)
        cached = self._second  # one read: another thread may replace it
        if cached[0] != second:
            cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
            self._second = cached
        return cached[1]


class JsonStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The stream handler ``configure_logging`` installs; the access log
    writes batches of lines to it at once (``write_lines``)."""

    def write_lines(self, lines: list[str]) -> None:
        """Write preformatted lines and flush once."""
        if not lines:
            return
        text = self.terminator.join(lines) + self.terminator
        with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            try:
                self.stream.write(text)
                self.flush()
            except Exception:
                self.handleError(logging.makeLogRecord({"msg": "access log lines"}))


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    """JSON lines on ``stream`` (standard error by default) from every logger."""
    # The lines carry no source location, thread or process of a record: do
    # not compute them (a stack walk and lookups per line, a line per call).
    # These are the switches of the logging HOWTO's "Optimization" section.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = JsonStreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class Metrics:
    """The server's metrics, in a registry of its own (several servers may
    share a process in tests)."""

    def __init__(self, state_source: Any) -> None:
        self.registry = CollectorRegistry()
        self.calls = Counter(
            "ceir_rpc_calls",
            "RPCs handled, by method and status code",
            ["method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ceir_rpc_latency_seconds",
            "RPC handling time",
            ["method"],
            registry=self.registry,
            buckets=(
                0.0001,
                0.00025,
                0.0005,
                0.001,
                0.0025,
                0.005,
                0.01,
                0.025,
                0.05,
                0.1,
                0.25,
                0.5,
                1.0,
                2.5,
                5.0,
                10.0,
            ),
        )
        self.access_log_dropped = Counter(
            "ceir_access_log_dropped",
            "Access-log lines dropped because the log's queue was full",
            registry=self.registry,
        )
        self.list_size = Gauge(
            "ceir_list_entries", "Entries per list", ["list"], registry=self.registry
        )
        self.sequence = Gauge(
            "ceir_register_sequence", "Latest change sequence", registry=self.registry
        )
        self._state_source = state_source
        self._children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        for name in ("whitelist", "blacklist", "notification", "exception"):
            self.list_size.labels(name).set_function(self._size_of(name))
        self.sequence.set_function(lambda: self._state().sequence)

    def _state(self) -> ListState:
        state: ListState = self._state_source()
        return state

    def _size_of(self, name: str) -> Any:
        return lambda: self._state().sizes()[name]

    def observe(self, method: str, code: str, seconds: float) -> None:
        children = self._children.get((method, code))
        if children is None:  # labels() validates and locks: once per method and code
            children = (self.calls.labels(method, code), self.latency.labels(method))
            self._children[(method, code)] = children
        children[0].inc()
        children[1].observe(seconds)

    def serve(self, port: int, address: str = "127.0.0.1") -> int:
        """Expose /metrics over HTTP; returns the bound port."""
        server, _thread = start_http_server(port, addr=address, registry=self.registry)
        return int(server.server_port)

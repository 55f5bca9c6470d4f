"""Structured logs (one JSON line per call) and Prometheus metrics."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from ceir.domain.lists import ListState

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
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
        self.list_size = Gauge(
            "ceir_list_entries", "Entries per list", ["list"], registry=self.registry
        )
        self.sequence = Gauge(
            "ceir_register_sequence", "Latest change sequence", registry=self.registry
        )
        self._state_source = state_source
        for name in ("whitelist", "blacklist", "notification", "exception"):
            self.list_size.labels(name).set_function(self._size_of(name))
        self.sequence.set_function(lambda: self._state().sequence)

    def _state(self) -> ListState:
        state: ListState = self._state_source()
        return state

    def _size_of(self, name: str) -> Any:
        return lambda: self._state().sizes()[name]

    def observe(self, method: str, code: str, seconds: float) -> None:
        self.calls.labels(method, code).inc()
        self.latency.labels(method).observe(seconds)

    def serve(self, port: int, address: str = "127.0.0.1") -> int:
        """Expose /metrics over HTTP; returns the bound port."""
        server, _thread = start_http_server(port, addr=address, registry=self.registry)
        return int(server.server_port)

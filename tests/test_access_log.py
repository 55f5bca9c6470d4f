"""The access log, written off the request path (ceir/api/access_log.py):
lines of calls through a real server socket arrive, in the JSON format or
as log records; a full queue drops and counts lines and never holds a call
up; a clean stop writes what is still queued."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

import ceir.api.access_log
from ceir.api.access_log import AccessLog
from ceir.api.observability import JsonFormatter, JsonStreamHandler
from ceir.api.server import RunningServer, ServerConfig, create_server
from ceir.service.orgs import add_organisation
from ceir.v1 import equipment_check_pb2, equipment_check_pb2_grpc

from .helpers import imei

ROAMER_IMSI = "525011234567890"  # decided without writing anything


@pytest.fixture
def logged(sqlite_url: str) -> Iterator[tuple[RunningServer, str]]:
    running = create_server(
        ServerConfig(db=sqlite_url, address="127.0.0.1:0", insecure=True, access_log=True)
    )
    token = add_organisation(running.register.db, "telkomsel", "operator", ["510-10"])
    yield running, token
    running.stop(grace=1)


@pytest.fixture
def json_only() -> Iterator[io.StringIO]:
    """The root logger as ``configure_logging`` leaves it: one JSON stream handler."""
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    stream = io.StringIO()
    handler = JsonStreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    yield stream
    root.handlers[:] = saved
    root.setLevel(level)


def _check(running: RunningServer, token: str | None, count: int = 1) -> None:
    metadata = () if token is None else (("authorization", f"Bearer {token}"),)
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        stub = equipment_check_pb2_grpc.EquipmentCheckServiceStub(channel)
        request = equipment_check_pb2.CheckEquipmentRequest(imei=imei(1), imsi=ROAMER_IMSI)
        for _ in range(count):
            try:
                stub.CheckEquipment(request, metadata=metadata, timeout=10)
            except grpc.RpcError as error:
                if token is not None:
                    raise
                assert error.code() is grpc.StatusCode.UNAUTHENTICATED


def test_lines_arrive_as_json_written_in_batches(
    logged: tuple[RunningServer, str], json_only: io.StringIO
) -> None:
    running, token = logged
    _check(running, token)
    _check(running, None)
    assert running.access_log is not None
    running.access_log.flush()
    lines = [json.loads(line) for line in json_only.getvalue().splitlines()]
    access = [line for line in lines if line["logger"] == "ceir.access"]
    assert [(line["method"], line["code"], line["org"]) for line in access] == [
        ("CheckEquipment", "OK", "telkomsel"),
        ("CheckEquipment", "UNAUTHENTICATED", "-"),
    ]
    for line in access:
        assert list(line) == ["ts", "level", "logger", "msg", "method", "code", "org", "ms", "peer"]
        assert line["level"] == "info" and line["msg"] == "rpc"
        assert line["peer"].startswith("ipv4:127.0.0.1:")
        assert line["ts"].endswith("Z") and line["ms"] >= 0


def test_a_batch_line_is_the_line_a_record_would_give() -> None:
    """Both ways of writing a line (batched JSON, or a LogRecord through the
    logger's handlers) give the same text."""
    logger = logging.getLogger("ceir.access.test")
    captured = Captured()
    logger.addHandler(captured)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    written = AccessLog(logger)
    lines = [
        ("CheckEquipment", "OK", "telkomsel", 0.000_421_7, "ipv4:127.0.0.1:5"),
        ("GetPolicy", "INTERNAL", 'te"l\\k\u00e9\u2028', 12.5, "ipv6:[::1]:7\n"),
    ]
    try:
        for line in lines:
            written.add(*line)
        written.flush()
    finally:
        written.close()
        logger.removeHandler(captured)
    formatter = JsonFormatter()
    assert len(captured.records) == len(lines)
    for record, line in zip(captured.records, lines, strict=True):
        assert formatter.format(record) == formatter.access_line(logger.name, record.created, *line)
    assert captured.records[0].ms == 0.422  # type: ignore[attr-defined]


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_clean_stop_writes_the_queued_lines(sqlite_url: str, json_only: io.StringIO) -> None:
    running = create_server(
        ServerConfig(db=sqlite_url, address="127.0.0.1:0", insecure=True, access_log=True)
    )
    token = add_organisation(running.register.db, "telkomsel", "operator", ["510-10"])
    try:
        _check(running, token, count=3)
    finally:
        running.stop(grace=1)  # no flush: the stop writes them
    access = [
        line
        for line in map(json.loads, json_only.getvalue().splitlines())
        if line["logger"] == "ceir.access"
    ]
    assert [line["code"] for line in access] == ["OK"] * 3


class StuckHandler(logging.Handler):
    """A log destination that stops taking lines (a pipe nobody reads)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.unstuck = threading.Event()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.entered.set()
        self.unstuck.wait(60)
        self.records.append(record)


def test_a_full_queue_drops_and_counts_lines_without_holding_calls(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit, more = 5, 20
    monkeypatch.setattr(ceir.api.access_log, "QUEUE_LIMIT", limit)
    stuck = StuckHandler()
    access = logging.getLogger("ceir.access")
    saved: dict[str, Any] = {"level": access.level, "propagate": access.propagate}
    access.addHandler(stuck)
    access.setLevel(logging.INFO)
    access.propagate = False
    running = create_server(
        ServerConfig(db=sqlite_url, address="127.0.0.1:0", insecure=True, access_log=True)
    )
    token = add_organisation(running.register.db, "telkomsel", "operator", ["510-10"])
    try:
        _check(running, token)
        assert stuck.entered.wait(10)  # the writer holds the first line, stuck
        _check(running, token, count=more)  # each answered within its 10 s deadline
        assert running.access_log is not None
        assert running.access_log.dropped == more - limit
        assert running.metrics.access_log_dropped._value.get() == more - limit
    finally:
        stuck.unstuck.set()
        running.stop(grace=1)
        access.removeHandler(stuck)
        access.setLevel(saved["level"])
        access.propagate = saved["propagate"]
    assert len(stuck.records) == 1 + limit
    assert {record.code for record in stuck.records} == {"OK"}  # type: ignore[attr-defined]

"""``ceir ranges find`` and ``ceir ranges revoke`` against a real server:
the runs found, every IMEI reported, and a second run that changes nothing."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from ceir.api.server import RunningServer, ServerConfig, create_server
from ceir.service.orgs import add_organisation
from ceir.v1 import registry_pb2, registry_pb2_grpc, types_pb2

from .helpers import TELKOMSEL_IMSI, Client, imei
from .test_cli import CLEAN_ENV, run

TAC = 86000002
BASE = TAC * 1_000_000


def _rows(report: Path) -> list[dict[str, str]]:
    with report.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def running(tmp_path: Path) -> Iterator[RunningServer]:
    server = create_server(
        ServerConfig(
            db=str(tmp_path / "r.db"), address="127.0.0.1:0", access_log=False, insecure=True
        )
    )
    yield server
    server.stop(grace=1)


def _upload(channel: grpc.Channel, token: str, keys: list[int], reference: str) -> None:
    rows = [
        registry_pb2.ImportRow(
            row=i + 1,
            device=registry_pb2.DeviceRegistration(
                imeis=[imei(k % 1_000_000, k // 1_000_000)],
                source=types_pb2.REGISTRATION_SOURCE_TPP_IMPORT,
                reference=reference,
            ),
        )
        for i, k in enumerate(keys)
    ]
    stub = registry_pb2_grpc.RegistryServiceStub(channel)
    answer = stub.ImportRegistrations(
        iter([registry_pb2.ImportRegistrationsRequest(rows=rows)]),
        metadata=(("authorization", f"Bearer {token}"),),
    )
    assert answer.rows_accepted == len(keys)


def test_ranges_are_found_and_revoked_once_row_by_row(
    running: RunningServer, tmp_path: Path
) -> None:
    db = running.register.db
    kemenperin = add_organisation(db, "kemenperin", "kemenperin", [])
    telkomsel = add_organisation(db, "telkomsel", "operator", ["510-10"])
    remote = ["--ceir", f"127.0.0.1:{running.port}"]
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        _upload(channel, kemenperin, [BASE + s for s in range(2_500)], "TPP-RANGE")
        _upload(channel, kemenperin, [BASE + 10_000 + 3 * s for s in range(100)], "TPP-UNITS")
        # A real phone inside the range: it splits the run and is never revoked.
        Client(channel, telkomsel).check_imei(imei(1_200, TAC), TELKOMSEL_IMSI)
    found = run("ranges", "find", "--json", *remote, "--token", kemenperin)
    assert found.exit_code == 0, found.output
    document = json.loads(found.stdout)
    assert [(r["first_imei_key"], r["imeis"]) for r in document["ranges"]] == [
        (f"{BASE:014d}", 1_200),
        (f"{BASE + 1_201:014d}", 1_299),
    ]
    assert document["imeis"] == 2_499
    operator = run("ranges", "find", *remote, "--token", telkomsel)
    assert operator.exit_code == 1 and "may not find range uploads" in operator.stderr
    report = tmp_path / "revoked.csv"
    revoke = [*remote, "--token", kemenperin, "--reason", "range upload, never seen"]
    done = run("ranges", "revoke", "--report", str(report), *revoke)
    assert done.exit_code == 0, done.output
    rows = _rows(report)
    assert len(rows) == 2_499
    assert {r["outcome"] for r in rows} == {"revoked"}
    assert {r["reference"] for r in rows} == {"TPP-RANGE"}
    assert f"{BASE + 1_200:014d}" not in {r["imei_key"] for r in rows}
    assert running.register.state.sizes()["whitelist"] == 101  # the phone and the units
    sequence = running.register.state.sequence
    again = run("ranges", "revoke", "--report", str(report), *revoke)
    assert again.exit_code == 0, again.output
    assert _rows(report) == []
    assert running.register.state.sequence == sequence
    assert "0 ranges" in again.stderr


def test_a_partly_revoked_batch_reports_each_imei(running: RunningServer) -> None:
    from ceir.cli.ranges import revoke_keys

    db = running.register.db
    kemenperin = add_organisation(db, "kemenperin", "kemenperin", [])
    metadata = (("authorization", f"Bearer {kemenperin}"),)
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        _upload(channel, kemenperin, [BASE + s for s in range(10)], "TPP-RANGE")
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        first = list(revoke_keys(stub, metadata, [BASE + 3, BASE + 4], "cleanse"))
        assert [o for _k, o, _s in first] == ["revoked", "revoked"]
        outcomes = list(revoke_keys(stub, metadata, [BASE + s for s in range(10)], "cleanse"))
    assert [(k - BASE, o) for k, o, _s in outcomes] == [
        (s, "not_registered" if s in (3, 4) else "revoked") for s in range(10)
    ]
    assert running.register.state.sizes()["whitelist"] == 0


assert CLEAN_ENV  # the environment the CLI runs in (no CEIR_* of the shell)

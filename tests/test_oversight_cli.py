"""``ceir accounts alerts``, ``registrations`` and ``revoke`` against a real
server: the alert listed, the window's rows in a CSV file, the set revoked
page by page with a row-by-row report, and a second run that changes nothing."""

from __future__ import annotations

import csv
import datetime
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from ceir.api.server import RunningServer, ServerConfig, create_server
from ceir.service.clock import ManualClock
from ceir.service.orgs import add_organisation

from .oversight_helpers import Caller, start_of_next_hour
from .test_cli import run


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def running(tmp_path: Path, clock: ManualClock) -> Iterator[RunningServer]:
    server = create_server(
        ServerConfig(
            db=str(tmp_path / "a.db"),
            address="127.0.0.1:0",
            access_log=False,
            insecure=True,
            clock=clock,
            account_alert_factor=5,
            account_alert_floor=2,
        )
    )
    yield server
    server.stop(grace=1)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _iso(micros: int) -> str:
    return datetime.datetime.fromtimestamp(micros / 1e6, datetime.UTC).isoformat()


def test_an_abused_account_is_found_listed_and_revoked(
    running: RunningServer, clock: ManualClock, tmp_path: Path
) -> None:
    db = running.register.db
    kemenperin = add_organisation(db, "kemenperin", "kemenperin", [])
    insider = add_organisation(db, "kemenperin-insider", "kemenperin", [])
    kominfo = add_organisation(db, "kominfo", "kominfo", [])
    customs = add_organisation(db, "customs", "customs", [])
    remote = ["--ceir", f"127.0.0.1:{running.port}"]
    hour = start_of_next_hour(clock)
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        Caller(channel, insider).import_keys(range(25))
    since, until = _iso(hour), _iso(hour + 3_600_000_000)

    alerts = run("accounts", "alerts", "--json", *remote, "--token", kominfo)
    assert alerts.exit_code == 0, alerts.output
    document = json.loads(alerts.stdout)
    assert [a["organisation"] for a in document["alerts"]] == ["kemenperin-insider"]
    assert document["alerts"][0]["registrations"] == 25
    assert document["settings"] == {"factor": 5.0, "floor": 2.0}

    listed = tmp_path / "listed.csv"
    registrations = run(
        "accounts", "registrations", "kemenperin-insider", "--since", since, "--until", until,
        "--csv", str(listed), *remote, "--token", kominfo,
    )  # fmt: skip
    assert registrations.exit_code == 0, registrations.output
    rows = _rows(listed)
    assert len(rows) == 25 and all(r["on_whitelist"] == "yes" for r in rows)
    assert {r["source"] for r in rows} == {"TPP_IMPORT"}

    report = tmp_path / "revoked.csv"
    revoke = [
        "accounts", "revoke", "kemenperin-insider", "--since", since, "--until", until,
        "--reason", "insider abuse", "--report", str(report), "--page-size", "10",
        *remote, "--token", kemenperin,
    ]  # fmt: skip
    first = run(*revoke, "--json")
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert (summary["pages"], summary["rows"], summary["revoked"]) == (3, 25, 25)
    assert "page 3: 5 rows, 5 revoked" in first.stderr
    assert [r["outcome"] for r in _rows(report)] == ["revoked"] * 25
    # The same command again replays the same pages (the same request id).
    again = run(*revoke, "--json")
    assert json.loads(again.stdout)["revoked"] == 25
    # A new run (a new id) after completion revokes nothing.
    rerun = run(*revoke, "--request-id", "second-run", "--json")
    assert rerun.exit_code == 0, rerun.output
    assert json.loads(rerun.stdout)["already_off_whitelist"] == 25
    assert json.loads(rerun.stdout)["revoked"] == 0
    # Only Kemenperin revokes in bulk; only regulators read.
    refused = run(*revoke[:-1], customs)
    assert refused.exit_code == 1 and "PERMISSION_DENIED" in refused.stderr.replace(" ", "_")
    bad = run(
        "accounts", "registrations", "kemenperin-insider", "--since", "yesterday",
        *remote, "--token", kominfo,
    )  # fmt: skip
    assert bad.exit_code == 1 and "--since" in bad.stderr

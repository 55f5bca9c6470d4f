"""``ceir stolen`` and ``ceir lookup`` against a real server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ceir.api.server import RunningServer, ServerConfig, create_server
from ceir.service.orgs import add_organisation

from .helpers import TELKOMSEL_IMSI, imei
from .test_cli import assert_one_line_error, run


@pytest.fixture
def running(tmp_path: Path) -> Iterator[RunningServer]:
    server = create_server(
        ServerConfig(
            db=str(tmp_path / "c.db"),
            address="127.0.0.1:0",
            access_log=False,
            insecure=True,
            lookup_address="127.0.0.1:0",
        )
    )
    yield server
    server.stop(grace=1)


@pytest.fixture
def telkomsel(running: RunningServer) -> list[str]:
    token = add_organisation(running.register.db, "telkomsel", "operator", ["510-10"])
    return ["--ceir", f"127.0.0.1:{running.port}", "--token", token]


def test_file_block_show_list_alerts_and_recover(
    running: RunningServer, telkomsel: list[str]
) -> None:
    filed = run(
        "stolen", "file", imei(1), "--imsi", TELKOMSEL_IMSI, "--police-report", "LP/7",
        "--json", *telkomsel,
    )  # fmt: skip
    assert filed.exit_code == 0, filed.output
    case = json.loads(filed.stdout)
    assert case["state"] == "pending" and case["reporter"] == "telkomsel"
    blocked = run(
        "stolen", "update", case["case_id"], "blocked", "--note", "ok", "--json", *telkomsel
    )
    assert blocked.exit_code == 0, blocked.output
    assert [step["state"] for step in json.loads(blocked.stdout)["history"]] == [
        "pending",
        "blocked",
    ]
    assert run("check", imei(1), "--imsi", "510109999999999", *telkomsel).exit_code == 0
    assert running.theft_watch is not None
    running.theft_watch.flush()
    alerts = json.loads(run("stolen", "alerts", "--json", *telkomsel).stdout)
    assert [(a["case_id"], a["imsi"]) for a in alerts] == [(case["case_id"], "510109999999999")]
    shown = run("stolen", "show", case["case_id"], *telkomsel)
    assert shown.exit_code == 0 and "blocked" in shown.stdout
    listed = run("stolen", "list", *telkomsel)
    assert listed.exit_code == 0 and case["case_id"] in listed.stdout
    refused = run("stolen", "update", case["case_id"], "pending", *telkomsel)
    assert_one_line_error(refused, "FAILED_PRECONDITION", "BLOCKED")
    recovered = run("stolen", "update", case["case_id"], "recovered", "--json", *telkomsel)
    assert json.loads(recovered.stdout)["state"] == "recovered"


def test_a_case_without_a_police_report_names_the_field(telkomsel: list[str]) -> None:
    result = run(
        "stolen", "file", imei(2), "--imsi", TELKOMSEL_IMSI, "--police-report", "", *telkomsel
    )
    assert_one_line_error(result, "INVALID_ARGUMENT", "police_report")


def test_lookup_without_credentials(running: RunningServer) -> None:
    address = ["--address", f"127.0.0.1:{running.lookup_port}"]
    found = run("lookup", imei(3), "--json", *address)
    assert found.exit_code == 0, found.output
    assert json.loads(found.stdout) == {
        "imei_key": imei(3)[:14],
        "registered": False,
        "brand": "",
        "model": "",
    }
    assert_one_line_error(run("lookup", "123", *address), "INVALID_ARGUMENT", "imei")

"""``ceir-sim attach --scenario insider``: one account's burst of
registrations through a real register, the account alert it raises, and
Kemenperin's bulk revocation undoing it, with the burst's phones denied
again afterwards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from operators_sim.cli import app
from operators_sim.insider import InsiderSettings, chosen_floor, pick_devices
from operators_sim.population import Category, generate


def test_the_floor_lies_between_the_accounts_load_and_its_burst() -> None:
    population = generate(2000, 4)
    settings = InsiderSettings()
    devices = pick_devices(population, settings)
    floor = chosen_floor(population, settings, devices)
    burst = int(population.slots[devices].sum())
    loaded = sum(  # Kemlu loads the diplomats' devices
        int(population.slots[d]) for d in population.of(Category.DIPLOMAT)
    )
    assert loaded < settings.alert_factor * floor < loaded + burst


def test_unknown_scenario_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["attach", "--scenario", "outsider", "--quiet"])
    assert result.exit_code == 2
    assert "--scenario" in result.output


@pytest.mark.slow
def test_insider_burst_raises_the_alert_and_the_revocation_undoes_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "attach",
            *("--devices", "2000", "--rate", "300", "--duration", "6", "--seed", "4"),
            *("--phase", "enforce", "--scenario", "insider", "--complaint-share", "0"),
            *("--report", str(tmp_path / "report"), "--data-dir", str(tmp_path / "data")),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "report" / "report.json").read_text())
    assert summary["total"]["mismatches"] == 0
    assert summary["complaints"] is None
    insider = summary["insider"]
    assert insider["organisation"] == "kemlu"
    assert insider["burst_imeis"] > 0
    assert insider["alert_raised"] is True
    assert insider["alert"]["organisation"] == "kemlu"
    assert insider["alert"]["registrations_at_alert"] > insider["alert"]["threshold"]
    assert insider["listed"] == insider["burst_imeis"] == insider["revoked"]
    assert insider["remaining_on_whitelist"] == 0
    assert insider["revocation_pages"] > 1
    assert insider["ok"] is True
    after = insider["attaches_after"]
    assert after["allowed"] == 0  # enforce phase: denied again once revoked
    assert after["denied"] == after["attaches"]
    page = (tmp_path / "report" / "report.html").read_text()
    assert "Insider scenario" in page

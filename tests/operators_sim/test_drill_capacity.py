"""``ceir-sim drill capacity`` at a small scale, end to end: a ``ceir
serve`` process filled by range uploads, the cure run with the ``ceir
ranges`` commands, a restart, the replay, and the guarded upload; the
report's invariants (docs/simulation.md, "Capacity drill")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from operators_sim.cli import app
from operators_sim.drill_capacity.plan import make_plan
from operators_sim.drill_capacity.run import CapacityConfig, CapacityDrill, service_lost
from operators_sim.drill_capacity.traffic import Answer


def test_service_lost_runs_from_the_first_denial_to_the_next_allowed_attach() -> None:
    answers = [
        Answer(1.0, "late", 7, False),
        Answer(2.0, "late", 7, False),
        Answer(4.5, "late", 7, True),
        Answer(5.0, "late", 7, False),  # after it was restored: not a second outage
        Answer(1.0, "late", 8, True),
        Answer(3.0, "late", 9, False),
        Answer(3.0, "registered", 10, False),
    ]
    assert service_lost(answers, "late") == {7: 3.5, 9: None}


def test_the_plan_overfills_the_capacity_with_ranges_longer_than_the_guard() -> None:
    plan = make_plan(2_000, guard=100)
    assert plan.legit.size == 400
    assert plan.legit.size + plan.range_imeis > plan.capacity
    assert all(size >= 5 * plan.guard for _, size in plan.ranges)
    assert plan.raised > plan.capacity


@pytest.mark.slow
def test_the_capacity_drill_loses_no_registration_and_finds_every_range(tmp_path: Path) -> None:
    report = tmp_path / "report"
    config = CapacityConfig(
        report=report, capacity=2_000, guard=100, full_seconds=1.5, settle_seconds=1.5
    )
    verdict = CapacityDrill(config).run().verdict
    assert verdict["range_chunks_refused"] >= 1
    assert verdict["registrations_refused"] > 0
    assert verdict["registrations_replayed"] == verdict["registrations_refused"]
    assert verdict["registrations_lost"] == 0
    # Every uploaded range IMEI but the phones in use is found, and revoked.
    uploaded, in_use = verdict["range_imeis_uploaded"], verdict["range_phones_in_use"]
    assert verdict["range_imeis_found"] == uploaded - in_use
    assert verdict["range_imeis_revoked"] == verdict["range_imeis_found"]
    assert verdict["range_phones_in_use_revoked"] == 0
    # The refused phones lost service until the replay; none is left without it.
    assert verdict["legitimate_devices_lost_service"] == verdict["registrations_refused"]
    assert verdict["legitimate_devices_still_without_service"] == 0
    assert verdict["service_lost_seconds_max"] > 0
    assert verdict["unregistered_checks"] > 0 and verdict["unregistered_allowed"] == 0
    assert verdict["guarded_range_upload"] == "DENSE_RANGE"
    document = json.loads((report / "report.json").read_text())
    assert document["closing"]["registrations_lost"] == 0
    assert [s["step"] for s in document["steps"]][-1] == "range upload with the guard on"
    html = (report / "report.html").read_text()
    assert html.count("<svg") == 1 and "registrations lost: 0" in html
    assert (report / "revoked.csv").read_text().count("\n") == verdict["range_imeis_revoked"] + 1


def test_the_command_refuses_a_capacity_too_small(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["drill", "capacity", "--report", str(tmp_path), "--capacity", "10"]
    )
    assert result.exit_code == 2

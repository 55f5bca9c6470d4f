"""``ceir-sim drill desk-move``: complaints in every state at three desks of
Telkomsel's register, the handover that makes Kemenperin custodian and
complaints desk, and the drill's checks (every open complaint moved with
its tracking id, history and deadline; closed ones untouched; none lost or
duplicated; the old desks refused naming the owner; Kemenperin works them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from operators_sim.cli import app


def test_desk_move_refuses_an_unknown_desk(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["drill", "desk-move", "--report", str(tmp_path), "--desks", "telkomsel,acme"]
    )
    assert result.exit_code == 2
    assert "--desks" in result.output


@pytest.mark.slow
def test_desk_move_drill_moves_every_open_complaint(tmp_path: Path) -> None:
    report = tmp_path / "report"
    result = CliRunner().invoke(
        app, ["drill", "desk-move", "--report", str(report), "--per-state", "1", "--quiet"]
    )
    data = json.loads((report / "report.json").read_text())
    checks = {c["name"]: c for c in data["checks"]}
    # the drill ran its complaints into every state before the move
    assert checks["complaints in every state before the move"]["ok"], checks
    assert set(data["figures"]["before_by_state_and_desk"]) == {
        "SUBMITTED",
        "INVESTIGATING",
        "WAITING_FOR_SUBSCRIBER",
        "RESOLVED",
        "REJECTED",
    }
    assert checks["handover completed"]["ok"], checks
    assert "Desk-move drill" in (report / "report.html").read_text()
    failed = [c for c in data["checks"] if not c["ok"]]
    assert result.exit_code == (1 if failed else 0), result.output
    assert not failed, failed

"""``ceir-sim drill handover`` end to end, one test per scenario.

Each runs a short drill (two ``ceir serve`` processes, a witness, five
nodes, traffic and list writes, a small population) and checks its verdict
against what docs/simulation.md ("Handover drill") says of the scenario.
Every scenario must end with no attach unanswered and no acknowledged write
lost or applied twice.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ceir.custody.evidence import verify_evidence
from operators_sim.cli import app
from operators_sim.drill.run import Drill, DrillConfig
from operators_sim.drill.verdict import KEYS, Verdict
from operators_sim.node import OPERATORS

from ..pgserver import PostgresServer

OPERATOR_NAMES = sorted(o.name for o in OPERATORS)
SMALL = {"devices": 1_000, "rate": 150.0, "after": 2.0}


def _drill(tmp_path: Path, scenario: str, seed: int = 3) -> Verdict:
    config = DrillConfig(scenario=scenario, report=tmp_path / "report", seed=seed, **SMALL)  # type: ignore[arg-type]
    verdict = Drill(config).run().verdict
    assert verdict.attaches > 0
    assert verdict.attaches_undecided == 0
    assert verdict.acknowledged_writes_lost == 0
    assert verdict.writes_applied_twice == 0
    assert verdict.complaints_filed == 5 and verdict.complaints_kept, verdict.lines()
    data = json.loads((tmp_path / "report" / "verdict.json").read_text())
    assert tuple(data) == KEYS
    assert (tmp_path / "report" / "report.html").read_text().count("<svg") == 1
    assert "## Verdict" in (tmp_path / "report" / "report.md").read_text()
    return verdict


def _evidence_holds(directory: Path) -> None:
    checks = verify_evidence(directory, int(time.time()))
    failed = [check.line() for check in checks if not check.ok]
    assert checks and failed == []


@pytest.mark.slow
def test_clean_drill_hands_over_through_the_command_line(tmp_path: Path) -> None:
    report = tmp_path / "report"
    result = CliRunner().invoke(
        app,
        ["drill", "handover", "--report", str(report), "--devices", "1000", "--quiet"],
    )
    assert result.exit_code == 0, result.output
    verdict = json.loads((report / "verdict.json").read_text())
    assert verdict["outcome"] == "handed_over"
    assert verdict["attaches_undecided"] == 0
    assert verdict["acknowledged_writes_lost"] == 0
    assert verdict["writes_applied_twice"] == 0
    assert verdict["roots_equal"] is True
    assert verdict["operators_verified"] == OPERATOR_NAMES
    assert verdict["alerts"] == {}
    assert verdict["freeze_seconds"] is not None
    assert verdict["complaints_filed"] == 5
    assert verdict["complaints_lost"] == verdict["complaints_doubled"] == 0
    assert verdict["complaints_changed"] == 0
    _evidence_holds(report / "evidence")


@pytest.mark.slow
def test_officer_missing_aborts_at_expiry_with_nothing_changed(tmp_path: Path) -> None:
    verdict = _drill(tmp_path, "officer-missing")
    assert verdict.outcome == "aborted"
    assert verdict.freeze_seconds is None and verdict.roots_equal is None
    assert verdict.operators_verified == []


@pytest.mark.slow
def test_wrong_signer_is_refused(tmp_path: Path) -> None:
    verdict = _drill(tmp_path, "wrong-signer")
    assert verdict.outcome == "refused"
    assert verdict.operators_verified == []


@pytest.mark.slow
def test_old_keys_only_is_refused_by_the_register_and_every_node(tmp_path: Path) -> None:
    verdict = _drill(tmp_path, "old-keys-only")
    assert verdict.outcome == "refused"
    markdown = (tmp_path / "report" / "report.md").read_text()
    for name in OPERATOR_NAMES:
        assert f"node refused | {name}: THRESHOLD_NOT_MET" in markdown


@pytest.mark.slow
def test_not_ready_never_freezes_and_aborts(tmp_path: Path) -> None:
    verdict = _drill(tmp_path, "not-ready")
    assert verdict.outcome == "aborted"
    assert verdict.freeze_seconds is None
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "| waiting | for smartfren |" in markdown
    assert "freeze: WRONG_STATE" in markdown


@pytest.mark.slow
def test_incoming_crash_resumes_and_hands_over(tmp_path: Path) -> None:
    verdict = _drill(tmp_path, "incoming-crash")
    assert verdict.outcome == "handed_over"
    assert verdict.roots_equal is True
    assert verdict.operators_verified == OPERATOR_NAMES


@pytest.mark.slow
def test_transfer_corrupt_differs_and_aborts(tmp_path: Path) -> None:
    verdict = _drill(tmp_path, "transfer-corrupt")
    assert verdict.outcome == "aborted"
    assert verdict.roots_equal is False
    assert verdict.operators_verified == []
    assert verdict.freeze_seconds is not None  # writes resumed on Telkomsel's register


@pytest.mark.slow
def test_operator_offline_catches_up_and_all_five_verify(tmp_path: Path) -> None:
    verdict = _drill(tmp_path, "operator-offline")
    assert verdict.outcome == "handed_over"
    assert verdict.operators_verified == OPERATOR_NAMES
    _evidence_holds(tmp_path / "report" / "evidence")


@pytest.mark.slow
def test_split_view_alerts_every_node_and_writes_evidence(tmp_path: Path) -> None:
    verdict = _drill(tmp_path, "split-view")
    assert verdict.outcome == "handed_over"
    assert sorted(verdict.alerts) == OPERATOR_NAMES
    assert all(reasons.get("SPLIT_VIEW") for reasons in verdict.alerts.values())
    for name in OPERATOR_NAMES:  # each node kept both notes and the failed proof
        evidence = list((tmp_path / "report" / "nodes" / name / "evidence").glob("split-view-*"))
        assert len(evidence) == 1, name
        assert (evidence[0] / "checkpoint-conflict.note").is_file()
        assert (evidence[0] / "checkpoint-final.note").is_file()


@pytest.mark.slow
def test_witness_down_keeps_the_register_frozen_until_it_is_back(tmp_path: Path) -> None:
    verdict = _drill(tmp_path, "witness-down")
    assert verdict.outcome == "handed_over"
    assert verdict.freeze_seconds is not None
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert markdown.index("witness stopped") < markdown.index("cosigned final")
    assert "witness back" in markdown
    assert "REGISTER_FROZEN" in markdown  # writes were refused with retry information


@pytest.mark.slow
@pytest.mark.postgres
def test_clean_drill_with_the_incoming_register_on_postgresql(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    config = DrillConfig(
        scenario="clean",
        report=tmp_path / "report",
        db_urls={"kemenperin": postgres.new_database()},
        **SMALL,  # type: ignore[arg-type]
    )
    verdict = Drill(config).run().verdict
    assert verdict.outcome == "handed_over"
    assert verdict.attaches_undecided == 0
    assert verdict.acknowledged_writes_lost == 0 and verdict.writes_applied_twice == 0
    assert verdict.roots_equal is True
    assert verdict.operators_verified == OPERATOR_NAMES
    assert verdict.complaints_filed == 5 and verdict.complaints_kept, verdict.lines()
    _evidence_holds(tmp_path / "report" / "evidence")

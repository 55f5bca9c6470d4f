"""``ceir-sim attach`` end to end: a small run with its own CEIR, the
reports on disk, exit status 0 with no mismatch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from operators_sim.cli import app
from operators_sim.embedded import EmbeddedCeir


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["synchronize", "authorize"])
def test_sim_attach_writes_reports_and_exits_zero(tmp_path: Path, mode: str) -> None:
    result = CliRunner().invoke(
        app,
        [
            "attach",
            "--devices",
            "2000",
            "--rate",
            "300",
            "--duration",
            "3",
            "--mode",
            mode,
            "--phase",
            "enforce",
            "--seed",
            "4",
            "--report",
            str(tmp_path / "report"),
            "--data-dir",
            str(tmp_path / "data"),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "report" / "report.json").read_text())
    assert summary["total"]["mismatches"] == 0
    assert summary["total"]["attaches"] > 0
    assert summary["config"]["mode"] == mode
    page = (tmp_path / "report" / "report.html").read_text()
    assert "<svg" in page and "http" not in page.replace("http://www.w3.org/2000/svg", "")


def test_sim_attach_with_ceir_needs_tokens() -> None:
    result = CliRunner().invoke(app, ["attach", "--ceir", "127.0.0.1:1", "--quiet"])
    assert result.exit_code == 2
    assert "--tokens" in result.output


@pytest.mark.slow
def test_sim_attach_against_a_running_ceir_with_a_token_file(
    tmp_path: Path, ceir_process: EmbeddedCeir, sim_tokens: dict[str, str]
) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps(sim_tokens))
    result = CliRunner().invoke(
        app,
        [
            *("attach", "--devices", "1000", "--rate", "200", "--attaches", "300"),
            *("--ceir", ceir_process.address, "--tokens", str(tokens)),
            *("--report", str(tmp_path / "report"), "--quiet"),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "report" / "report.json").read_text())
    assert summary["config"]["ceir"] == ceir_process.address
    assert summary["total"]["attaches"] == 300
    assert summary["total"]["mismatches"] == 0


@pytest.mark.slow
def test_sim_attach_over_tls(tmp_path: Path) -> None:
    from ceir.pki import init_pki

    pki = init_pki(tmp_path / "pki")
    ceir = EmbeddedCeir(tmp_path / "ceir", tls=(pki.key(pki.server), pki.server))
    ceir.start()
    try:
        tokens = tmp_path / "tokens.json"
        tokens.write_text(json.dumps(ceir.create_organisations()))
        result = CliRunner().invoke(
            app,
            [
                *("attach", "--devices", "500", "--rate", "200", "--attaches", "100"),
                *("--ceir", f"localhost:{ceir.port}", "--tokens", str(tokens)),
                *("--ca-cert", str(pki.ca), "--report", str(tmp_path / "report"), "--quiet"),
            ],
        )
    finally:
        ceir.stop()
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "report" / "report.json").read_text())
    assert summary["total"]["attaches"] == 100

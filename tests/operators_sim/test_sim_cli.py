"""``ceir-sim attach`` end to end: a small run with its own CEIR (mutual
TLS by default, plain text only with ``--insecure``), the reports on disk,
exit status 0 with no mismatch; against a running CEIR with tokens or with
client certificates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from operators_sim.cli import app
from operators_sim.embedded import EmbeddedCeir
from operators_sim.node import OPERATORS


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
    # one name per concept: ``operator`` is the organisation, as in the examples
    assert [row["operator"] for row in summary["operators"]] == [o.name for o in OPERATORS]
    assert [row["display"] for row in summary["operators"]] == [o.display for o in OPERATORS]
    sections = {"replica", "verification"} if mode == "synchronize" else {"cache"}
    assert all(sections <= row.keys() for row in summary["operators"])
    absent = "cache" if mode == "synchronize" else "replica"
    assert all(absent not in row for row in summary["operators"])
    # by default: mutual TLS with a demo PKI made in the data directory
    assert summary["config"]["transport"].startswith("mutual TLS")
    assert "transport: mutual TLS" in result.output
    pki = tmp_path / "data" / "pki"
    assert {"ca.pem", "server.pem", "telkomsel.pem", "bea-cukai.key"} <= {
        p.name for p in pki.iterdir()
    }
    assert "PLAIN TEXT" not in (tmp_path / "data" / "ceir.log").read_text()
    if mode == "synchronize":  # the nodes verified the signed feed, with no alert
        verification = summary["verification"]
        assert verification["enabled"] is True
        assert verification["checkpoints_verified"] > 0
        assert verification["changes_verified"] > 0
        assert verification["alerts"] == {}
        assert summary["ok"] is True
    page = (tmp_path / "report" / "report.html").read_text()
    assert "<svg" in page and "http" not in page.replace("http://www.w3.org/2000/svg", "")


def test_sim_attach_with_ceir_needs_tokens() -> None:
    result = CliRunner().invoke(app, ["attach", "--ceir", "127.0.0.1:1", "--quiet"])
    assert result.exit_code == 2
    assert "--tokens" in result.output and "--client-certs" in result.output


def test_sim_attach_insecure_is_for_the_embedded_ceir(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text("{}")
    result = CliRunner().invoke(
        app, ["attach", "--ceir", "127.0.0.1:1", "--tokens", str(tokens), "--insecure"]
    )
    assert result.exit_code == 2
    assert "--insecure" in result.output


def test_sim_attach_client_certs_needs_every_organisation(tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.pem").write_text("")
    result = CliRunner().invoke(
        app, ["attach", "--ceir", "127.0.0.1:1", "--client-certs", str(tmp_path / "certs")]
    )
    assert result.exit_code == 2
    assert "telkomsel.pem" in " ".join(result.output.split())


@pytest.mark.slow
def test_sim_attach_insecure_serves_plain_text_and_says_so(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            *("attach", "--devices", "500", "--rate", "200", "--attaches", "100", "--insecure"),
            *("--data-dir", str(tmp_path / "data"), "--report", str(tmp_path / "report")),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "report" / "report.json").read_text())
    assert summary["config"]["transport"] == "plain text with bearer tokens"
    assert summary["total"]["mismatches"] == 0
    assert "PLAIN TEXT" in (tmp_path / "data" / "ceir.log").read_text()
    assert not (tmp_path / "data" / "pki").exists()


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
    assert summary["config"]["transport"] == "plain text with bearer tokens"
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
    assert summary["config"]["transport"] == "TLS with bearer tokens"


@pytest.mark.slow
def test_sim_attach_with_client_certificates_against_a_mutual_tls_ceir(tmp_path: Path) -> None:
    """``--client-certs``: every organisation connects with its own
    certificate of ``ceir pki init``'s layout, no token at all."""
    from ceir.pki import init_pki

    pki = init_pki(tmp_path / "pki")
    ceir = EmbeddedCeir(tmp_path / "ceir", tls=(pki.key(pki.server), pki.server), client_ca=pki.ca)
    ceir.start()
    try:
        ceir.create_organisations()  # the register knows the certificates' names; no token used
        result = CliRunner().invoke(
            app,
            [
                *("attach", "--devices", "500", "--rate", "200", "--attaches", "150"),
                *("--ceir", f"localhost:{ceir.port}", "--client-certs", str(pki.directory)),
                *("--custodian-key", str(ceir.public_key_path)),
                *("--report", str(tmp_path / "report"), "--quiet"),
            ],
        )
    finally:
        ceir.stop()
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "report" / "report.json").read_text())
    assert summary["total"]["attaches"] == 150
    assert summary["total"]["mismatches"] == 0
    assert summary["config"]["transport"].startswith("mutual TLS")
    assert summary["verification"]["enabled"] is True
    assert summary["verification"]["alerts"] == {}
    # the server saw client certificates, never a token
    assert "PLAIN TEXT" not in (tmp_path / "ceir" / "ceir.log").read_text()

"""The simulation report as a reader gets it: a real ``ceir-sim attach`` run
with its stdout on a pipe (as in ``make demo``'s log and CI), whose table
must not be cut to 80 columns, and whose ``report.html`` must render in
headless Chromium with no console error and nothing fetched, leaving
``report.png`` beside it.

The browser tests skip only where no Chromium is installed; ``.ci/run``
installs Debian's ``chromium``, so CI runs them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from operators_sim.report.browser import find_browser, render

BROWSER = find_browser()
# .ci/run sets it once chromium is installed: there a missing browser fails.
REQUIRED = os.environ.get("CEIR_REQUIRE_BROWSER") == "1"
needs_browser = pytest.mark.skipif(
    BROWSER is None and not REQUIRED,
    reason="no chromium on PATH: install Debian's chromium (.ci/run and make test do, as root)",
)
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """One small run, stdout on a pipe: its output and its report directory."""
    directory = tmp_path_factory.mktemp("render")
    report = directory / "report"
    environment = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    done = subprocess.run(
        [
            *(sys.executable, "-m", "operators_sim.cli", "attach"),
            *("--devices", "3000", "--rate", "1500", "--duration", "3", "--seed", "3"),
            *("--report", str(report), "--data-dir", str(directory / "data")),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout
    return done.stdout, report


@pytest.mark.slow
def test_the_table_in_a_log_is_not_cut_to_80_columns(run: tuple[str, Path]) -> None:
    output, report = run
    summary = json.loads((report / "report.json").read_text())
    assert "…" not in output
    assert f"{summary['total']['attaches']:,}" in output  # the total, whole
    for row in summary["operators"]:
        assert row["operator"] in output and f"{row['attaches']:,}" in output


@pytest.mark.slow
@needs_browser
def test_the_report_renders_in_chromium_with_no_error(run: tuple[str, Path]) -> None:
    output, report = run
    screenshot = report / "report.png"
    # the run took its own screenshot (``ceir-sim attach`` does when chromium is installed)
    assert f"screenshot: {screenshot}" in output and "the browser reported" not in output
    assert screenshot.read_bytes().startswith(PNG)
    screenshot.unlink()
    rendering = render(report / "report.html", screenshot)  # kept beside the report
    assert rendering.errors == []
    assert rendering.fetched == []
    assert screenshot.read_bytes().startswith(PNG)
    assert rendering.height > 2000  # every section laid out, not an empty page


@needs_browser
def test_the_renderer_sees_console_errors_and_fetches(tmp_path: Path) -> None:
    """The check above can fail: a page with an error and a fetch is caught."""
    page = tmp_path / "broken.html"
    page.write_text(
        "<!doctype html><html><body><p>broken</p>"
        '<img src="http://127.0.0.1:9/nothing.png">'
        "<script>console.error('bad figure'); notDefined();</script></body></html>"
    )
    rendering = render(page, tmp_path / "broken.png")
    assert any("bad figure" in e for e in rendering.errors)
    assert any("notDefined" in e for e in rendering.errors)
    assert rendering.fetched == ["http://127.0.0.1:9/nothing.png"]

"""The report of a run, rendered from its ``SimSummary``
(``operators_sim.summary``): tables in the terminal, ``report.json`` (the
same figures, field by field) and ``report.html`` (a self-contained page:
inline SVG charts, no script, nothing fetched).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..summary import SimSummary
from .page import render_html
from .terminal import print_summary

__all__ = ["print_summary", "render_html", "write_reports"]


def write_reports(summary: SimSummary, directory: Path) -> tuple[Path, Path]:
    """``report.json`` and ``report.html`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / "report.json"
    json_path.write_text(json.dumps(summary.to_json(), indent=2) + "\n")
    html_path = directory / "report.html"
    html_path.write_text(render_html(summary))
    return json_path, html_path

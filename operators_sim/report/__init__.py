"""The report of a run, rendered from its ``SimSummary``
(``operators_sim.summary``): tables in the terminal, ``report.json`` (the
same figures, field by field) and ``report.html`` (a self-contained page:
inline SVG charts, no script, nothing fetched), and ``report.png``, the page
as headless Chromium shows it, when a Chromium is installed.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..summary import SimSummary
from .browser import BrowserError, find_browser, render
from .page import render_html
from .terminal import print_summary

__all__ = ["print_summary", "render_html", "screenshot", "write_reports"]


def write_reports(summary: SimSummary, directory: Path) -> tuple[Path, Path]:
    """``report.json`` and ``report.html`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / "report.json"
    json_path.write_text(json.dumps(summary.to_json(), indent=2) + "\n")
    html_path = directory / "report.html"
    html_path.write_text(render_html(summary))
    return json_path, html_path


def screenshot(html_path: Path) -> str:
    """``report.png`` beside ``html_path``, as headless Chromium renders the
    page; a line saying where it is, what went wrong, or that no Chromium is
    installed (the report is complete without it)."""
    browser = find_browser()
    if browser is None:
        return "no screenshot: chromium is not installed (Debian: apt-get install chromium)"
    png = html_path.with_name("report.png")
    try:
        rendering = render(html_path, png, browser)
    except BrowserError as error:
        return f"no screenshot: {error}"
    problems = [*rendering.errors, *(f"fetched {url}" for url in rendering.fetched)]
    if problems:
        return f"screenshot: {png}; the browser reported: " + "; ".join(problems)
    return f"screenshot: {png}"

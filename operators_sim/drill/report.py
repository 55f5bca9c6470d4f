"""The drill's report: ``report.html`` and ``report.md``, from one timeline.

A chart of the run second by second (attaches and denials; list writes
acknowledged, refused and retried; the longest attach decision), with each
ceremony step a numbered vertical line across the panels, drawn as inline SVG in Python (no
script, nothing fetched); then the verdict lines and the steps in a table.
The Markdown report shows the same chart from ``timeline.svg`` beside it.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..decision import ALLOWED
from ..simulation import Records
from .timeline import Mark, WriteEvent
from .verdict import Verdict

__all__ = ["Series", "render_html", "render_markdown", "series", "timeline_svg", "write_reports"]

WIDTH, PANEL, GAP, LEFT, RIGHT, TOP = 900, 150, 34, 56, 20, 28
STEP_COLOURS = {"refused": "#c0392b", "ABORTED": "#c0392b"}


@dataclass(frozen=True)
class Series:
    """Per-second counts from second 0 to the end of the run."""

    seconds: int
    attaches: list[int]
    denied: list[int]
    acknowledged: list[int]
    refused: list[int]
    retried: list[int]
    slowest_ms: list[int]  # the longest attach decision of each second


def _per_second(times: Sequence[float] | np.ndarray, seconds: int) -> list[int]:
    counts = [0] * seconds
    for at in np.asarray(times, dtype=np.float64).tolist():
        if 0 <= at < seconds:
            counts[int(at)] += 1
    return counts


def series(records: Records, writes: Sequence[WriteEvent], marks: Sequence[Mark]) -> Series:
    """Count attaches, denials and write outcomes in each second of the run."""
    ends = [float(records.at.max()) if len(records.at) else 0.0]
    ends += [w.at for w in writes] + [m.at for m in marks]
    seconds = max(1, math.ceil(max(ends)) + 1)
    denied = records.at[~ALLOWED[records.outcome]]

    def writes_of(kind: str) -> list[int]:
        return _per_second([w.at for w in writes if w.kind == kind], seconds)

    slowest = [0.0] * seconds
    for at, latency in zip(records.at.tolist(), records.latency.tolist(), strict=True):
        if 0 <= at < seconds:
            slowest[int(at)] = max(slowest[int(at)], latency * 1000)
    return Series(
        seconds,
        _per_second(records.at, seconds),
        _per_second(denied, seconds),
        writes_of("acknowledged"),
        writes_of("refused"),
        writes_of("retried"),
        [math.ceil(ms) for ms in slowest],
    )


def _e(value: object) -> str:
    return html.escape(str(value))


def _panel(
    top_y: float, lines: Sequence[tuple[str, str, Sequence[int]]], seconds: int, title: str
) -> list[str]:
    inner = WIDTH - LEFT - RIGHT
    peak = max((max(values, default=0) for _, _, values in lines), default=0) or 1
    bottom = top_y + PANEL

    def x(second: float) -> float:
        return LEFT + inner * second / max(seconds, 1)

    def y(value: float) -> float:
        return bottom - PANEL * value / peak

    parts = [
        f'<text x="{LEFT}" y="{top_y - 8:.0f}" font-weight="bold">{_e(title)}</text>',
        f'<line x1="{LEFT}" y1="{bottom}" x2="{LEFT + inner}" y2="{bottom}" stroke="#888"/>',
        f'<line x1="{LEFT}" y1="{top_y}" x2="{LEFT}" y2="{bottom}" stroke="#888"/>',
        f'<text x="{LEFT - 6}" y="{top_y + 4:.0f}" text-anchor="end">{peak:,}</text>',
        f'<text x="{LEFT - 6}" y="{bottom + 4:.0f}" text-anchor="end">0</text>',
    ]
    for offset, (label, colour, values) in enumerate(lines):
        points = " ".join(f"{x(i + 0.5):.1f},{y(v):.1f}" for i, v in enumerate(values))
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.8" points="{points}"/>'
        )
        legend_x = LEFT + 230 + offset * 150
        parts.append(
            f'<rect x="{legend_x}" y="{top_y - 15:.0f}" width="12" height="4" fill="{colour}"/>'
            f'<text x="{legend_x + 16}" y="{top_y - 10:.0f}">{_e(label)}</text>'
        )
    return parts


def timeline_svg(data: Series, marks: Sequence[Mark]) -> str:
    """The chart: three panels over the run's seconds, ceremony steps as lines."""
    height = TOP + 3 * PANEL + 2 * GAP + 40 + 14 * len(marks)
    inner = WIDTH - LEFT - RIGHT
    seconds = data.seconds
    first_top = TOP + 10
    second_top = first_top + PANEL + GAP
    third_top = second_top + PANEL + GAP
    bottom = third_top + PANEL

    def x(second: float) -> float:
        return LEFT + inner * second / max(seconds, 1)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" font-size="11" font-family="sans-serif">',
        '<rect width="100%" height="100%" fill="white"/>',
    ]
    parts += _panel(
        first_top,
        [("attaches/s", "#3b6fb6", data.attaches), ("denied/s", "#c0392b", data.denied)],
        seconds,
        "Attaches",
    )
    parts += _panel(
        second_top,
        [
            ("acknowledged/s", "#1e8449", data.acknowledged),
            ("refused/s", "#c0392b", data.refused),
            ("retried/s", "#e67e22", data.retried),
        ],
        seconds,
        "List writes",
    )
    parts += _panel(
        third_top,
        [("longest decision, ms", "#7d3c98", data.slowest_ms)],
        seconds,
        "Attach decisions",
    )
    for second in range(0, seconds, max(seconds // 12, 1)):
        parts.append(
            f'<text x="{x(second):.1f}" y="{bottom + 14}" text-anchor="middle">{second}s</text>'
        )
    for number, mark in enumerate(marks, start=1):
        colour = STEP_COLOURS.get(mark.step, "#555")
        position = x(max(mark.at, 0.0))
        parts.append(
            f'<line x1="{position:.1f}" y1="{first_top}" x2="{position:.1f}" y2="{bottom}" '
            f'stroke="{colour}" stroke-dasharray="3,3"><title>{_e(mark.step)} '
            f"{mark.at:.2f} s {_e(mark.detail)}</title></line>"
            f'<text x="{position + 2:.1f}" y="{first_top + 10 + (number % 4) * 11}" '
            f'fill="{colour}" font-size="9">{number}</text>'
        )
        parts.append(
            f'<text x="{LEFT}" y="{bottom + 26 + 14 * number}" fill="{colour}">'
            f"{number}. {mark.at:6.2f} s  {_e(mark.step)}"
            f"{'  - ' + _e(mark.detail) if mark.detail else ''}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def render_html(verdict: Verdict, svg: str, marks: Sequence[Mark], facts: str) -> str:
    ok = verdict.outcome == "handed_over"
    lines = "".join(f"<li>{_e(line)}</li>" for line in verdict.lines())
    steps = "".join(
        f"<tr><td>{m.at:.2f}</td><td>{_e(m.step)}</td><td>{_e(m.detail)}</td></tr>" for m in marks
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Handover drill: {_e(verdict.scenario)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em auto; max-width: 62em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }}
.verdict {{ font-size: 1.3em; font-weight: bold; }}
.ok {{ color: #1e8449; }} .other {{ color: #b9770e; }} .facts {{ color: #555; }}
</style></head><body>
<h1>Handover drill: {_e(verdict.scenario)}</h1>
<p class="verdict {"ok" if ok else "other"}">outcome: {_e(verdict.outcome)}</p>
<p class="facts">{_e(facts)}</p>
<h2>Timeline</h2>
{svg}
<h2>Verdict</h2>
<ul>{lines}</ul>
<h2>Ceremony steps</h2>
<table><thead><tr><th>s</th><th>step</th><th>detail</th></tr></thead>
<tbody>{steps}</tbody></table>
<p class="facts">verdict.json holds the same figures; evidence/ the documents
(<code>ceir custody verify evidence</code> checks them).</p>
</body></html>
"""


def render_markdown(verdict: Verdict, marks: Sequence[Mark], facts: str) -> str:
    steps = "\n".join(f"| {m.at:.2f} | {m.step} | {m.detail.replace('|', '/')} |" for m in marks)
    lines = "\n".join(f"- {line}" for line in verdict.lines())
    return f"""# Handover drill: {verdict.scenario}

**outcome: {verdict.outcome}**

{facts}

## Timeline

![attaches, denials, list writes and the ceremony's steps](timeline.svg)

## Verdict

{lines}

## Ceremony steps

| s | step | detail |
| --- | --- | --- |
{steps}
"""


def write_reports(
    directory: Path,
    verdict: Verdict,
    records: Records,
    writes: Sequence[WriteEvent],
    marks: Sequence[Mark],
    facts: str,
) -> tuple[Path, Path]:
    """Write report.html, report.md and timeline.svg; the first two's paths."""
    directory.mkdir(parents=True, exist_ok=True)
    svg = timeline_svg(series(records, writes, marks), marks)
    (directory / "timeline.svg").write_text(svg, encoding="utf-8")
    html_path = directory / "report.html"
    html_path.write_text(render_html(verdict, svg, marks, facts), encoding="utf-8")
    md_path = directory / "report.md"
    md_path.write_text(render_markdown(verdict, marks, facts), encoding="utf-8")
    return html_path, md_path

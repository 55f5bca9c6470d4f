"""The capacity drill's report: ``report.json`` (the verdict's figures),
``report.html`` and ``timeline.svg``: the whitelist's fill against the
capacity, writes acknowledged and refused, and the new phones' attaches,
second by second, with the drill's steps as numbered vertical lines (the
handover drill's panels, ``operators_sim.drill.report``)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..drill.report import LEFT, PANEL, RIGHT, WIDTH, _e, _panel
from ..drill.timeline import Mark
from .traffic import Phones
from .uploads import Event

__all__ = ["timeline_svg", "write_report"]

GAP, TOP = 40, 38
# The lines the report ends with, in this order: what a regulator asks first.
CLOSING = (
    ("registrations_refused", "registrations refused while the register was full"),
    ("registrations_lost", "registrations lost (every refused one replayed and present after)"),
    ("range_imeis_found", "range IMEIs found (never seen on a network)"),
    ("range_imeis_revoked", "range IMEIs revoked through RevokeRegistration"),
    ("range_phones_in_use_revoked", "phones in use inside the ranges revoked"),
    ("legitimate_devices_lost_service", "legitimate devices that lost service"),
    ("service_lost_seconds_median", "for how long, median (s)"),
    ("service_lost_seconds_max", "for how long, longest (s)"),
    ("legitimate_devices_still_without_service", "legitimate devices still without service"),
    ("unregistered_allowed", "unregistered phones allowed (the rules deny them)"),
    ("guarded_range_upload", "the same upload with the range guard on"),
)


def _per_second(events: Sequence[tuple[float, int]], seconds: int) -> list[int]:
    counts = [0] * seconds
    for at, weight in events:
        if 0 <= at < seconds:
            counts[int(at)] += weight
    return counts


def timeline_svg(phones: Phones, events: Sequence[Event], marks: Sequence[Mark]) -> str:
    ends = [a.at for a in phones.answers[-1:]] + [e.at for e in events] + [m.at for m in marks]
    seconds = max(1, math.ceil(max(ends, default=0.0)) + 1)
    fill = [0] * seconds
    limit = [0] * seconds
    for sample in phones.fills:
        if 0 <= sample.at < seconds:
            fill[int(sample.at)] = sample.used
            limit[int(sample.at)] = sample.limit
    for second in range(1, seconds):  # carry the last sample over seconds without one
        fill[second] = fill[second] or fill[second - 1]
        limit[second] = limit[second] or limit[second - 1]
    written = _per_second([(e.at, e.imeis) for e in events if e.outcome == "acknowledged"], seconds)
    refused = _per_second([(e.at, e.imeis) for e in events if e.outcome != "acknowledged"], seconds)
    late = [a for a in phones.answers if a.group == "late"]
    allowed = _per_second([(a.at, 1) for a in late if a.allowed], seconds)
    denied = _per_second([(a.at, 1) for a in late if not a.allowed], seconds)
    tops = [TOP + i * (PANEL + GAP) for i in range(3)]
    bottom = tops[-1] + PANEL
    height = bottom + 40 + 14 * len(marks)
    inner = WIDTH - LEFT - RIGHT

    def x(second: float) -> float:
        return LEFT + inner * second / max(seconds, 1)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" font-size="11" font-family="sans-serif">',
        '<rect width="100%" height="100%" fill="white"/>',
    ]
    parts += _panel(
        tops[0],
        [("whitelist IMEIs", "#3b6fb6", fill), ("capacity", "#c0392b", limit)],
        seconds,
        "Whitelist",
    )
    parts += _panel(
        tops[1],
        [("IMEIs written/s", "#1e8449", written), ("IMEIs refused/s", "#c0392b", refused)],
        seconds,
        "Writes",
    )
    parts += _panel(
        tops[2],
        [("allowed/s", "#1e8449", allowed), ("denied/s", "#c0392b", denied)],
        seconds,
        "Attaches of new phones",
    )
    for second in range(0, seconds, max(seconds // 12, 1)):
        parts.append(
            f'<text x="{x(second):.1f}" y="{bottom + 14}" text-anchor="middle">{second}s</text>'
        )
    for number, mark in enumerate(marks, start=1):
        position = x(max(mark.at, 0.0))
        parts.append(
            f'<line x1="{position:.1f}" y1="{tops[0]}" x2="{position:.1f}" y2="{bottom}" '
            f'stroke="#555" stroke-dasharray="3,3"><title>{_e(mark.step)}</title></line>'
            f'<text x="{position + 2:.1f}" y="{tops[0] + 10 + (number % 4) * 11}" '
            f'fill="#555" font-size="9">{number}</text>'
            f'<text x="{LEFT}" y="{bottom + 26 + 14 * number}" fill="#555">'
            f"{number}. {mark.at:6.2f} s  {_e(mark.step)}"
            f"{'  - ' + _e(mark.detail) if mark.detail else ''}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def render_html(verdict: dict[str, Any], svg: str, marks: Sequence[Mark]) -> str:
    ok = verdict["registrations_lost"] == 0
    figures = "".join(
        f"<tr><td>{_e(key)}</td><td>{_e(value)}</td></tr>" for key, value in verdict.items()
    )
    closing = "".join(f"<li>{_e(words)}: <b>{_e(verdict[key])}</b></li>" for key, words in CLOSING)
    steps = "".join(
        f"<tr><td>{m.at:.2f}</td><td>{_e(m.step)}</td><td>{_e(m.detail)}</td></tr>" for m in marks
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Capacity drill: September 2020</title>
<style>
body {{ font-family: sans-serif; margin: 2em auto; max-width: 62em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }}
.verdict {{ font-size: 1.3em; font-weight: bold; }}
.ok {{ color: #1e8449; }} .bad {{ color: #c0392b; }}
</style></head><body>
<h1>Capacity drill: September 2020</h1>
<p class="verdict {"ok" if ok else "bad"}">registrations lost: {verdict["registrations_lost"]}</p>
<p>A register of {verdict["capacity"]:,} IMEIs filled by whole TAC ranges; the cure found and
revoked them, raised the capacity to {verdict["raised_capacity"]:,} and replayed every refused
registration; with the range guard on, the same kind of upload was refused.</p>
<h2>Timeline</h2>
{svg}
<h2>Steps</h2>
<table><thead><tr><th>s</th><th>step</th><th>detail</th></tr></thead>
<tbody>{steps}</tbody></table>
<h2>Figures</h2>
<table><tbody>{figures}</tbody></table>
<h2>In the end</h2>
<ul>{closing}</ul>
</body></html>
"""


def write_report(
    directory: Path,
    verdict: dict[str, Any],
    phones: Phones,
    events: Sequence[Event],
    marks: Sequence[Mark],
) -> tuple[Path, Path]:
    """Write report.json, report.html and timeline.svg; the HTML and JSON paths."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / "report.json"
    document = {
        **verdict,
        "steps": [{"at": round(m.at, 3), "step": m.step, "detail": m.detail} for m in marks],
        "closing": {key: verdict[key] for key, _ in CLOSING},
    }
    json_path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    svg = timeline_svg(phones, events, marks)
    (directory / "timeline.svg").write_text(svg, encoding="utf-8")
    html_path = directory / "report.html"
    html_path.write_text(render_html(verdict, svg, marks), encoding="utf-8")
    return html_path, json_path

"""The desk-move drill's report: ``report.json`` (the verdict, every check,
the figures, and each complaint's state and owner before the move) and a
self-contained ``report.html``."""

from __future__ import annotations

import html
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .checks import Check, Listing
from .desks import state_name


def _e(value: object) -> str:
    return html.escape(str(value))


def write_report(
    directory: Path, ok: bool, checks: list[Check], figures: dict[str, Any], before: Listing
) -> tuple[Path, Path]:
    """``report.json`` and ``report.html`` in ``directory``."""
    complaints = [
        {
            "tracking_id": c.tracking_id,
            "state": state_name(c.state),
            "owner": c.owner,
            "filed_by": c.filed_by,
            "steps": len(c.history),
        }
        for c in before.values()
    ]
    data = {
        "drill": "desk-move",
        "ok": ok,
        "checks": [asdict(c) for c in checks],
        "figures": figures,
        "complaints_before": complaints,
    }
    json_path = directory / "report.json"
    json_path.write_text(json.dumps(data, indent=2) + "\n")
    rows = "".join(
        f'<tr><td>{_e(c.name)}</td><td class="{"ok" if c.ok else "bad"}">'
        f"{'pass' if c.ok else 'FAIL'}</td><td>{_e(c.detail)}</td></tr>"
        for c in checks
    )
    states = figures.get("before_by_state_and_desk", {})
    desks = sorted({d for row in states.values() for d in row})
    state_rows = "".join(
        f"<tr><td>{_e(state)}</td>" + "".join(f"<td>{row.get(d, 0)}</td>" for d in desks) + "</tr>"
        for state, row in sorted(states.items())
    )
    owners = ", ".join(f"{_e(k)} {v}" for k, v in sorted(figures.get("owners_after", {}).items()))
    verdict = "every check passed" if ok else "a check FAILED"
    html_path = directory / "report.html"
    html_path.write_text(
        f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Desk-move drill</title>
<style>
body {{ font-family: sans-serif; margin: 2em auto; max-width: 60em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }}
.ok {{ color: #1e8449; font-weight: bold; }} .bad {{ color: #c0392b; font-weight: bold; }}
</style></head><body>
<h1>Desk-move drill</h1>
<p class="{"ok" if ok else "bad"}">{verdict}</p>
<p>{figures.get("complaints")} complaints ({figures.get("open")} open,
{figures.get("closed")} closed) before policy 1 moved the complaints desk to
Kemenperin; owners after the move: {owners}.</p>
<p>Telkomsel's retired register lists after the handover:
{_e(figures.get("old_register_after", {}))}.</p>
<h2>Checks</h2>
<table><thead><tr><th>check</th><th>result</th><th>found</th></tr></thead>
<tbody>{rows}</tbody></table>
<h2>Complaints before the move, by state and desk</h2>
<table><thead><tr><th>state</th>{"".join(f"<th>{_e(d)}</th>" for d in desks)}</tr></thead>
<tbody>{state_rows}</tbody></table>
</body></html>
"""
    )
    return json_path, html_path

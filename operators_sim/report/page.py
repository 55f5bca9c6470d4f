"""The report as a self-contained HTML page: tables, and charts drawn as
inline SVG (no script, nothing fetched), so the file opens from the file
system and can be mailed as it is."""

from __future__ import annotations

import html
from collections.abc import Sequence

from ..summary import OperatorSummary, Outage, SimSummary
from ._rows import alerts_text, ms, operator_rows, verification_rows, verified_size
from .complaints import sections_html


def _e(value: object) -> str:
    return html.escape(str(value))


def _line_chart(
    series: list[tuple[str, str, Sequence[int]]],
    width: int = 760,
    height: int = 220,
    shaded: Sequence[Outage] = (),
) -> str:
    """Lines over seconds; each series (label, colour, values)."""
    length = max((len(v) for _, _, v in series), default=1)
    top = max((max(v, default=0) for _, _, v in series), default=1) or 1
    left, bottom, inner_w, inner_h = 50, height - 30, width - 70, height - 50

    def x(i: float) -> float:
        return left + inner_w * (i / max(length - 1, 1))

    def y(v: float) -> float:
        return bottom - inner_h * (v / top)

    parts = [
        f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        'xmlns="http://www.w3.org/2000/svg" font-size="11" font-family="sans-serif">'
    ]
    for outage in shaded:
        parts.append(
            f'<rect x="{x(outage.start):.1f}" y="{bottom - inner_h}" '
            f'width="{max(x(outage.start + outage.seconds) - x(outage.start), 2):.1f}" '
            f'height="{inner_h}" fill="#fde2e2"><title>CEIR down</title></rect>'
        )
    parts.append(
        f'<line x1="{left}" y1="{bottom}" x2="{left + inner_w}" y2="{bottom}" stroke="#888"/>'
    )
    parts.append(
        f'<line x1="{left}" y1="{bottom}" x2="{left}" y2="{bottom - inner_h}" stroke="#888"/>'
    )
    for fraction in (0.0, 0.5, 1.0):
        value = top * fraction
        parts.append(
            f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value:,.0f}</text>'
        )
    for second in range(0, length, max(length // 10, 1)):
        parts.append(
            f'<text x="{x(second):.1f}" y="{bottom + 16}" text-anchor="middle">{second}s</text>'
        )
    for offset, (label, colour, values) in enumerate(series):
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.8" points="{points}"/>'
        )
        parts.append(
            f'<rect x="{left + 10 + offset * 130}" y="6" width="12" height="4" fill="{colour}"/>'
            f'<text x="{left + 26 + offset * 130}" y="12">{_e(label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _bar_chart(
    labels: Sequence[str],
    values: Sequence[int],
    width: int = 760,
    height: int = 220,
    colour: str = "#3b6fb6",
) -> str:
    count = max(len(values), 1)
    top = max(values, default=1) or 1
    left, bottom, inner_w, inner_h = 50, height - 40, width - 70, height - 60
    bar = inner_w / count
    parts = [
        f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        'xmlns="http://www.w3.org/2000/svg" font-size="10" font-family="sans-serif">',
        f'<line x1="{left}" y1="{bottom}" x2="{left + inner_w}" y2="{bottom}" stroke="#888"/>',
        f'<text x="{left - 6}" y="{bottom - inner_h + 4}" text-anchor="end">{top:,}</text>',
    ]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        h = inner_h * value / top
        parts.append(
            f'<rect x="{left + i * bar + 1:.1f}" y="{bottom - h:.1f}" '
            f'width="{max(bar - 2, 1):.1f}" '
            f'height="{h:.1f}" fill="{colour}"><title>{_e(label)}: {value:,}</title></rect>'
        )
        if i % max(count // 8, 1) == 0:
            parts.append(
                f'<text x="{left + i * bar + bar / 2:.1f}" y="{bottom + 14}" '
                f'text-anchor="middle">{_e(label)}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _table(headers: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(summary: SimSummary) -> str:
    """The whole page for ``summary``."""
    timeline = summary.timeline
    rate_chart = _line_chart(
        [
            ("attaches/s", "#3b6fb6", timeline.attaches),
            ("denied/s", "#c0392b", timeline.denied),
            ("degraded/s", "#e67e22", timeline.degraded),
        ],
        shaded=summary.outages,
    )
    labels = [f"{e:g}" for e in summary.latency_histogram.edges_ms[:-1]]
    latency_chart = _bar_chart(labels, summary.latency_histogram.counts)
    reasons = sorted(summary.total.by_reason.items(), key=lambda kv: -kv[1])
    reason_chart = _bar_chart([k for k, _ in reasons], [v for _, v in reasons], colour="#16a085")
    operator_rows_html: list[list[object]] = []
    for name, row in operator_rows(summary, display=True):
        latency = row.latency_ms
        replica = row.replica if isinstance(row, OperatorSummary) else None
        propagation = None if replica is None else replica.propagation_ms.p99
        operator_rows_html.append(
            [
                name,
                f"{row.attaches:,}",
                f"{row.allowed:,}",
                f"{row.denied:,}",
                f"{row.notifications_sent:,}",
                ms(latency.p50),
                ms(latency.p95),
                ms(latency.p99),
                "" if replica is None else replica.lag_changes,
                "" if propagation is None else f"{propagation:.1f}",
                f"{row.degraded_decisions:,}",
                row.mismatches,
            ]
        )
    mismatches = summary.total.mismatches
    verdict = (
        f'<p class="verdict {"ok" if summary.ok else "bad"}">{mismatches} mismatches; '
        f"replicas caught up: {summary.replicas_caught_up}</p>"
    )
    config, load, machine = summary.config, summary.load, summary.machine
    examples = summary.mismatch_examples
    mismatch_table = (
        _table(
            ["operator", "category", "imei", "answer", "source", "sequence", "expected"],
            [
                [m.operator, m.category, m.imei, m.answer, m.source, m.sequence, m.expected]
                for m in examples
            ],
        )
        if examples
        else "<p>none</p>"
    )
    operator_table = _table(
        [
            *("operator", "attaches", "allowed", "denied", "SMS", "p50 ms", "p95 ms", "p99 ms"),
            *("lag", "propagation p99 ms", "degraded", "mismatches"),
        ],
        operator_rows_html,
    )
    if summary.verification.enabled:
        verification_html = _table(
            [
                "operator",
                "verified size",
                "checkpoints",
                "consistency proofs",
                "gossip proofs",
                "alerts",
            ],
            [
                [
                    name,
                    verified_size(figures),
                    f"{figures.checkpoints_verified:,}",
                    f"{figures.consistency_proofs:,}",
                    f"{figures.gossip_proofs:,}",
                    alerts_text(figures.alerts),
                ]
                for name, figures in verification_rows(summary, display=True)
            ],
        ) + "".join(f"<p>split view: {_e(m)}</p>" for m in summary.verification.split_views)
    else:
        verification_html = "<p>off (no custodian key)</p>"
    population_table = _table(
        ["category", "devices"], [[k, f"{v:,}"] for k, v in summary.population.items()]
    )
    sms_table = _table(
        ["operator", "MSISDN", "text"],
        [[m.operator, m.msisdn, m.text] for m in summary.sms_examples],
    )
    facts = (
        f"{_e(config.mode)} mode, {_e(config.phase)} phase, failover "
        f"{_e(config.failover)}; {config.devices:,} devices, {config.rate:,} attaches/s "
        f"for {config.duration} s, seed {config.seed}; CEIR: {_e(config.ceir)} "
        f"over {_e(config.transport or 'unknown transport')}; "
        f"generated {_e(summary.generated)} on {_e(machine.platform)} "
        f"({machine.cpus} CPUs, Python {_e(machine.python)})."
    )
    loaded = (
        f"Loaded through the API in {load.seconds} s: {load.rows_accepted:,} "
        f"registrations, {load.stolen_reported:,} stolen reports, "
        f"{load.exceptions_added:,} pairings. Injected during the run: "
        f"{_e(summary.injected)}."
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(summary.title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em auto; max-width: 60em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
.verdict {{ font-size: 1.3em; font-weight: bold; }}
.ok {{ color: #1e8449; }} .bad {{ color: #c0392b; }} .facts {{ color: #555; }}
</style></head><body>
<h1>{_e(summary.title)}</h1>
{verdict}
<p class="facts">{facts}</p>
<h2>Per operator</h2>
{operator_table}
<h2>Signed log verified by the nodes</h2>
{verification_html}
<h2>Attach rate and denials over time</h2>{rate_chart}
<h2>Decision latency (ms, log bins)</h2>{latency_chart}
<h2>Answers by reason</h2>{reason_chart}
{_table(["reason", "attaches"], [[k, f"{v:,}"] for k, v in reasons])}
<h2>Mismatches</h2>{mismatch_table}
<h2>Population</h2>
{population_table}
<p class="facts">{loaded}</p>
<h2>Notification SMS (examples)</h2>
{sms_table}
{sections_html(summary)}
</body></html>
"""

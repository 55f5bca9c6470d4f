"""The report of a run: figures per operator and in total, mismatches against
the ground truth, as a terminal table, a JSON file and a self-contained HTML
page (inline SVG charts, no script, nothing fetched).
"""

from __future__ import annotations

import html
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.table import Table

from .decision import ALLOWED, Outcome, Source, reason_names
from .node import OPERATORS, AuthorizeNode, SyncNode
from .population import Category
from .simulation import SimResult

LATENCY_BINS = np.logspace(-5, 1, 31)  # 10 µs .. 10 s


def _percentiles(values: npt.NDArray[np.float64]) -> dict[str, float | None]:
    if values.size == 0:
        return {"p50": None, "p95": None, "p99": None}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {
        "p50": round(float(p50) * 1e3, 3),
        "p95": round(float(p95) * 1e3, 3),
        "p99": round(float(p99) * 1e3, 3),
    }


def _counts(outcomes: npt.NDArray[np.uint8]) -> dict[str, int]:
    counted = np.bincount(outcomes, minlength=len(Outcome))
    return {reason_names(o): int(counted[o]) for o in Outcome if counted[o]}


def summarize(result: SimResult) -> dict[str, Any]:
    """Everything the report shows, as plain data (what the JSON file holds)."""
    records, population = result.records, result.population
    verdicts = result.truth.judge(
        records.device,
        records.slot,
        records.sim,
        records.outcome,
        records.source,
        records.sequence,
        records.block_date,
        records.decided_at,
    )
    allowed = ALLOWED[records.outcome]
    forced = records.source == Source.FORCED
    operators: list[dict[str, Any]] = []
    for index, node in enumerate(result.nodes):
        mine = records.operator == index
        row: dict[str, Any] = {
            "operator": OPERATORS[index].display,
            "name": node.name,
            "attaches": int(mine.sum()),
            "allowed": int((allowed & mine).sum()),
            "denied": int((~allowed & mine).sum()),
            "by_reason": _counts(records.outcome[mine]),
            "by_source": {
                s.name.lower(): int(((records.source == s) & mine).sum()) for s in Source
            },
            "degraded_decisions": node.stats.degraded,
            "forced_allow": node.stats.forced_allow,
            "forced_deny": node.stats.forced_deny,
            "notifications_sent": len(node.outbox),
            "latency_ms": _percentiles(records.latency[mine]),
            "mismatches": int((verdicts.mismatch & mine).sum()),
            "forced_contradicting_truth": int(
                (forced & mine & (allowed != verdicts.expected)).sum()
            ),
        }
        if isinstance(node, SyncNode):
            propagation = np.frombuffer(node.propagation, dtype=np.float64)
            row["replica"] = {
                "applied_sequence": node.applied_sequence,
                "lag_changes": node.lag,
                "propagation_ms": _percentiles(propagation),
                "snapshots": node.follower.stats.snapshots,
                "reconnects": node.follower.stats.reconnects,
                "refused_messages": node.follower.stats.refused,
                "reports_sent": node.reporter.stats.sent,
                "sizes": node.replica.sizes(),
                "bytes": node.replica.nbytes(),
            }
            if node.verifier is not None:
                row["verification"] = node.verifier.stats.as_dict()
        elif isinstance(node, AuthorizeNode):
            row["cache"] = {
                "hits": node.stats.cache_hits,
                "hit_rate": round(node.stats.cache_hits / max(node.stats.decisions, 1), 4),
                "ttl_seconds": node.cache_ttl,
                "ceir_batches": node.stats.ceir_calls,
            }
        operators.append(row)

    mismatch_rows = np.flatnonzero(verdicts.mismatch)
    examples = []
    for row_index in mismatch_rows[:20].tolist():
        device = int(records.device[row_index])
        examples.append(
            {
                "operator": OPERATORS[int(records.operator[row_index])].name,
                "category": Category(int(population.category[device])).name.lower(),
                "imei": population.imei_text(device, int(records.slot[row_index])),
                "imsi_sim": int(records.sim[row_index]),
                "answer": reason_names(Outcome(int(records.outcome[row_index]))),
                "source": Source(int(records.source[row_index])).name.lower(),
                "sequence": int(records.sequence[row_index]),
                "expected": "allowed" if verdicts.expected[row_index] else "denied",
            }
        )
    by_category = np.bincount(
        population.category[records.device[mismatch_rows]], minlength=len(Category)
    )
    seconds = max(int(np.ceil(result.run_seconds)), 1)
    second = np.minimum(records.at.astype(np.int64), seconds - 1)
    timeline = {
        "attaches": np.bincount(second, minlength=seconds).tolist(),
        "denied": np.bincount(second[~allowed], minlength=seconds).tolist(),
        "degraded": np.bincount(
            second[records.source >= Source.LAST_KNOWN], minlength=seconds
        ).tolist(),
    }
    histogram, _ = np.histogram(
        np.clip(records.latency, LATENCY_BINS[0], LATENCY_BINS[-1]), bins=LATENCY_BINS
    )
    sms = []
    for node in result.nodes:
        for message in node.outbox[:3]:
            sms.append({"operator": node.name, "msisdn": message.msisdn, "text": message.text})
    total_mismatches = int(verdicts.mismatch.sum())
    verification = _verification_total(operators, result.verifying, result.split_views)
    config = result.config
    return {
        "title": "CEIR attach simulation",
        "generated": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "config": {
            "devices": config.devices,
            "rate": config.rate,
            "duration": config.duration,
            "attaches": config.attaches,
            "mode": str(config.mode),
            "phase": config.phase,
            "failover": str(config.failover),
            "seed": config.seed,
            "ceir": config.ceir or "embedded (SQLite)",
            "transport": result.transport,
            "inject_rate": config.inject_rate,
            "cache_ttl": config.cache_ttl,
            "grace_days": config.grace_days,
            "outage": list(config.outage) if config.outage else None,
        },
        "population": population.counts(),
        "load": {
            "rows_accepted": result.load.rows_accepted,
            "rows_rejected": result.load.rows_rejected,
            "stolen_reported": result.load.stolen_reported,
            "exceptions_added": result.load.exceptions_added,
            "seconds": round(result.load.seconds, 2),
            "rejections": result.load.rejections[:10],
        },
        "setup_seconds": round(result.setup_seconds, 2),
        "run_seconds": round(result.run_seconds, 2),
        "attaches_per_second": round(len(records.at) / max(result.run_seconds, 1e-9), 1),
        "injected": result.injected,
        "outages": [{"start": round(s, 2), "seconds": round(d, 2)} for s, d in result.outages],
        "head_sequence": result.head_sequence,
        "replicas_caught_up": result.caught_up,
        "operators": operators,
        "total": {
            "attaches": int(records.at.shape[0]),
            "allowed": int(allowed.sum()),
            "denied": int((~allowed).sum()),
            "by_reason": _counts(records.outcome),
            "notifications_sent": sum(len(n.outbox) for n in result.nodes),
            "latency_ms": _percentiles(records.latency),
            "degraded_decisions": sum(n.stats.degraded for n in result.nodes),
            "forced_decisions": int(forced.sum()),
            "forced_contradicting_truth": int((forced & (allowed != verdicts.expected)).sum()),
            "mismatches": total_mismatches,
        },
        "verification": verification,
        "mismatches_by_category": {
            c.name.lower(): int(by_category[c]) for c in Category if by_category[c]
        },
        "mismatch_examples": examples,
        "timeline": timeline,
        "latency_histogram": {
            "edges_ms": (LATENCY_BINS * 1e3).round(4).tolist(),
            "counts": histogram.tolist(),
        },
        "sms_examples": sms,
        "ok": total_mismatches == 0 and result.caught_up and not verification["alerts"],
    }


def _verification_total(
    operators: list[dict[str, Any]], verifying: bool, split_views: list[str]
) -> dict[str, Any]:
    """The nodes' log verification added up, with gossip's split views."""
    alerts: dict[str, int] = {}
    total = {
        "checkpoints_verified": 0,
        "consistency_proofs": 0,
        "gossip_proofs": 0,
        "changes_verified": 0,
    }
    for row in operators:
        figures = row.get("verification")
        if figures is None:
            continue
        for name in total:
            total[name] += figures[name]
        for reason, count in figures["alerts"].items():
            alerts[reason] = alerts.get(reason, 0) + count
    return {
        "enabled": verifying,
        **total,
        "alerts": dict(sorted(alerts.items())),
        "split_views": split_views[:20],
    }


def print_summary(summary: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    table = Table(
        title=f"{summary['title']} — {summary['config']['mode']}, "
        f"{summary['config']['phase']} phase, {summary['config']['failover']}"
    )
    for column in (
        "operator",
        "attaches",
        "allowed",
        "denied",
        "SMS",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "lag",
        "degraded",
        "mismatches",
    ):
        table.add_column(column, justify="left" if column == "operator" else "right")
    for row in [*summary["operators"], {**summary["total"], "name": "total"}]:
        latency = row["latency_ms"]
        replica = row.get("replica")
        lag = "" if replica is None else f"{replica['lag_changes']}"
        table.add_row(
            row["name"],
            f"{row['attaches']:,}",
            f"{row['allowed']:,}",
            f"{row['denied']:,}",
            f"{row['notifications_sent']:,}",
            _ms(latency["p50"]),
            _ms(latency["p95"]),
            _ms(latency["p99"]),
            lag,
            f"{row['degraded_decisions']:,}",
            f"[bold {'green' if row['mismatches'] == 0 else 'red'}]{row['mismatches']}[/]",
        )
    console.print(table)
    reasons = Table(title="answers by reason (all operators)")
    reasons.add_column("reason")
    reasons.add_column("attaches", justify="right")
    for name, count in sorted(summary["total"]["by_reason"].items(), key=lambda kv: -kv[1]):
        reasons.add_row(name, f"{count:,}")
    console.print(reasons)
    _print_verification(summary, console)
    console.print(f"transport: {summary['config'].get('transport') or 'unknown'}")
    total = summary["total"]
    console.print(
        f"{total['attaches']:,} attaches in {summary['run_seconds']} s "
        f"({summary['attaches_per_second']:,}/s); "
        f"population loaded in {summary['load']['seconds']} s; "
        f"forced decisions {total['forced_decisions']:,}; replicas caught up: "
        f"{summary['replicas_caught_up']}; mismatches: {total['mismatches']}"
    )


def _alerts_text(alerts: dict[str, int]) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in alerts.items()) or "none"


def _print_verification(summary: dict[str, Any], console: Console) -> None:
    verification = summary.get("verification") or {}
    if not verification.get("enabled"):
        console.print("log verification: off (no custodian key)")
        return
    table = Table(title="signed log verified by the nodes")
    for column in (
        "operator",
        "verified size",
        "checkpoints",
        "consistency proofs",
        "gossip proofs",
        "alerts",
    ):
        table.add_column(column, justify="left" if column in ("operator", "alerts") else "right")
    rows = [(row["name"], row.get("verification")) for row in summary["operators"]]
    for name, figures in [*rows, ("total", verification)]:
        if figures is None:
            continue
        alerts = figures["alerts"]
        table.add_row(
            name,
            f"{figures['verified_size']:,}" if "verified_size" in figures else "",
            f"{figures['checkpoints_verified']:,}",
            f"{figures['consistency_proofs']:,}",
            f"{figures['gossip_proofs']:,}",
            f"[{'red' if alerts else 'green'}]{_alerts_text(alerts)}[/]",
        )
    console.print(table)
    for message in verification["split_views"]:
        console.print(f"[bold red]split view:[/] {message}")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def write_reports(summary: dict[str, Any], directory: Path) -> tuple[Path, Path]:
    """``report.json`` and ``report.html`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / "report.json"
    json_path.write_text(json.dumps(summary, indent=2) + "\n")
    html_path = directory / "report.html"
    html_path.write_text(render_html(summary))
    return json_path, html_path


# --- HTML -------------------------------------------------------------------------------


def _e(value: object) -> str:
    return html.escape(str(value))


def _line_chart(
    series: list[tuple[str, str, list[int]]],
    width: int = 760,
    height: int = 220,
    shaded: list[dict[str, float]] | None = None,
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
    for outage in shaded or []:
        parts.append(
            f'<rect x="{x(outage["start"]):.1f}" y="{bottom - inner_h}" '
            f'width="{max(x(outage["start"] + outage["seconds"]) - x(outage["start"]), 2):.1f}" '
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
    labels: list[str],
    values: list[int],
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


def render_html(summary: dict[str, Any]) -> str:
    timeline = summary["timeline"]
    rate_chart = _line_chart(
        [
            ("attaches/s", "#3b6fb6", timeline["attaches"]),
            ("denied/s", "#c0392b", timeline["denied"]),
            ("degraded/s", "#e67e22", timeline["degraded"]),
        ],
        shaded=summary["outages"],
    )
    edges = summary["latency_histogram"]["edges_ms"]
    labels = [f"{e:g}" for e in edges[:-1]]
    latency_chart = _bar_chart(labels, summary["latency_histogram"]["counts"])
    reasons = sorted(summary["total"]["by_reason"].items(), key=lambda kv: -kv[1])
    reason_chart = _bar_chart([k for k, _ in reasons], [v for _, v in reasons], colour="#16a085")
    operator_rows = []
    for row in [*summary["operators"], {**summary["total"], "operator": "total"}]:
        latency = row["latency_ms"]
        replica = row.get("replica") or {}
        propagation = (replica.get("propagation_ms") or {}).get("p99")
        operator_rows.append(
            [
                row["operator"],
                f"{row['attaches']:,}",
                f"{row['allowed']:,}",
                f"{row['denied']:,}",
                f"{row['notifications_sent']:,}",
                _ms(latency["p50"]),
                _ms(latency["p95"]),
                _ms(latency["p99"]),
                replica.get("lag_changes", ""),
                "" if propagation is None else f"{propagation:.1f}",
                f"{row['degraded_decisions']:,}",
                row["mismatches"],
            ]
        )
    mismatches = summary["total"]["mismatches"]
    verdict = (
        f'<p class="verdict {"ok" if summary["ok"] else "bad"}">{mismatches} mismatches; '
        f"replicas caught up: {summary['replicas_caught_up']}</p>"
    )
    config, load, machine = summary["config"], summary["load"], summary["machine"]
    examples = summary["mismatch_examples"]
    columns = ["operator", "category", "imei", "answer", "source", "sequence", "expected"]
    mismatch_table = (
        _table(columns, [[m[c] for c in columns] for m in examples]) if examples else "<p>none</p>"
    )
    operator_table = _table(
        [
            *("operator", "attaches", "allowed", "denied", "SMS", "p50 ms", "p95 ms", "p99 ms"),
            *("lag", "propagation p99 ms", "degraded", "mismatches"),
        ],
        operator_rows,
    )
    verification = summary.get("verification") or {}
    if verification.get("enabled"):
        verification_rows = [
            [
                row["operator"],
                f"{figures['verified_size']:,}" if "verified_size" in figures else "",
                f"{figures['checkpoints_verified']:,}",
                f"{figures['consistency_proofs']:,}",
                f"{figures['gossip_proofs']:,}",
                _alerts_text(figures["alerts"]),
            ]
            for row, figures in [
                *((r, r.get("verification")) for r in summary["operators"]),
                ({"operator": "total"}, verification),
            ]
            if figures is not None
        ]
        verification_html = _table(
            [
                "operator",
                "verified size",
                "checkpoints",
                "consistency proofs",
                "gossip proofs",
                "alerts",
            ],
            verification_rows,
        ) + "".join(f"<p>split view: {_e(m)}</p>" for m in verification["split_views"])
    else:
        verification_html = "<p>off (no custodian key)</p>"
    population_table = _table(
        ["category", "devices"], [[k, f"{v:,}"] for k, v in summary["population"].items()]
    )
    sms_table = _table(
        ["operator", "MSISDN", "text"],
        [[m["operator"], m["msisdn"], m["text"]] for m in summary["sms_examples"]],
    )
    facts = (
        f"{_e(config['mode'])} mode, {_e(config['phase'])} phase, failover "
        f"{_e(config['failover'])}; {config['devices']:,} devices, {config['rate']:,} attaches/s "
        f"for {config['duration']} s, seed {config['seed']}; CEIR: {_e(config['ceir'])} "
        f"over {_e(config.get('transport') or 'unknown transport')}; "
        f"generated {_e(summary['generated'])} on {_e(machine['platform'])} "
        f"({machine['cpus']} CPUs, Python {_e(machine['python'])})."
    )
    loaded = (
        f"Loaded through the API in {load['seconds']} s: {load['rows_accepted']:,} "
        f"registrations, {load['stolen_reported']:,} stolen reports, "
        f"{load['exceptions_added']:,} pairings. Injected during the run: "
        f"{_e(summary['injected'])}."
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(summary["title"])}</title>
<style>
body {{ font-family: sans-serif; margin: 2em auto; max-width: 60em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
.verdict {{ font-size: 1.3em; font-weight: bold; }}
.ok {{ color: #1e8449; }} .bad {{ color: #c0392b; }} .facts {{ color: #555; }}
</style></head><body>
<h1>{_e(summary["title"])}</h1>
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
</body></html>
"""

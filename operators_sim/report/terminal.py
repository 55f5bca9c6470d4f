"""The report in the terminal: per-operator figures, answers by reason, the
nodes' log verification and a closing line, as rich tables.

Written to a pipe or a file (``make demo``'s log, CI), rich would assume 80
columns and cut the figures (``56,…``): there the tables get the width they
need, up to ``LOG_WIDTH``."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..summary import OperatorSummary, SimSummary
from ._rows import alerts_text, ms, operator_rows, verification_rows, verified_size
from .complaints import print_sections

LOG_WIDTH = 200


def print_summary(summary: SimSummary, console: Console | None = None) -> None:
    """The run's figures as tables on ``console`` (a new one on stdout if none)."""
    console = console or Console()
    if not console.is_terminal and console.width < LOG_WIDTH:
        console.width = LOG_WIDTH  # a log: never cut a figure to fit 80 columns
    config = summary.config
    table = Table(title=f"{summary.title} — {config.mode}, {config.phase} phase, {config.failover}")
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
    for name, row in operator_rows(summary, display=False):
        latency = row.latency_ms
        replica = row.replica if isinstance(row, OperatorSummary) else None
        table.add_row(
            name,
            f"{row.attaches:,}",
            f"{row.allowed:,}",
            f"{row.denied:,}",
            f"{row.notifications_sent:,}",
            ms(latency.p50),
            ms(latency.p95),
            ms(latency.p99),
            "" if replica is None else f"{replica.lag_changes}",
            f"{row.degraded_decisions:,}",
            f"[bold {'green' if row.mismatches == 0 else 'red'}]{row.mismatches}[/]",
        )
    console.print(table)
    reasons = Table(title="answers by reason (all operators)")
    reasons.add_column("reason")
    reasons.add_column("attaches", justify="right")
    for reason, count in sorted(summary.total.by_reason.items(), key=lambda kv: -kv[1]):
        reasons.add_row(reason, f"{count:,}")
    console.print(reasons)
    _print_verification(summary, console)
    print_sections(summary, console)
    console.print(f"transport: {config.transport or 'unknown'}")
    total = summary.total
    console.print(
        f"{total.attaches:,} attaches in {summary.run_seconds} s "
        f"({summary.attaches_per_second:,}/s); "
        f"population loaded in {summary.load.seconds} s; "
        f"forced decisions {total.forced_decisions:,}; replicas caught up: "
        f"{'yes' if summary.replicas_caught_up else 'NO'}; mismatches: {total.mismatches}"
    )


def _print_verification(summary: SimSummary, console: Console) -> None:
    if not summary.verification.enabled:
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
    for name, figures in verification_rows(summary, display=False):
        alerts = figures.alerts
        table.add_row(
            name,
            verified_size(figures),
            f"{figures.checkpoints_verified:,}",
            f"{figures.consistency_proofs:,}",
            f"{figures.gossip_proofs:,}",
            f"[{'red' if alerts else 'green'}]{alerts_text(alerts)}[/]",
        )
    console.print(table)
    for message in summary.verification.split_views:
        console.print(f"[bold red]split view:[/] {message}")

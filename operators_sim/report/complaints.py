"""The report's complaint and insider sections: rich tables in the terminal,
an HTML fragment for ``report.html`` (``sections_html``, placed by
``page.render_html``)."""

from __future__ import annotations

import html

from rich.console import Console
from rich.table import Table

from ..complaints import ComplaintSummary
from ..complaints.figures import Hours
from ..insider import AttachFigures, InsiderSummary
from ..summary import SimSummary


def _e(value: object) -> str:
    return html.escape(str(value))


def _h(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _hours(hours: Hours) -> str:
    return f"{_h(hours.p50)}/{_h(hours.p95)}"


def _counts(counts: dict[str, int]) -> str:
    """``name count, ...`` or ``none``."""
    return ", ".join(f"{name} {count}" for name, count in counts.items()) or "none"


def _table(headers: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


CATEGORY_HEADERS = [
    "category",
    "filed",
    "resolved",
    "rejected",
    "open",
    "SLA h",
    "missed",
    "h to close p50/p95",
]


def _category_rows(figures: ComplaintSummary) -> list[list[object]]:
    return [
        [
            row.category,
            row.filed,
            row.resolved,
            row.rejected,
            row.open,
            _h(row.deadline_hours),
            row.deadlines_missed,
            _hours(row.hours_to_close),
        ]
        for row in figures.by_category
    ]


def _facts(figures: ComplaintSummary) -> list[str]:
    return [
        f"{figures.complained:,} of {figures.subscribers_affected:,} subscribers denied or "
        f"notified complained (share {figures.share}); {figures.filed:,} filed, refused at "
        f"filing: {_counts(figures.refused_at_filing)}",
        f"desks work {figures.capacity_per_day:g} complaints a simulated day; the run stands "
        f"for {figures.simulated_days:g} days",
        f"hours to resolve p50 / p95: {_hours(figures.hours_to_resolve)}; to close (resolved "
        f"or rejected): {_hours(figures.hours_to_close)}",
        f"deadlines missed: {figures.deadlines_missed} in simulated time, "
        f"{figures.deadlines_missed_register} on the register's clock",
        f"caused by the register itself: {figures.register_caused} "
        f"({_counts(figures.register_caused_kinds)}), {figures.register_caused_resolved} "
        "resolved",
        f"actions: {_counts(figures.by_action)}; refused: {_counts(figures.actions_refused)}",
        f"passed to the owner's desk: {figures.handed_on}; retried: {figures.retried}; "
        f"open at the end: {figures.open_at_end}",
        f"the register lists {figures.listed}: lost {figures.lost}, duplicated "
        f"{figures.duplicated}, state differs {figures.state_mismatches}",
    ]


def _attach_row(name: str, figures: AttachFigures) -> list[object]:
    return [name, figures.attaches, figures.allowed, figures.denied, figures.notified]


def _insider_facts(insider: InsiderSummary) -> list[str]:
    alert = insider.alert
    alert_text = (
        f"alert {alert.get('alert_id')} raised for {alert.get('organisation')}: "
        f"{alert.get('registrations_at_alert')} registrations over a threshold of "
        f"{alert.get('threshold')} (baseline {alert.get('baseline')}, factor "
        f"{alert.get('factor')}), {insider.alert_seconds_after_burst} s after the burst"
        if insider.alert_raised
        else "NO alert was raised"
    )
    return [
        f"{insider.organisation} registered {insider.burst_imeis:,} IMEIs "
        f"({insider.devices:,} black-market phones) {insider.burst_seconds} s into the run "
        f"(sequences {insider.burst_sequences[0]}-{insider.burst_sequences[1]})",
        alert_text,
        f"Kemenperin listed {insider.listed:,} in the window and revoked {insider.revoked:,} in "
        f"{insider.revocation_pages} pages (other outcomes: {_counts(insider.not_revoked)}); "
        f"remaining on the whitelist: {insider.remaining_on_whitelist}",
        *(f"error: {error}" for error in insider.errors),
    ]


ATTACH_HEADERS = ["attaches of the burst's phones", "attaches", "allowed", "denied", "notified"]


def _insider_rows(insider: InsiderSummary) -> list[list[object]]:
    return [
        _attach_row("before the burst", insider.attaches_before),
        _attach_row("while registered", insider.attaches_registered),
        _attach_row("after the revocation", insider.attaches_after),
    ]


def sections_html(summary: SimSummary) -> str:
    """The complaint and insider sections of ``report.html`` ("" when neither ran)."""
    parts = []
    figures = summary.complaints
    if figures is not None:
        desks = _table(
            ["desk", "turns", "resolved", "rejected", "open"],
            [[d.desk, d.worked, d.resolved, d.rejected, d.open] for d in figures.desks],
        )
        facts = "".join(f"<li>{_e(line)}</li>" for line in _facts(figures))
        parts.append(
            f'<h2>Complaints</h2><ul class="facts">{facts}</ul>'
            f"{_table(CATEGORY_HEADERS, _category_rows(figures))}<h3>Desks</h3>{desks}"
        )
    insider = summary.insider
    if insider is not None:
        verdict = "ok" if insider.ok else "bad"
        facts = "".join(f"<li>{_e(line)}</li>" for line in _insider_facts(insider))
        parts.append(
            f'<h2>Insider scenario</h2><p class="verdict {verdict}">alert '
            f"{'raised' if insider.alert_raised else 'NOT raised'}; "
            f"{insider.revoked:,} of {insider.burst_imeis:,} revoked, "
            f'{insider.remaining_on_whitelist} left</p><ul class="facts">{facts}</ul>'
            f"{_table(ATTACH_HEADERS, _insider_rows(insider))}"
        )
    return "\n".join(parts)


def print_sections(summary: SimSummary, console: Console) -> None:
    """The complaint and insider tables in the terminal (nothing when neither ran)."""
    figures = summary.complaints
    if figures is not None:
        table = Table(title="complaints by category (simulated hours)")
        for column in CATEGORY_HEADERS:
            table.add_column(column, justify="left" if column == "category" else "right")
        for row in _category_rows(figures):
            table.add_row(*(str(c) for c in row))
        console.print(table)
        for line in _facts(figures):
            console.print(f"  {line}", highlight=False)
    insider = summary.insider
    if insider is not None:
        table = Table(title="insider scenario")
        for column in ATTACH_HEADERS:
            table.add_column(column, justify="left" if column == ATTACH_HEADERS[0] else "right")
        for row in _insider_rows(insider):
            table.add_row(*(str(c) for c in row))
        console.print(table)
        for line in _insider_facts(insider):
            console.print(f"  {line}", highlight=False)

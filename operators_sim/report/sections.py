"""The sections of ``report.html``, each a function of the ``SimSummary``
returning its HTML (an empty string when the run has nothing for it).
``page.SECTIONS`` lists them in page order."""

from __future__ import annotations

import html
from collections.abc import Sequence

from ..decision import ALLOWED, GREYLISTED, OUTCOME_ANSWERS, Outcome, Source, reason_names
from ..summary import SimSummary
from ._rows import alerts_text, ms, operator_rows, verification_rows, verified_size
from .charts import Bar, Series, bar_chart, line_chart, log_histogram

ADMITTED, NOTED, DENIED = "#2e8b57", "#e0a526", "#c0392b"
# Admitted, noted: greylisted (notification pending, clone suspected, forced allow).
REASON_COLOURS = {
    reason_names(o): (
        DENIED if not ALLOWED[o] else NOTED if OUTCOME_ANSWERS[o][0] == GREYLISTED else ADMITTED
    )
    for o in Outcome
}


def _e(value: object) -> str:
    return html.escape(str(value))


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _count(value: int) -> str:
    return f"{value:,}"


def verdict(summary: SimSummary) -> str:
    """One sentence per check, failed checks first."""
    total, verification = summary.total, summary.verification
    failed: list[str] = []
    passed: list[str] = []
    (passed if total.mismatches == 0 else failed).append(
        "no decision contradicts the ground truth"
        if total.mismatches == 0
        else f"{total.mismatches:,} decisions contradict the ground truth (see Mismatches)"
    )
    if any(row.replica is not None for row in summary.operators):
        (passed if summary.replicas_caught_up else failed).append(
            f"every replica caught up with the register's head (sequence {summary.head_sequence:,})"
            if summary.replicas_caught_up
            else f"a replica did not catch up with the register's head (sequence "
            f"{summary.head_sequence:,}) in time"
        )
    if verification.enabled:
        if verification.alerts or verification.split_views:
            failed.append(
                f"verification alerts: {alerts_text(verification.alerts)}"
                + (
                    f"; {len(verification.split_views)} split views"
                    if verification.split_views
                    else ""
                )
            )
        else:
            passed.append(
                f"the nodes verified {verification.checkpoints_verified:,} signed checkpoints "
                "with no alert"
            )
    else:
        passed.append("the signed log was not verified (no custodian key)")
    twice = summary.writes.get("applied_twice") if summary.writes else None
    if twice:
        failed.append(f"{twice} writes were applied twice")
    word = "Passed" if summary.ok else "Failed"
    checks = "; ".join([*failed, *passed])
    return f'<p class="verdict {"ok" if summary.ok else "bad"}">{word}: {_e(checks)}.</p>'


def facts(summary: SimSummary) -> str:
    config, machine = summary.config, summary.machine
    return (
        f'<p class="facts">{_e(config.mode)} mode, {_e(config.phase)} phase, failover '
        f"{_e(config.failover)}; {config.devices:,} devices, {config.rate:,g} attaches/s offered "
        f"for {config.duration:g} s ({summary.total.attaches:,} attaches in "
        f"{summary.run_seconds:g} s, {summary.attaches_per_second:,.0f}/s), seed {config.seed}; "
        f"CEIR: {_e(config.ceir)} over {_e(config.transport or 'unknown transport')}; "
        f"generated {_e(summary.generated)} on {_e(machine.platform)} "
        f"({machine.cpus} CPUs, Python {_e(machine.python)}).</p>"
    )


def operators(summary: SimSummary) -> str:
    rows = [
        [
            name,
            _count(row.attaches),
            _count(row.allowed),
            _count(row.denied),
            _count(row.notifications_sent),
            ms(row.latency_ms.p50),
            ms(row.latency_ms.p95),
            ms(row.latency_ms.p99),
            _count(row.degraded_decisions),
            _count(row.mismatches),
        ]
        for name, row in operator_rows(summary, display=True)
    ]
    headers = ["operator", "attaches", "allowed", "denied", "SMS"]
    headers += ["p50 ms", "p95 ms", "p99 ms", "degraded", "mismatches"]
    return "<h2>Per operator</h2>" + table(headers, rows)


def by_source(summary: SimSummary) -> str:
    sources = [s.name.lower() for s in Source]
    used = [s for s in sources if any(row.by_source.get(s) for row in summary.operators)]
    rows: list[list[object]] = [
        [row.display, *(_count(row.by_source.get(s, 0)) for s in used)] for row in summary.operators
    ]
    rows.append(
        ["total", *(_count(sum(r.by_source.get(s, 0) for r in summary.operators)) for s in used)]
    )
    return (
        "<h2>Decisions by source</h2>"
        '<p class="note">Where each answer came from: <code>replica</code> the node\'s copy of '
        "the lists, <code>ceir</code> a live answer of the register, <code>cache</code> a cached "
        "answer within its time-to-live, <code>last_known</code> the replica or cache while the "
        "register was unreachable, <code>forced</code> the failover policy's fixed answer.</p>"
        + table(["operator", *used], rows)
    )


def forced(summary: SimSummary) -> str:
    rows: list[list[object]] = [
        [
            row.display,
            _count(row.degraded_decisions),
            _count(row.forced_allow),
            _count(row.forced_deny),
            _count(row.forced_contradicting_truth),
        ]
        for row in summary.operators
    ]
    total = summary.total
    rows.append(
        [
            "total",
            _count(total.degraded_decisions),
            _count(sum(r.forced_allow for r in summary.operators)),
            _count(sum(r.forced_deny for r in summary.operators)),
            _count(total.forced_contradicting_truth),
        ]
    )
    return (
        "<h2>Degraded and forced decisions</h2>"
        '<p class="note">Degraded: decided while the register was unreachable. Forced: the '
        "failover policy's answer, with nothing known of the device; not judged as mismatches, "
        "but those that contradict the truth are counted.</p>"
        + table(
            ["operator", "degraded", "forced allow", "forced deny", "forced, contradicting truth"],
            rows,
        )
    )


def replicas(summary: SimSummary) -> str:
    nodes = [row for row in summary.operators if row.replica is not None]
    if not nodes:
        return ""
    rows: list[list[object]] = []
    lists: list[list[object]] = []
    names = sorted({name for row in nodes if row.replica for name in row.replica.sizes})
    for row in nodes:
        replica = row.replica
        assert replica is not None
        live = replica.propagation_ms
        rows.append(
            [
                row.display,
                _count(replica.applied_sequence),
                _count(replica.lag_changes),
                ms(live.p50),
                ms(live.p99),
                _count(replica.live_changes),
                _count(replica.backlog_changes),
                _count(replica.snapshots),
                _count(replica.reconnects),
                _count(replica.refused_messages),
                _count(replica.reports_sent),
            ]
        )
        sizes = replica.sizes
        lists.append(
            [
                row.display,
                *(_count(sizes.get(name, 0)) for name in names),
                f"{replica.bytes / 1e6:,.1f} MB",
            ]
        )
    headers = ["operator", "applied sequence", "lag", "propagation p50 ms"]
    headers += ["propagation p99 ms", "live changes", "caught up at start", "snapshots"]
    headers += ["reconnects", "refused messages", "reports sent"]
    return (
        "<h2>Replicas</h2>"
        '<p class="note" title="CEIR commit to the change applied in the node\'s replica, for '
        'changes committed after the node was up and ready">Propagation is measured on live '
        "changes only: from the register's commit to the change applied in the node's replica, "
        "for changes committed after the node was up and ready (the <em>live changes</em>). "
        "The changes a node caught up on when it started (committed before it was ready) are "
        "counted, not timed.</p>"
        + table(headers, rows)
        + "<h3>Replica lists (entries) and memory</h3>"
        + table(["operator", *names, "memory"], lists)
    )


def caches(summary: SimSummary) -> str:
    nodes = [row for row in summary.operators if row.cache is not None]
    if not nodes:
        return ""
    rows: list[list[object]] = []
    for row in nodes:
        cache = row.cache
        assert cache is not None
        rows.append(
            [
                row.display,
                _count(cache.hits),
                f"{100 * cache.hit_rate:.1f}%",
                f"{cache.ttl_seconds:g} s",
                _count(cache.ceir_batches),
            ]
        )
    return "<h2>Answer caches</h2>" + table(
        ["operator", "hits", "hit rate", "time-to-live", "CEIR batches"], rows
    )


def verification(summary: SimSummary) -> str:
    if not summary.verification.enabled:
        return "<h2>Signed log verified by the nodes</h2><p>off (no custodian key)</p>"
    rows = [
        [
            name,
            verified_size(figures),
            _count(figures.checkpoints_verified),
            _count(figures.consistency_proofs),
            _count(figures.gossip_proofs),
            _count(figures.changes_verified),
            alerts_text(figures.alerts),
        ]
        for name, figures in verification_rows(summary, display=True)
    ]
    last = [
        f'<p class="bad">{_e(row.display)}\'s last alert: {_e(row.verification.last_alert)}</p>'
        for row in summary.operators
        if row.verification is not None and row.verification.last_alert
    ]
    views = "".join(
        f'<p class="bad">split view: {_e(m)}</p>' for m in summary.verification.split_views
    )
    headers = ["operator", "verified size", "checkpoints", "consistency proofs"]
    return (
        "<h2>Signed log verified by the nodes</h2>"
        + table([*headers, "gossip proofs", "changes verified", "alerts"], rows)
        + "".join(last)
        + views
    )


def rate_charts(summary: SimSummary) -> str:
    timeline = summary.timeline
    shaded = [(o.start, o.seconds) for o in summary.outages]
    attaches = line_chart(
        [Series("attaches/s", "#3b6fb6", timeline.attaches)], "attaches per second", shaded
    )

    def label(name: str, values: tuple[int, ...]) -> str:
        return name if any(values) else f"{name} (none)"

    trouble = line_chart(
        [
            Series(label("denied/s", timeline.denied), DENIED, timeline.denied),
            Series(label("degraded/s", timeline.degraded), "#e67e22", timeline.degraded),
        ],
        "decisions per second",
        shaded,
    )
    return (
        "<h2>Attach rate over time</h2>"
        '<p class="note">Per whole second of the run (the last, partial second is left out).</p>'
        + attaches
        + "<h2>Denials and degraded decisions over time</h2>"
        + trouble
    )


def latency_chart(summary: SimSummary) -> str:
    histogram, latency = summary.latency_histogram, summary.total.latency_ms
    marks = [(name, v) for name, v in (("p50", latency.p50), ("p99", latency.p99)) if v]
    chart = log_histogram(histogram.edges_ms, histogram.counts, "#3b6fb6", marks)
    return "<h2>Decision latency</h2>" + chart


def reasons(summary: SimSummary) -> str:
    counted = sorted(summary.total.by_reason.items(), key=lambda kv: -kv[1])
    bars = [Bar(name, count, REASON_COLOURS.get(name, "#888")) for name, count in counted]
    legend = [("admitted", ADMITTED), ("admitted, noted", NOTED), ("denied", DENIED)]
    return "<h2>Answers by reason</h2>" + bar_chart(bars, legend, "attaches (all operators)")


def mismatches(summary: SimSummary) -> str:
    examples = summary.mismatch_examples
    if not examples:
        return "<h2>Mismatches</h2><p>none</p>"
    headers = ["operator", "category", "IMEI", "answer", "source", "sequence", "expected"]
    rows = [
        [m.operator, m.category, m.imei, m.answer, m.source, m.sequence, m.expected]
        for m in examples
    ]
    by_category = ", ".join(f"{k} {v:,}" for k, v in summary.mismatches_by_category.items())
    return f"<h2>Mismatches</h2><p>By category: {_e(by_category)}.</p>" + table(headers, rows)


INJECTED_LABELS = {
    "registered": "devices registered",
    "stolen": "devices reported stolen",
    "recovered": "stolen devices recovered",
    "failed_attempts": "changes the register refused",
}


def population(summary: SimSummary) -> str:
    load = summary.load
    injected = table(
        ["change", "count"],
        [
            [INJECTED_LABELS.get(name, name.replace("_", " ")), _count(count)]
            for name, count in summary.injected.items()
        ],
    )
    return (
        "<h2>Population</h2>"
        + table(["category", "devices"], [[k, _count(v)] for k, v in summary.population.items()])
        + f'<p class="facts">Loaded through the API in {load.seconds:g} s: '
        f"{load.rows_accepted:,} registrations ({load.rows_rejected:,} rejected), "
        f"{load.stolen_reported:,} stolen reports, {load.exceptions_added:,} pairings.</p>"
        "<h3>Injected during the run</h3>" + injected
    )


def sms(summary: SimSummary) -> str:
    if not summary.sms_examples:
        return ""
    return "<h2>Notification SMS (examples)</h2>" + table(
        ["operator", "MSISDN", "text"],
        [[m.operator, m.msisdn, m.text] for m in summary.sms_examples],
    )

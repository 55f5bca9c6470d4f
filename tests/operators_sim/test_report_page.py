"""``report.html`` from a summary made by hand: the verdict in words with
the verification alerts, the sections docs/simulation.md promises, no
Python value printed as it is, and chart labels people can read."""

from __future__ import annotations

import dataclasses
import re

import pytest

from operators_sim.report import render_html
from operators_sim.report.charts import duration_ms, log_histogram, nice_ticks
from operators_sim.summary import (
    LatencyHistogram,
    LoadSummary,
    Machine,
    NodeVerification,
    OperatorSummary,
    Percentiles,
    ReplicaSummary,
    RunConfig,
    SimSummary,
    Timeline,
    TotalSummary,
    VerificationSummary,
)


def summary(alerts: dict[str, int] | None = None) -> SimSummary:
    latency = Percentiles(0.9, 3.2, 12.5)
    verification = NodeVerification(
        checkpoints_verified=40,
        consistency_proofs=40,
        gossip_proofs=8,
        changes_verified=900,
        verified_size=900,
        alerts=alerts or {},
        last_alert="LOG_SHRANK: head behind" if alerts else "",
    )
    node = OperatorSummary(
        operator="telkomsel",
        display="Telkomsel",
        attaches=56_789,
        allowed=55_000,
        denied=1_789,
        by_reason={"REGISTERED": 55_000, "STOLEN": 1_789},
        by_source={"ceir": 0, "replica": 56_000, "cache": 0, "last_known": 789, "forced": 0},
        degraded_decisions=789,
        forced_allow=0,
        forced_deny=0,
        notifications_sent=12,
        latency_ms=latency,
        mismatches=0,
        forced_contradicting_truth=0,
        replica=ReplicaSummary(
            applied_sequence=900,
            lag_changes=0,
            propagation_ms=Percentiles(20.0, 40.0, 48.5),
            live_changes=120,
            backlog_changes=780,
            snapshots=1,
            reconnects=2,
            refused_messages=0,
            reports_sent=12,
            sizes={"whitelist": 700, "blacklist": 20},
            bytes=123_456,
        ),
        verification=verification,
    )
    edges = tuple(10 ** (k / 5) * 1e-2 for k in range(31))  # 10 µs .. 10 s, in ms
    counts = tuple(0 if k < 8 or k > 20 else 100 * k for k in range(30))
    return SimSummary(
        title="CEIR attach simulation",
        generated="2026-11-29 00:00:00 UTC",
        machine=Machine(2, "3.11", "Linux"),
        config=RunConfig(
            devices=10_000,
            rate=2_000,
            duration=30,
            attaches=None,
            mode="synchronize",
            phase="notify",
            failover="last-known",
            seed=1,
            ceir="embedded (SQLite)",
            transport="mutual TLS",
            inject_rate=2.0,
            cache_ttl=5.0,
            grace_days=30,
            outage=None,
        ),
        population={"tpp": 9_000, "stolen": 1_000},
        load=LoadSummary(9_000, 0, 1_000, 10, 3.5, ()),
        setup_seconds=5.0,
        run_seconds=30.2,
        attaches_per_second=1_880.4,
        injected={"registered": 31, "stolen": 7, "recovered": 2, "failed_attempts": 0},
        outages=(),
        head_sequence=900,
        replicas_caught_up=True,
        operators=(node,),
        total=TotalSummary(
            attaches=56_789,
            allowed=55_000,
            denied=1_789,
            by_reason=node.by_reason,
            notifications_sent=12,
            latency_ms=latency,
            degraded_decisions=789,
            forced_decisions=0,
            forced_contradicting_truth=0,
            mismatches=0,
        ),
        verification=VerificationSummary(
            enabled=True,
            checkpoints_verified=40,
            consistency_proofs=40,
            gossip_proofs=8,
            changes_verified=900,
            alerts=alerts or {},
            split_views=(),
        ),
        mismatches_by_category={},
        mismatch_examples=(),
        timeline=Timeline(attaches=(1_900,) * 30, denied=(60,) * 30, degraded=(0,) * 30),
        latency_histogram=LatencyHistogram(edges_ms=edges, counts=counts),
        sms_examples=(),
        ok=not alerts,
    )


def text_of(page: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))


def test_the_verdict_is_a_sentence_with_the_verification_alerts() -> None:
    passed = text_of(render_html(summary()))
    assert "Passed: no decision contradicts the ground truth" in passed
    assert "verified 40 signed checkpoints with no alert" in passed
    failed = render_html(dataclasses.replace(summary({"LOG_SHRANK": 2})))
    assert "Failed: verification alerts: LOG_SHRANK 2" in text_of(failed)
    assert "last alert: LOG_SHRANK: head behind" in text_of(failed)
    for page in (passed, failed):
        assert "True" not in page and "False" not in page


def test_the_sections_the_docs_promise_are_on_the_page() -> None:
    page = text_of(render_html(summary()))
    for heading in (
        "Decisions by source",
        "Degraded and forced decisions",
        "Replicas",
        "Signed log verified by the nodes",
        "Attach rate over time",
        "Denials and degraded decisions over time",
        "Decision latency",
        "Answers by reason",
    ):
        assert heading in page
    for column in ("last_known", "snapshots", "reconnects", "forced deny", "live changes"):
        assert column in page
    assert "Propagation is measured on live changes only" in page
    assert "56,789" in page and "48.50" in page  # the figures, whole


def test_injected_changes_are_a_table_not_a_python_dict() -> None:
    page = render_html(summary())
    assert "{'" not in page and "'registered'" not in page
    assert "devices reported stolen" in text_of(page)


def test_the_page_fetches_nothing_and_runs_no_script() -> None:
    page = render_html(summary())
    assert "<script" not in page
    assert re.findall(r"https?://[^\"' ]+", page) == ["http://www.w3.org/2000/svg"] * page.count(
        "<svg"
    )


@pytest.mark.parametrize(
    ("value", "label"),
    [(0.0398, "40 µs"), (0.01, "10 µs"), (1.585, "1.6 ms"), (158.489, "160 ms"), (2512, "2.5 s")],
)
def test_latency_labels_are_rounded_with_units(value: float, label: str) -> None:
    assert duration_ms(value) == label


@pytest.mark.parametrize(
    ("top", "ticks"),
    [
        (2_032, [0, 500, 1_000, 1_500, 2_000, 2_500]),
        (0, [0, 0.2, 0.4, 0.6, 0.8, 1.0]),
        (7, [0, 2, 4, 6, 8]),
    ],
)
def test_axis_ticks_are_round(top: float, ticks: list[float]) -> None:
    assert nice_ticks(top) == ticks


def test_the_histogram_is_trimmed_to_its_data() -> None:
    shown = summary().latency_histogram
    svg = log_histogram(shown.edges_ms, shown.counts, "#000")
    # bins 8..20 hold decisions: one empty bin is kept either side, no more
    assert svg.count("<rect") == 13 + 2 + 1  # bars, empty neighbours, the legend's swatch
    assert "10 µs" not in svg and "10 s" not in svg

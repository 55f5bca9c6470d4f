"""What the terminal and the HTML renderers share: how a figure is written
and which rows their tables have."""

from __future__ import annotations

from ..summary import (
    NodeVerification,
    OperatorSummary,
    SimSummary,
    TotalSummary,
    VerificationSummary,
)


def ms(value: float | None) -> str:
    """Milliseconds to two decimals, ``-`` when nothing was measured."""
    return "-" if value is None else f"{value:.2f}"


def alerts_text(alerts: dict[str, int]) -> str:
    """``reason count, ...`` or ``none``."""
    return ", ".join(f"{reason} {count}" for reason, count in alerts.items()) or "none"


def verified_size(figures: NodeVerification | VerificationSummary) -> str:
    """A node's verified size; blank for the total, where sizes do not add up."""
    return f"{figures.verified_size:,}" if isinstance(figures, NodeVerification) else ""


def operator_rows(
    summary: SimSummary, display: bool
) -> list[tuple[str, OperatorSummary | TotalSummary]]:
    """Each operator (by its display name or its organisation name), then the total."""
    rows: list[tuple[str, OperatorSummary | TotalSummary]] = [
        (row.display if display else row.operator, row) for row in summary.operators
    ]
    return [*rows, ("total", summary.total)]


def verification_rows(
    summary: SimSummary, display: bool
) -> list[tuple[str, NodeVerification | VerificationSummary]]:
    """Each verifying operator, then the total."""
    rows: list[tuple[str, NodeVerification | VerificationSummary]] = [
        (row.display if display else row.operator, row.verification)
        for row in summary.operators
        if row.verification is not None
    ]
    return [*rows, ("total", summary.verification)]

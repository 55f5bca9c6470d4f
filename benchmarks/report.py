"""The one result type of the benchmarks and how it is printed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Figure:
    """One measured figure, with its target when it has one.

    ``passed`` is None for a figure printed for context only (no target).
    ``details`` are extra lines printed under the figure: the load, the
    baseline, the server CPU per call.
    """

    name: str
    value: float
    unit: str
    target: str = ""
    passed: bool | None = None
    details: tuple[str, ...] = field(default_factory=tuple)

    @property
    def verdict(self) -> str:
        if self.passed is None:
            return "info"
        return "PASS" if self.passed else "MISS"


def heading(title: str) -> None:
    print(f"\n== {title} ==", flush=True)


def facts(pairs: Sequence[tuple[str, str]]) -> None:
    """Aligned ``name: value`` lines."""
    width = max((len(name) for name, _ in pairs), default=0)
    for name, value in pairs:
        print(f"  {name:<{width}}  {value}", flush=True)


def progress(message: str) -> None:
    """A line saying what runs now, so a slow step is not a silent one."""
    print(f"  .. {message}", flush=True)


def number(value: float) -> str:
    """A figure with thousands separators, and two decimals below 10."""
    return f"{value:,.2f}" if abs(value) < 10 else f"{value:,.0f}"


def figures(results: Sequence[Figure]) -> None:
    """The figures, each with its target and verdict, then its details."""
    for result in results:
        shown = f"{number(result.value)} {result.unit}"
        target = f"  (target {result.target})" if result.target else ""
        print(f"  [{result.verdict:>4}] {result.name}: {shown}{target}", flush=True)
        for line in result.details:
            print(f"         {line}", flush=True)


def summary(results: Sequence[Figure]) -> None:
    """One line per figure that has a target, and the count of misses."""
    heading("Summary")
    targeted = [r for r in results if r.passed is not None]
    for result in targeted:
        print(f"  {result.verdict}  {result.name}: {number(result.value)} {result.unit}")
    misses = sum(1 for r in targeted if not r.passed)
    print(f"  {len(targeted) - misses} of {len(targeted)} targets met", flush=True)

"""Charts for ``report.html`` as inline SVG: axes with rounded ticks and
units, a legend, nothing fetched and no script.

Three kinds: lines over the seconds of the run, a histogram over log bins
(decision latency) and horizontal bars (answers by reason; horizontal so
that long reason names never overlap).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

WIDTH = 760
FONT = 'font-family="sans-serif" font-size="11"'
GRID = "#e5e5e5"
AXIS = "#777"


@dataclass(frozen=True)
class Series:
    """One line: its legend label, colour and one value per second."""

    label: str
    colour: str
    values: Sequence[float]


@dataclass(frozen=True)
class Bar:
    """One horizontal bar: its label, value and colour."""

    label: str
    value: int
    colour: str


def _e(value: object) -> str:
    return html.escape(str(value))


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Round ticks from 0 to at least ``top``: steps of 1, 2, 2.5 or 5 times a power of ten."""
    top = top if top > 0 else 1.0
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if raw <= m * magnitude * (1 + 1e-9))
    steps = math.ceil(top / step - 1e-9)
    return [round(i * step, 10) for i in range(steps + 1)]


def number(value: float) -> str:
    """A tick label: thousands separated, no trailing ``.0``; 1.2k, 3M when long."""
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if abs(value) >= 100_000:
        return f"{value / 1_000:g}k"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def duration_ms(value: float) -> str:
    """Milliseconds for people, to two significant figures: ``40 µs``, ``1.6 ms``, ``2.5 s``."""
    for scale, unit in ((1e3, "s"), (1.0, "ms"), (1e-3, "µs")):
        if value >= scale or unit == "µs":
            return f"{float(f'{value / scale:.2g}'):g} {unit}"
    raise AssertionError("unreachable")


def _svg(height: int, body: list[str], label: str) -> str:
    return (
        f'<svg viewBox="0 0 {WIDTH} {height}" width="100%" role="img" '
        f'aria-label="{_e(label)}" xmlns="http://www.w3.org/2000/svg" {FONT}>'
        + "".join(body)
        + "</svg>"
    )


def _legend(entries: Sequence[tuple[str, str]], right: float, y: float) -> list[str]:
    """Swatches and labels, right-aligned at ``right``."""
    parts: list[str] = []
    x = right
    for label, colour in reversed(entries):
        x -= 7 * len(label) + 26
        parts.append(
            f'<rect x="{x:.0f}" y="{y - 9:.0f}" width="14" height="10" fill="{colour}"/>'
            f'<text x="{x + 18:.0f}" y="{y:.0f}">{_e(label)}</text>'
        )
    return parts


def line_chart(
    series: Sequence[Series],
    unit: str,
    shaded: Sequence[tuple[float, float]] = (),
    height: int = 240,
) -> str:
    """Values per second, one line per series, over the run's seconds;
    ``shaded`` (start, seconds) spans drawn behind the lines ("CEIR down")."""
    left, right, top_pad, bottom_pad = 64, 28, 28, 38
    inner_w, inner_h = WIDTH - left - right, height - top_pad - bottom_pad
    bottom = top_pad + inner_h
    length = max((len(s.values) for s in series), default=1)
    y_ticks = nice_ticks(max((max(s.values, default=0) for s in series), default=0))
    x_ticks = [t for t in nice_ticks(length, 8) if t <= length]

    def x(second: float) -> float:
        return left + inner_w * second / max(length, 1)

    def y(value: float) -> float:
        return bottom - inner_h * value / y_ticks[-1]

    parts: list[str] = []
    for start, seconds in shaded:
        span = max(x(start + seconds) - x(start), 2)
        parts.append(
            f'<rect x="{x(start):.1f}" y="{top_pad}" width="{span:.1f}" height="{inner_h}" '
            'fill="#fde2e2"><title>CEIR down</title></rect>'
        )
    for tick in y_ticks:
        parts.append(
            f'<line x1="{left}" x2="{left + inner_w}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
            f'stroke="{GRID if tick else AXIS}"/>'
            f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{number(tick)}</text>'
        )
    for tick in x_ticks:
        parts.append(
            f'<line x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{bottom}" y2="{bottom + 4}" '
            f'stroke="{AXIS}"/><text x="{x(tick):.1f}" y="{bottom + 16}" '
            f'text-anchor="middle">{number(tick)} s</text>'
        )
    parts.append(
        f'<line x1="{left}" x2="{left}" y1="{top_pad}" y2="{bottom}" stroke="{AXIS}"/>'
        f'<text x="{left - 52}" y="{top_pad + inner_h / 2:.0f}" text-anchor="middle" '
        f'transform="rotate(-90 {left - 52} {top_pad + inner_h / 2:.0f})">{_e(unit)}</text>'
        f'<text x="{left + inner_w / 2:.0f}" y="{height - 4}" text-anchor="middle">'
        "seconds into the run</text>"
    )
    for line in series:
        # each value is the count of a whole second: drawn at the second's middle
        points = " ".join(f"{x(i + 0.5):.1f},{y(v):.1f}" for i, v in enumerate(line.values))
        parts.append(
            f'<polyline fill="none" stroke="{line.colour}" stroke-width="2" '
            f'stroke-linejoin="round" points="{points}"><title>{_e(line.label)}</title></polyline>'
        )
    legend = [(s.label, s.colour) for s in series]
    if shaded:
        legend.append(("CEIR down", "#fde2e2"))
    parts.extend(_legend(legend, left + inner_w, 16))
    return _svg(height, parts, unit)


def log_histogram(
    edges_ms: Sequence[float],
    counts: Sequence[int],
    colour: str,
    marks: Sequence[tuple[str, float]] = (),
    height: int = 240,
) -> str:
    """Counts over log bins of milliseconds (``counts[i]`` between
    ``edges_ms[i]`` and ``edges_ms[i + 1]``), trimmed to the bins that hold
    something (and one empty bin either side); ``marks`` (label, ms) drawn
    as dashed lines (percentiles)."""
    filled = [i for i, c in enumerate(counts) if c]
    if not filled:
        return "<p>no decisions</p>"
    first, last = max(filled[0] - 1, 0), min(filled[-1] + 1, len(counts) - 1)
    shown = counts[first : last + 1]
    edges = edges_ms[first : last + 2]
    left, right, top_pad, bottom_pad = 64, 28, 28, 38
    inner_w, inner_h = WIDTH - left - right, height - top_pad - bottom_pad
    bottom = top_pad + inner_h
    bar = inner_w / len(shown)
    y_ticks = nice_ticks(max(shown))
    low, high = math.log10(edges[0]), math.log10(edges[-1])

    def y(value: float) -> float:
        return bottom - inner_h * value / y_ticks[-1]

    parts: list[str] = []
    for tick in y_ticks:
        parts.append(
            f'<line x1="{left}" x2="{left + inner_w}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
            f'stroke="{GRID if tick else AXIS}"/>'
            f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{number(tick)}</text>'
        )
    for i, count in enumerate(shown):
        h = inner_h * count / y_ticks[-1]
        parts.append(
            f'<rect x="{left + i * bar + 1:.1f}" y="{bottom - h:.1f}" width="{max(bar - 2, 1):.1f}"'
            f' height="{h:.1f}" fill="{colour}"><title>{duration_ms(edges[i])} to '
            f"{duration_ms(edges[i + 1])}: {count:,}</title></rect>"
        )
    # Label every edge when there is room, else every fifth (a power of ten
    # with the report's five bins per decade).
    every = 1 if bar >= 50 else 5
    for i, edge in enumerate(edges):
        at = left + i * bar
        labelled = (first + i) % every == 0
        tick = bottom + (5 if labelled else 3)
        parts.append(
            f'<line x1="{at:.1f}" x2="{at:.1f}" y1="{bottom}" y2="{tick}" stroke="{AXIS}"/>'
        )
        if labelled:
            parts.append(
                f'<text x="{at:.1f}" y="{bottom + 16}" text-anchor="middle">'
                f"{duration_ms(edge)}</text>"
            )
    for offset, (label, value) in enumerate(marks):
        if not edges[0] <= value <= edges[-1]:
            continue
        at = left + inner_w * (math.log10(value) - low) / (high - low)
        parts.append(
            f'<line x1="{at:.1f}" x2="{at:.1f}" y1="{top_pad}" y2="{bottom}" stroke="#333" '
            f'stroke-dasharray="4 3"/><text x="{at + 3:.1f}" y="{top_pad + 10 + 12 * offset}">'
            f"{_e(label)} {duration_ms(value)}</text>"
        )
    parts.append(
        f'<line x1="{left}" x2="{left}" y1="{top_pad}" y2="{bottom}" stroke="{AXIS}"/>'
        f'<text x="{left - 52}" y="{top_pad + inner_h / 2:.0f}" text-anchor="middle" '
        f'transform="rotate(-90 {left - 52} {top_pad + inner_h / 2:.0f})">attaches</text>'
        f'<text x="{left + inner_w / 2:.0f}" y="{height - 4}" text-anchor="middle">'
        "decision latency (log scale)</text>"
    )
    parts.extend(_legend([("attaches per latency bin", colour)], left + inner_w, 16))
    return _svg(height, parts, "decision latency")


def bar_chart(bars: Sequence[Bar], legend: Sequence[tuple[str, str]], unit: str) -> str:
    """Horizontal bars, largest first as given, value and share at each bar's end."""
    if not bars:
        return "<p>none</p>"
    label_w = min(max(len(b.label) for b in bars) * 7 + 12, 340)
    left, right, top_pad, row = label_w, 110, 26, 22
    inner_w = WIDTH - left - right
    height = top_pad + row * len(bars) + 36
    bottom = top_pad + row * len(bars)
    ticks = nice_ticks(max(b.value for b in bars), 5)
    total = sum(b.value for b in bars) or 1

    def x(value: float) -> float:
        return left + inner_w * value / ticks[-1]

    parts: list[str] = []
    for tick in ticks:
        parts.append(
            f'<line x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{top_pad}" y2="{bottom}" '
            f'stroke="{GRID if tick else AXIS}"/><text x="{x(tick):.1f}" y="{bottom + 14}" '
            f'text-anchor="middle">{number(tick)}</text>'
        )
    for i, item in enumerate(bars):
        top = top_pad + i * row
        parts.append(
            f'<text x="{left - 6}" y="{top + row / 2 + 4:.0f}" text-anchor="end">'
            f"{_e(item.label)}</text>"
            f'<rect x="{left}" y="{top + 3}" width="{max(x(item.value) - left, 1):.1f}" '
            f'height="{row - 6}" fill="{item.colour}"><title>{_e(item.label)}: '
            f"{item.value:,}</title></rect>"
            f'<text x="{x(item.value) + 4:.1f}" y="{top + row / 2 + 4:.0f}">'
            f"{item.value:,} ({100 * item.value / total:.1f}%)</text>"
        )
    parts.append(
        f'<text x="{left + inner_w / 2:.0f}" y="{height - 4}" text-anchor="middle">'
        f"{_e(unit)}</text>"
    )
    parts.extend(_legend(legend, WIDTH - 8, 14))
    return _svg(height, parts, unit)

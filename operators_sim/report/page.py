"""The report as a self-contained HTML page: tables, and charts drawn as
inline SVG (no script, nothing fetched), so the file opens from the file
system and can be mailed as it is.

The page is ``SECTIONS`` in order, each a function of the summary that
returns its HTML (``sections.py``); a new section is one more entry here.
"""

from __future__ import annotations

import html
from collections.abc import Callable

from ..summary import SimSummary
from . import complaints, sections

Section = Callable[[SimSummary], str]

SECTIONS: list[Section] = [
    sections.verdict,
    sections.facts,
    sections.operators,
    sections.by_source,
    sections.forced,
    sections.replicas,
    sections.caches,
    sections.verification,
    sections.rate_charts,
    sections.latency_chart,
    sections.reasons,
    sections.mismatches,
    sections.population,
    sections.sms,
    complaints.sections_html,
]

STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 62em; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.92em; }
td, th { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
td:first-child, th:first-child { text-align: left; }
th { background: #f3f3f3; }
h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.verdict { font-size: 1.15em; font-weight: bold; }
.ok { color: #1e8449; } .bad { color: #c0392b; } .facts, .note { color: #555; }
svg { display: block; margin: 0.4em 0 1em; max-width: 100%; height: auto; }
"""


def render_html(summary: SimSummary) -> str:
    """The whole page for ``summary``."""
    title = html.escape(summary.title)
    body = "\n".join(part for section in SECTIONS if (part := section(summary)))
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{STYLE}</style></head><body>\n"
        f"<h1>{title}</h1>\n{body}\n</body></html>\n"
    )

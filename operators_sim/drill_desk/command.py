"""``ceir-sim drill desk-move``: the command line of the desk-move drill."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import typer
from rich.console import Console

from ..drill.command import _db_urls
from ..node import OPERATORS

console = Console()


def desk_move_command(
    report: Path = typer.Option(..., help="Directory for report.json, report.html and logs/."),
    desks: str = typer.Option(
        "telkomsel,indosat,xl", help="The operators' desks that file complaints, comma-separated."
    ),
    per_state: int = typer.Option(
        2, min=1, max=50, help="Complaints each desk walks into each state."
    ),
    seed: int = typer.Option(1, help="Seed of the IMEIs and IMSIs."),
    db_url: list[str] | None = typer.Option(
        None,
        metavar="ORG=URL",
        help="An empty database for one register instead of a SQLite file, e.g. "
        "kemenperin=postgresql+psycopg://user@host/db (repeat for the other).",
    ),
    keep_work: bool = typer.Option(False, help="Keep the database and keys in DIR/work."),
    quiet: bool = typer.Option(False, help="Print only the verdict."),
) -> None:
    """Move the complaints desk from the operators to Kemenperin, with
    complaints in every state, and check that none was lost or duplicated.

    Exits 0 when every check passes; 1 otherwise.
    """
    from .run import DeskMoveConfig, DeskMoveDrill

    names = tuple(d.strip() for d in desks.split(",") if d.strip())
    known = {op.name for op in OPERATORS}
    if not names or any(d not in known for d in names):
        raise typer.BadParameter(
            f"operators among {', '.join(sorted(known))}", param_hint="--desks"
        )
    logging.basicConfig(level=logging.WARNING)
    began = time.monotonic()

    def show(message: str) -> None:
        if not quiet:
            console.print(f"drill {time.monotonic() - began:6.1f} s: {message}")

    config = DeskMoveConfig(
        report=report,
        desks=names,
        per_state=per_state,
        seed=seed,
        db_urls=_db_urls(db_url),
        keep_work=keep_work,
    )
    result = DeskMoveDrill(config, show).run()
    for item in result.checks:
        mark = "[green]pass[/]" if item.ok else "[red]FAIL[/]"
        console.print(f"{mark} {item.name}: {item.detail}", highlight=False)
    console.print_json(json.dumps(result.figures))
    console.print(f"report: {result.html} and {result.json}")
    if not result.ok:
        raise typer.Exit(1)

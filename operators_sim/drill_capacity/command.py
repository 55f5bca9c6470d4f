"""``ceir-sim drill capacity``: the command line of the capacity drill."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import typer
from rich.console import Console

console = Console()


def capacity_command(
    report: Path = typer.Option(
        ..., help="Directory for report.json, report.html, timeline.svg, revoked.csv and logs/."
    ),
    capacity: int = typer.Option(
        1_200_000,
        min=2_000,
        help="IMEIs the register holds (Indonesia's 1.2 billion at 1/1000); every other "
        "size of the drill follows from it.",
    ),
    scale: float = typer.Option(
        1.0, min=0.001, help="Multiply --capacity by this (e.g. 0.01 for a quick run)."
    ),
    range_guard: int = typer.Option(
        1_000, min=2, help="The range guard's K, turned on by the cure's restart."
    ),
    seed: int = typer.Option(1, help="Seed of the legitimate units' serial numbers."),
    db_url: str | None = typer.Option(
        None, help="An empty database (a SQLAlchemy URL) instead of a SQLite file."
    ),
    keep_work: bool = typer.Option(False, help="Keep the database and keys in DIR/work."),
    quiet: bool = typer.Option(False, help="Print only the verdict."),
) -> None:
    """Replay September 2020: a register filled by whole TAC ranges, and its cure.

    Exits 0 when no refused registration was lost, the ranges found were
    revoked with no phone in use among them, no unregistered phone was
    allowed, and the range guard refused the last upload; 1 otherwise.
    """
    from .run import CapacityConfig, CapacityDrill

    logging.basicConfig(level=logging.WARNING)
    began = time.monotonic()

    def show(message: str) -> None:
        if not quiet:
            console.print(f"drill {time.monotonic() - began:6.1f} s: {message}")

    config = CapacityConfig(
        report=report,
        capacity=max(2_000, round(capacity * scale)),
        seed=seed,
        guard=range_guard,
        db_url=db_url,
        keep_work=keep_work,
    )
    result = CapacityDrill(config, show).run()
    verdict = result.verdict
    console.print_json(json.dumps(verdict))
    console.print(f"report: {result.html} and {result.json}")
    if not good(verdict):
        console.print("[red]the drill's invariants do not hold; see the verdict above[/]")
        raise typer.Exit(1)


def good(verdict: dict[str, object]) -> bool:
    """The invariants every capacity drill must end with."""
    return (
        verdict["registrations_lost"] == 0
        and verdict["range_imeis_found"] == verdict["range_imeis_revoked"]
        and verdict["range_phones_in_use_revoked"] == 0
        and verdict["unregistered_allowed"] == 0
        and verdict["legitimate_devices_still_without_service"] == 0
        and verdict["guarded_range_upload"] == "DENSE_RANGE"
    )

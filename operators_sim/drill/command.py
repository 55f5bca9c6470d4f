"""``ceir-sim drill handover``: the command line of the handover drill."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import typer
from rich.console import Console

from .scenarios import SCENARIOS

drill_app = typer.Typer(
    name="drill",
    help="Rehearse the handover of the register (regulators' drills).",
    no_args_is_help=True,
)
console = Console()
ORGANISATIONS = ("telkomsel", "kemenperin")


def _db_urls(values: list[str] | None) -> dict[str, str]:
    urls: dict[str, str] = {}
    for value in values or []:
        organisation, sep, url = value.partition("=")
        if not sep or organisation not in ORGANISATIONS or not url:
            raise typer.BadParameter(
                f"{value!r}: expected ORGANISATION=URL, ORGANISATION telkomsel or kemenperin",
                param_hint="--db-url",
            )
        if organisation in urls:
            raise typer.BadParameter(f"{organisation} given twice", param_hint="--db-url")
        urls[organisation] = url
    return urls


def _scenario_help() -> str:
    return "; ".join(f"{s.name} ({s.expected})" for s in SCENARIOS.values())


@drill_app.command("handover")
def handover(
    report: Path = typer.Option(
        ..., help="Directory for verdict.json, report.html, report.md, evidence/ and logs/."
    ),
    scenario: str = typer.Option("clean", help="What goes wrong: " + _scenario_help() + "."),
    seed: int = typer.Option(1, help="Seed of the population and the traffic."),
    devices: int = typer.Option(2_000, min=10, help="Devices in the population."),
    rate: float = typer.Option(200.0, min=0.0, help="Attaches per second (Poisson)."),
    write_rate: float = typer.Option(5.0, min=0.1, help="List writes per second."),
    db_url: list[str] | None = typer.Option(
        None,
        metavar="ORG=URL",
        help="An empty database for one register instead of a SQLite file, e.g. "
        "kemenperin=postgresql+psycopg://user@host/db (repeat for the other).",
    ),
    keep_work: bool = typer.Option(
        False, help="Keep the databases and keys in DIR/work instead of a temporary directory."
    ),
    quiet: bool = typer.Option(False, help="Print only the verdict."),
) -> None:
    """Hand the register over from Telkomsel to Kemenperin under traffic, and judge it.

    Exits 0 when the outcome is the scenario's expected one with no attach
    unanswered, no acknowledged write lost or doubled and every complaint filed
    before the ceremony kept; 1 otherwise.
    """
    from .run import Drill, DrillConfig, DrillFailed

    if scenario not in SCENARIOS:
        raise typer.BadParameter(
            f"{scenario!r}; known: {', '.join(SCENARIOS)}", param_hint="--scenario"
        )
    logging.basicConfig(level=logging.WARNING)
    sys.setswitchinterval(0.0005)  # as ceir-sim attach: many threads share the GIL

    began = time.monotonic()

    def show(message: str) -> None:
        if not quiet:
            console.print(f"drill {time.monotonic() - began:5.1f} s: {message}")

    config = DrillConfig(
        scenario=scenario,
        report=report,
        seed=seed,
        devices=devices,
        rate=rate,
        write_rate=write_rate,
        db_urls=_db_urls(db_url),
        keep_work=keep_work,
    )
    try:
        result = Drill(config, show).run()
    except DrillFailed as error:
        console.print(f"[red]drill failed: {error}[/]")
        raise typer.Exit(1) from None
    verdict = result.verdict
    for line in verdict.lines():
        console.print(line, highlight=False)
    console.print(f"report: {result.html} and {result.markdown}")
    if result.evidence is not None:
        console.print(
            f"evidence: {result.evidence} (check it: ceir custody verify {result.evidence})"
        )
    console.print_json(json.dumps(verdict.as_dict()))
    expected = SCENARIOS[scenario].expected
    good = (
        verdict.outcome == expected
        and verdict.attaches_undecided == 0
        and verdict.acknowledged_writes_lost == 0
        and verdict.writes_applied_twice == 0
        and verdict.complaints_kept
    )
    if not good:
        console.print(f"[red]expected outcome {expected}; see the verdict above[/]")
        raise typer.Exit(1)

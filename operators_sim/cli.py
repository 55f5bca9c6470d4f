"""``ceir-sim``: attach simulations from the command line.

``ceir-sim attach`` runs a population through the five operators' EIR nodes
and reports; it exits with status 1 when any decision contradicts the ground
truth (or a replica did not catch up), 2 on a usage error.

``ceir-sim drill handover`` rehearses the handover of the register from
Telkomsel to Kemenperin (``operators_sim.drill``); it exits with status 1
when the outcome is not the scenario's expected one or an acknowledged write
was lost or doubled, an attach went unanswered, or the drill could not run.

``ceir-sim drill desk-move`` moves the complaints desk from the operators
to Kemenperin with complaints in every state (``operators_sim.drill_desk``);
it exits with status 1 when a complaint was lost, duplicated or altered, or
another of its checks fails.

``ceir-sim drill capacity`` replays September 2020, a register filled by
whole TAC ranges, and its cure (``operators_sim.drill_capacity``); it exits
with status 1 when a refused registration was lost or another of its
invariants does not hold.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from .complaints import ComplaintSettings
from .drill.command import drill_app
from .drill_capacity.command import capacity_command
from .drill_desk.command import desk_move_command
from .insider import SOURCES, InsiderSettings
from .loader import KEMLU, REQUIRED_ORGS
from .node import Failover, Mode
from .simulation import PHASES, Progress, SimConfig, Simulation
from .transport import MissingCertificate, Tls, client_certificates
from .verification import DEFAULT_ORIGIN

app = typer.Typer(
    help="Operator EIR nodes and attach simulations against a CEIR.",
    no_args_is_help=True,
    add_completion=False,
)
drill_app.command("capacity")(capacity_command)
drill_app.command("desk-move")(desk_move_command)
app.add_typer(drill_app)
console = Console()
SCENARIOS = ("normal", "insider")


@app.callback()
def main() -> None:
    """Operator EIR nodes and attach simulations against a CEIR."""


def _outage(value: str | None) -> tuple[float, float] | None:
    if not value:
        return None
    try:
        start, length = (float(part) for part in value.split(":"))
    except ValueError:
        raise typer.BadParameter("expected START:SECONDS, e.g. 20:5") from None
    if start < 0 or length <= 0:
        raise typer.BadParameter("START must be >= 0 and SECONDS > 0")
    return start, length


def _tokens(path: Path | None) -> dict[str, str] | None:
    if path is None:
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise typer.BadParameter(f"cannot read {path}: {error}") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise typer.BadParameter(f"{path}: expected a JSON object of organisation name -> token")
    return {str(k): v for k, v in data.items()}


def _endpoints(values: list[str] | None) -> dict[str, str]:
    """``POLICY_ENDPOINT=HOST:PORT`` pairs: where to dial for a custody policy's endpoint."""
    mapping: dict[str, str] = {}
    for value in values or ():
        endpoint, sep, target = value.partition("=")
        if not sep or not endpoint or not target or " " in value:
            raise typer.BadParameter(
                f"{value!r} is not POLICY_ENDPOINT=HOST:PORT", param_hint="--endpoint"
            )
        mapping[endpoint] = target
    return mapping


def _tls(ca_cert: Path | None, server_name: str | None) -> Tls | None:
    """TLS settings from --ca-cert and --server-name (with --client-certs, a
    server name alone still overrides the one dialled)."""
    if ca_cert is None and server_name is None:
        return None
    return Tls(ca_cert.read_bytes() if ca_cert is not None else b"", server_name)


def _render(progress: Progress) -> Table:
    table = Table(title=f"ceir-sim: {progress.phase}", show_header=True)
    table.add_column("node")
    table.add_column("sequence", justify="right")
    table.add_column("lag", justify="right")
    table.add_column("link")
    for name, sequence, lag, up in progress.nodes:
        table.add_row(name, f"{sequence:,}", f"{lag:,}", "[green]up[/]" if up else "[red]down[/]")
    rate = progress.attaches / progress.elapsed if progress.elapsed else 0.0
    table.caption = (
        f"{progress.elapsed:5.1f}/{progress.duration:.0f} s  attaches {progress.attaches:,} "
        f"({rate:,.0f}/s)  denied {progress.denied:,}  degraded {progress.degraded:,}  "
        f"CEIR {'up' if progress.ceir_up else 'DOWN'}"
    )
    return table


@app.command()
def attach(
    devices: int = typer.Option(10_000, min=10, help="Devices in the population."),
    rate: float = typer.Option(1_000.0, min=0.0, help="Attaches per second (Poisson)."),
    duration: float = typer.Option(10.0, min=0.1, help="Seconds of traffic."),
    attaches: int | None = typer.Option(
        None, min=1, help="Run until this many attaches instead of for --duration."
    ),
    mode: Mode = typer.Option(Mode.SYNCHRONIZE, help="How the nodes get their lists."),
    phase: str = typer.Option("notify", help="notify or enforce: the policy set before the run."),
    failover: Failover = typer.Option(
        Failover.LAST_KNOWN, help="What nodes answer while the CEIR is unreachable."
    ),
    ceir: str | None = typer.Option(
        None, help="HOST:PORT of a running CEIR (default: start one on SQLite)."
    ),
    tokens: Path | None = typer.Option(
        None, help="With --ceir: JSON file of organisation name -> token."
    ),
    client_certs: Path | None = typer.Option(
        None,
        exists=True,
        file_okay=False,
        help="With --ceir: mutual TLS instead of tokens; a directory of <org>.pem and "
        "<org>.key per organisation and ca.pem, as `ceir pki init` writes it.",
    ),
    ca_cert: Path | None = typer.Option(
        None,
        exists=True,
        dir_okay=False,
        help="With --ceir: PEM file of the CA that signed the CEIR's certificate (TLS; "
        "with --client-certs: instead of its ca.pem).",
    ),
    server_name: str | None = typer.Option(
        None,
        help="With --ca-cert or --client-certs: the name in the CEIR's certificate, "
        "if not the host.",
    ),
    insecure: bool = typer.Option(
        False,
        help="The embedded CEIR serves plain text with tokens instead of mutual TLS "
        "(its log says so).",
    ),
    custodian_key: Path | None = typer.Option(
        None,
        exists=True,
        dir_okay=False,
        help="With --ceir: the custodian's public key (PEM, or verifier key lines); "
        "synchronize nodes verify the signed log with it.",
    ),
    log_origin: str = typer.Option(
        DEFAULT_ORIGIN, help="The origin line of the log's checkpoints."
    ),
    verify: bool = typer.Option(
        True, help="Synchronize nodes verify the signed log (--no-verify: trust the feed)."
    ),
    custody_policy: Path | None = typer.Option(
        None,
        exists=True,
        dir_okay=False,
        help="With --ceir: custody policy 0 (its signed note). Nodes trust its log key and "
        "follow the register's custody handovers: readiness, the freeze, split views, "
        "the move to the new custodian.",
    ),
    node_state: Path | None = typer.Option(
        None,
        file_okay=False,
        help="With --custody-policy: where each node keeps its trust state and evidence "
        "(<DIR>/<operator>/custody.json, .../evidence/); default <data dir>/nodes or a "
        "new temporary directory.",
    ),
    endpoint: list[str] | None = typer.Option(
        None,
        help="POLICY_ENDPOINT=HOST:PORT, repeatable: the address to dial for an endpoint a "
        "custody policy or a REGISTER_MOVED names (default: the endpoint itself).",
    ),
    retry_for: float = typer.Option(
        120.0,
        min=0.0,
        help="Seconds a write keeps being retried while the register is frozen or moving.",
    ),
    seed: int = typer.Option(1, help="Seed of the population and the traffic."),
    report: Path = typer.Option(
        Path("reports/sim"), help="Directory for report.json and report.html."
    ),
    inject_rate: float = typer.Option(2.0, min=0.0, help="List changes per second during the run."),
    cache_ttl: float = typer.Option(
        5.0, min=0.0, help="Authorize mode: answer cache time-to-live (s)."
    ),
    grace_days: int = typer.Option(
        30, min=0, max=365, help="Notification grace period set before the run."
    ),
    outage: str | None = typer.Option(
        None, help="START:SECONDS: kill the embedded CEIR for a while."
    ),
    data_dir: Path | None = typer.Option(
        None, help="Where the embedded CEIR keeps its SQLite file."
    ),
    quiet: bool = typer.Option(False, help="No live display."),
    shot: bool = typer.Option(
        True,
        "--screenshot/--no-screenshot",
        help="Also write report.png, the page as headless Chromium shows it (when installed).",
    ),
    complaint_share: float = typer.Option(
        0.1,
        min=0.0,
        max=1.0,
        help="Of the subscribers denied or notified, the share who complain at a desk "
        "(0: no complaint traffic).",
    ),
    desk_capacity: float = typer.Option(
        20.0, min=0.1, help="Complaints each desk works per simulated day."
    ),
    complaint_days: float = typer.Option(
        7.0, min=0.01, help="Simulated days the run's traffic stands for (desks' clock)."
    ),
    scenario: str = typer.Option(
        "normal",
        help="normal, or insider: one account registers a burst of black-market phones; "
        "the account alert fires and Kemenperin revokes the burst.",
    ),
    insider_org: str = typer.Option(
        KEMLU, help="With --scenario insider: the abused account (kemlu, bea-cukai, kemenperin)."
    ),
) -> None:
    """Run an attach simulation and write its report."""
    if scenario not in SCENARIOS:
        raise typer.BadParameter(f"one of {', '.join(SCENARIOS)}", param_hint="--scenario")
    if insider_org not in SOURCES:
        raise typer.BadParameter(f"one of {', '.join(SOURCES)}", param_hint="--insider-org")
    if phase not in PHASES:
        raise typer.BadParameter("notify or enforce", param_hint="--phase")
    if ceir and tokens is None and client_certs is None:
        raise typer.BadParameter(
            "--ceir needs --tokens FILE or --client-certs DIR", param_hint="--tokens"
        )
    if tokens is not None and client_certs is not None:
        raise typer.BadParameter(
            "--tokens or --client-certs, not both", param_hint="--client-certs"
        )
    if (ca_cert or server_name or tokens or client_certs) and not ceir:
        raise typer.BadParameter(
            "--tokens, --client-certs, --ca-cert and --server-name need --ceir "
            "(the embedded CEIR makes its own certificates)",
            param_hint="--ceir",
        )
    if server_name and ca_cert is None and client_certs is None:
        raise typer.BadParameter(
            "--server-name needs --ca-cert or --client-certs", param_hint="--server-name"
        )
    if client_certs is not None:
        try:
            client_certificates(client_certs, REQUIRED_ORGS, b"" if ca_cert else None)
        except MissingCertificate as error:
            raise typer.BadParameter(str(error), param_hint="--client-certs") from None
    if insecure and ceir:
        raise typer.BadParameter(
            "--insecure is for the embedded CEIR (no --ceir)", param_hint="--insecure"
        )
    if custodian_key and not ceir:
        raise typer.BadParameter(
            "--custodian-key needs --ceir (the embedded CEIR hands its key to the nodes)",
            param_hint="--custodian-key",
        )
    if custody_policy and not ceir:
        raise typer.BadParameter(
            "--custody-policy needs --ceir (a register whose log key the policy names)",
            param_hint="--custody-policy",
        )
    if custody_policy and custodian_key:
        raise typer.BadParameter(
            "--custody-policy or --custodian-key, not both: the policy names the log key",
            param_hint="--custodian-key",
        )
    if node_state and not custody_policy:
        raise typer.BadParameter("--node-state needs --custody-policy", param_hint="--node-state")
    if outage and ceir:
        raise typer.BadParameter(
            "--outage needs the embedded CEIR (no --ceir)", param_hint="--outage"
        )
    logging.basicConfig(level=logging.WARNING)
    # Ten-odd threads share the GIL (nodes, feeds, reporters, traffic): hand it
    # over every 0.5 ms instead of 5 ms, so an attach waits less behind another.
    sys.setswitchinterval(0.0005)
    config = SimConfig(
        devices=devices,
        rate=rate,
        duration=duration,
        attaches=attaches,
        mode=mode,
        phase=phase,
        failover=failover,
        seed=seed,
        ceir=ceir,
        tokens=_tokens(tokens),
        tls=_tls(ca_cert, server_name),
        client_certs=client_certs,
        insecure=insecure,
        data_dir=data_dir,
        inject_rate=inject_rate,
        cache_ttl=cache_ttl,
        grace_days=grace_days,
        outage=_outage(outage),
        verify=verify,
        custodian_key=custodian_key,
        log_origin=log_origin,
        custody_policy=custody_policy,
        node_state=node_state,
        endpoints=_endpoints(endpoint),
        retry_for=retry_for,
        complaints=ComplaintSettings(
            share=complaint_share, capacity=desk_capacity, days=complaint_days, seed=seed
        ),
        insider=InsiderSettings(organisation=insider_org, seed=seed)
        if scenario == "insider"
        else None,
    )
    from .report import print_summary, screenshot, write_reports
    from .summary import summarize

    if quiet or not console.is_terminal:

        def show(progress: Progress) -> None:
            if progress.phase != "running":
                console.print(f"ceir-sim: {progress.phase}")

        result = Simulation(config, show).run()
    else:
        with Live(_render(Progress("starting")), console=console, refresh_per_second=4) as live:
            result = Simulation(config, lambda p: live.update(_render(p))).run()
    summary = summarize(result)
    print_summary(summary, console)
    json_path, html_path = write_reports(summary, report)
    console.print(f"report: {html_path} and {json_path}")
    if shot:
        console.print(screenshot(html_path), markup=False)
    if not summary.ok:
        raise typer.Exit(1)


if __name__ == "__main__":
    app()

"""``ceir custody witness serve``: run a witness of the register's log."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ceir.api.observability import configure_logging
from ceir.witness import StateError, WitnessConfig, serve_witness

from ._output import fail, reporting_errors

witness_app = typer.Typer(
    name="witness",
    help="Run a witness that cosigns the register's checkpoints.",
    no_args_is_help=True,
)


@witness_app.command("serve")
def serve(
    name: Annotated[str, typer.Option(help="The witness's name, as the policies list it.")],
    key: Annotated[
        Path, typer.Option(exists=True, dir_okay=False, help="Its note key file (`witness-key`).")
    ],
    cosigner_key: Annotated[
        Path,
        typer.Option(exists=True, dir_okay=False, help="Its cosigner key file (FILE.cosigner)."),
    ],
    policy: Annotated[
        Path,
        typer.Option(
            exists=True, dir_okay=False, help="The custody policy it trusts (policy-0.note)."
        ),
    ],
    state: Annotated[
        Path,
        typer.Option(
            dir_okay=False,
            help="Its state file: the last checkpoint cosigned per log (created if missing). "
            "Never share or reset it: a witness that forgets can be made to cosign a fork.",
        ),
    ],
    listen: Annotated[str, typer.Option(metavar="HOST:PORT", help="Address to listen on.")] = (
        "127.0.0.1:50061"
    ),
    tls_key: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="PEM private key: serve TLS.")
    ] = None,
    tls_cert: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="PEM certificate chain: serve TLS."),
    ] = None,
    client_ca: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="PEM CA certificate: only callers with a client certificate it signed.",
        ),
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Serve plain text (tests and local experiments).")
    ] = False,
) -> None:
    """Cosign checkpoints that extend the last one this witness cosigned (WitnessService).

    Checks each checkpoint's signature under a log key of its policy chain
    (walking to later policies when a caller sends them), the caller's
    old size against its own, and the consistency proof; saves its state,
    then cosigns. Runs until SIGINT or SIGTERM. Logs are JSON lines on stderr.
    """
    config = WitnessConfig(
        name=name,
        note_key=key,
        cosigner_key=cosigner_key,
        policy=policy,
        state=state,
        address=listen,
        tls_key=tls_key,
        tls_cert=tls_cert,
        client_ca=client_ca,
        insecure=insecure,
    )
    try:
        config.check()
    except ValueError as error:
        fail(str(error))
    configure_logging("info")
    with reporting_errors():
        try:
            serve_witness(config)
        except StateError as error:
            fail(str(error))

"""``ceir pki``: a throwaway certificate authority for demos and tests.

A real deployment issues certificates from its own PKI; this one writes
unencrypted keys next to the CA's and has no revocation list.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ceir.pki import BRIEF_ORGANISATIONS, DEFAULT_DAYS, DEFAULT_HOSTS, init_pki

from ._output import CliError, out, reporting_errors

pki_app = typer.Typer(
    name="pki",
    help="Certificates for mutual TLS, for demos and tests only.",
    no_args_is_help=True,
)


@pki_app.command("init")
def init(
    directory: Annotated[
        Path, typer.Argument(file_okay=False, help="Where to write (created if missing).")
    ],
    days: Annotated[
        int, typer.Option("--days", min=1, help="Validity of every certificate, in days.")
    ] = DEFAULT_DAYS,
    host: Annotated[
        list[str] | None,
        typer.Option(
            "--host",
            metavar="NAME_OR_IP",
            show_default=False,
            help="A name or address clients dial, put in the server certificate "
            "(repeat; default localhost and 127.0.0.1).",
        ),
    ] = None,
) -> None:
    """Create a CA, a server certificate and a client certificate per organisation.

    Writes ca.pem/ca.key, server.pem/server.key and <org>.pem/<org>.key for
    telkomsel, indosat, xl, tri, smartfren, kemenperin, bea-cukai, kemlu and
    kominfo. Each client certificate's common name is the organisation's name,
    which must match its name in the register (`ceir org add`). Keys are
    written readable by their owner only; existing files are never replaced.
    """
    hosts = tuple(host) if host else DEFAULT_HOSTS
    with reporting_errors():
        try:
            files = init_pki(directory, hosts=hosts, days=days)
        except FileExistsError as error:
            raise CliError(str(error)) from None
    table = Table(title=f"Certificates in {directory} (valid {days} days)")
    for column in ("file", "for", "subject"):
        table.add_column(column)
    table.add_row("ca.pem/.key", "the certificate authority", "CEIR demo CA")
    table.add_row("server.pem/.key", "ceir serve", ", ".join(hosts))
    for org in BRIEF_ORGANISATIONS:
        table.add_row(f"{org.name}.pem/.key", org.kind, f"CN={org.name}")
    out().print(table)
    out().print(
        f"ceir serve --tls-cert {files.server} --tls-key {files.key(files.server)} "
        f"--client-ca {files.ca} ...",
        soft_wrap=True,
    )

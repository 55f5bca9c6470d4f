"""Options and channel shared by the commands that call a running CEIR.

The CLI is a client of the published API, like an operator's EIR: it builds
``ceir.v1`` requests and never reaches into the server's internals.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import grpc
import typer

from ._output import CliError

DEFAULT_ADDRESS = "127.0.0.1:50051"

AddressOption = Annotated[
    str,
    typer.Option(
        "--ceir",
        envvar="CEIR_ADDRESS",
        metavar="HOST:PORT",
        help="Address of the CEIR server.",
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="CEIR_TOKEN",
        show_default=False,
        help="Bearer token of your organisation (from `ceir org add`).",
    ),
]
CaCertOption = Annotated[
    Path | None,
    typer.Option(
        "--ca-cert",
        envvar="CEIR_CA_CERT",
        exists=True,
        dir_okay=False,
        readable=True,
        help="PEM file of the CA that signed the server's certificate: "
        "connect with TLS instead of plain text.",
    ),
]
TimeoutOption = Annotated[
    float,
    typer.Option("--timeout", min=0.1, metavar="SECONDS", help="Deadline of each call."),
]


@dataclass(frozen=True)
class Remote:
    """Where the CEIR is and who we are to it."""

    address: str
    token: str | None
    ca_cert: Path | None = None
    timeout: float = 30.0

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The call metadata: the bearer token every RPC needs."""
        if not self.token:
            raise CliError("no token: pass --token TOKEN or set CEIR_TOKEN")
        return (("authorization", f"Bearer {self.token}"),)

    @contextmanager
    def channel(self) -> Iterator[grpc.Channel]:
        """A channel to the server: TLS if a CA certificate is given."""
        if self.ca_cert is not None:
            credentials = grpc.ssl_channel_credentials(root_certificates=self.ca_cert.read_bytes())
            channel = grpc.secure_channel(self.address, credentials)
        else:
            channel = grpc.insecure_channel(self.address)
        with channel:
            yield channel

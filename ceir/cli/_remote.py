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
ClientCertOption = Annotated[
    Path | None,
    typer.Option(
        "--client-cert",
        envvar="CEIR_CLIENT_CERT",
        exists=True,
        dir_okay=False,
        readable=True,
        help="PEM client certificate of your organisation: mutual TLS, the certificate "
        "names you and no token is needed. Needs --client-key.",
    ),
]
ClientKeyOption = Annotated[
    Path | None,
    typer.Option(
        "--client-key",
        envvar="CEIR_CLIENT_KEY",
        exists=True,
        dir_okay=False,
        readable=True,
        help="PEM private key of --client-cert.",
    ),
]
ServerNameOption = Annotated[
    str | None,
    typer.Option(
        "--server-name",
        envvar="CEIR_SERVER_NAME",
        show_default=False,
        help="Name to expect in the server's certificate, when it differs from the "
        "host of --ceir (an address, a load balancer).",
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
    client_cert: Path | None = None
    client_key: Path | None = None
    server_name: str | None = None

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The call metadata: the bearer token, unless a client certificate names us."""
        if (self.client_cert is None) != (self.client_key is None):
            raise CliError("mutual TLS needs both --client-cert and --client-key")
        if self.token:
            return (("authorization", f"Bearer {self.token}"),)
        if self.client_cert is not None:
            return ()
        raise CliError(
            "no credentials: pass --client-cert and --client-key (or CEIR_CLIENT_CERT and "
            "CEIR_CLIENT_KEY), or --token TOKEN (or CEIR_TOKEN)"
        )

    @contextmanager
    def channel(self) -> Iterator[grpc.Channel]:
        """A channel to the server: TLS if a CA or client certificate is given."""
        if self.ca_cert is not None or self.client_cert is not None:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=self.ca_cert.read_bytes() if self.ca_cert else None,
                private_key=self.client_key.read_bytes() if self.client_key else None,
                certificate_chain=self.client_cert.read_bytes() if self.client_cert else None,
            )
            options = (
                [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []
            )
            channel = grpc.secure_channel(self.address, credentials, options=options)
        else:
            channel = grpc.insecure_channel(self.address)
        with channel:
            yield channel

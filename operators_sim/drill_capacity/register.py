"""The drill's register: one ``ceir serve`` process over mutual TLS, started
as an operator would start it and restarted with other flags (the cure
raises ``--capacity`` and turns ``--range-guard`` on), and a channel to it
for every organisation, each with its own client certificate."""

from __future__ import annotations

from pathlib import Path

import grpc

from ceir.audit.keys import generate_signing_key, save_private_key

from ..drill.processes import ServerProcess, ceir_command, free_port, wait_serving
from ..embedded import create_organisations, demo_pki
from ..loader import REQUIRED_ORGS
from ..transport import CHANNEL_OPTIONS, Credentials, client_certificates, open_channel

__all__ = ["DrillRegister"]

START_TIMEOUT = 300.0  # a restart proves the whole log first


class DrillRegister:
    def __init__(self, work: Path, logs: Path, db_url: str | None = None) -> None:
        self.work = work
        self.logs = logs
        self.port = free_port()
        self.database = db_url or str(work / "register.db")
        self.pki = work / "pki"
        demo_pki(self.pki)
        self.credentials: dict[str, Credentials] = client_certificates(self.pki, REQUIRED_ORGS)
        self.signing_key = work / "custodian.pem"
        save_private_key(generate_signing_key(), self.signing_key)
        create_organisations(self.database, migrate=True)
        self.process: ServerProcess | None = None
        self.flags: list[str] = []
        self._channels: dict[str, grpc.Channel] = {}

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self, flags: list[str]) -> list[str]:
        pki = self.pki
        return [
            *ceir_command(),
            "serve",
            "--db",
            self.database,
            "--listen",
            self.address,
            "--tls-key",
            str(pki / "server.key"),
            "--tls-cert",
            str(pki / "server.pem"),
            "--client-ca",
            str(pki / "ca.pem"),
            "--signing-key",
            str(self.signing_key),
            "--no-access-log",
            "--log-level",
            "warning",
            *flags,
        ]

    def start(self, flags: list[str]) -> None:
        """Start serving with ``flags`` (``--capacity N``...); wait until it serves."""
        self.flags = list(flags)
        self.process = ServerProcess("register", self.command(flags), self.logs / "register.log")
        self.process.start()
        process = self.process
        if not wait_serving(self.channel("kominfo"), START_TIMEOUT, lambda: process.running):
            raise RuntimeError(f"the register did not start serving:\n{process.tail()}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def restart(self, flags: list[str]) -> None:
        """Stop (SIGTERM: a planned restart) and start again with ``flags``."""
        self.stop()
        self.start(flags)

    def channel(self, organisation: str) -> grpc.Channel:
        channel = self._channels.get(organisation)
        if channel is None:
            tls = self.credentials[organisation].tls
            channel = self._channels[organisation] = open_channel(
                self.address, tls, CHANNEL_OPTIONS
            )
        return channel

    def cli_credentials(self, organisation: str) -> list[str]:
        """The ``ceir`` command line options that act as ``organisation``."""
        pki = self.pki
        return [
            "--ceir",
            self.address,
            "--ca-cert",
            str(pki / "ca.pem"),
            "--client-cert",
            str(pki / f"{organisation}.pem"),
            "--client-key",
            str(pki / f"{organisation}.key"),
        ]

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
        self.stop()

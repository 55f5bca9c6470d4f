"""The drill's parties on one machine: two registers, a witness, proxies, and
a mutual-TLS channel for each organisation to each of them.

Telkomsel's register (the custodian, policy 0's log key) and Kemenperin's
(``--standby-of`` Telkomsel's, with its own database and key) are
``ceir serve`` processes; the witness is ``ceir custody witness serve``.
Every organisation connects with its own client certificate from a demo
PKI made for the run (``embedded.demo_pki``), as in ``ceir-sim attach``.
Ports are chosen before the policies are written, since policies name the
custodians' endpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import grpc

from ..embedded import create_organisations, demo_pki
from ..loader import REQUIRED_ORGS
from ..transport import CHANNEL_OPTIONS, Credentials, client_certificates, open_channel
from .keys import INCOMING, OUTGOING, WITNESS
from .processes import ServerProcess, ceir_command, free_port, wait_serving
from .proxy import Proxy

__all__ = ["Cluster", "Files"]

START_TIMEOUT = 90.0


@dataclass(frozen=True)
class Files:
    """Where a drill keeps what it makes (``work`` is removed at the end)."""

    work: Path
    logs: Path

    @property
    def pki(self) -> Path:
        return self.work / "pki"

    def key(self, name: str) -> Path:
        return self.work / "keys" / name

    def policy(self, version: int) -> Path:
        return self.work / f"policy-{version}.note"


@dataclass
class Cluster:
    """The registers and the witness of one drill, and channels to them."""

    files: Files
    db_urls: dict[str, str]
    node_proxy: bool = False  # the nodes reach Telkomsel's register through a proxy
    transfer_proxy: bool = False  # Kemenperin's standby pulls through a proxy
    ports: dict[str, int] = field(default_factory=dict)
    servers: dict[str, ServerProcess] = field(default_factory=dict)
    proxies: dict[str, Proxy] = field(default_factory=dict)
    _channels: dict[tuple[str, str], grpc.Channel] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in (OUTGOING, INCOMING, "witness"):
            self.ports[name] = free_port()
        self.files.pki.parent.mkdir(parents=True, exist_ok=True)
        self.files.key("x").parent.mkdir(parents=True, exist_ok=True)
        pki = demo_pki(self.files.pki)
        self.credentials: dict[str, Credentials] = client_certificates(pki.directory, REQUIRED_ORGS)
        server = (pki.key(pki.server).read_bytes(), pki.server.read_bytes())
        if self.node_proxy:
            self.proxies["nodes"] = Proxy(self.address(OUTGOING), self.files.pki, server)
        if self.transfer_proxy:
            self.proxies["transfer"] = Proxy(self.address(OUTGOING), self.files.pki, server)

    # -- addresses -----------------------------------------------------------------

    def address(self, name: str) -> str:
        """Where ``name`` (telkomsel, kemenperin, witness) listens."""
        return f"127.0.0.1:{self.ports[name]}"

    def endpoint(self, organisation: str) -> str:
        """The endpoint a policy names for ``organisation``'s register: where the
        nodes connect (Telkomsel's: through the proxy, when there is one)."""
        if organisation == OUTGOING and "nodes" in self.proxies:
            return self.proxies["nodes"].address
        return self.address(organisation)

    def database(self, organisation: str) -> str:
        return self.db_urls.get(organisation) or str(self.files.work / f"{organisation}.db")

    # -- starting ------------------------------------------------------------------

    def prepare_databases(self) -> None:
        """Both registers know the brief's organisations (their certificates' CNs)."""
        for organisation in (OUTGOING, INCOMING):
            create_organisations(self.database(organisation), migrate=True)

    def _serve_command(self, organisation: str, signing_key: Path, policy_0: Path) -> list[str]:
        pki = self.files.pki
        return [
            *ceir_command(),
            "serve",
            "--db",
            self.database(organisation),
            "--listen",
            self.address(organisation),
            "--tls-key",
            str(pki / "server.key"),
            "--tls-cert",
            str(pki / "server.pem"),
            "--client-ca",
            str(pki / "ca.pem"),
            "--signing-key",
            str(signing_key),
            "--custody-policy",
            str(policy_0),
            "--no-access-log",
            "--log-level",
            "warning",
        ]

    def start_outgoing(self, signing_key: Path, policy_0: Path) -> None:
        command = self._serve_command(OUTGOING, signing_key, policy_0)
        self._start(ServerProcess(OUTGOING, command, self.files.logs / f"{OUTGOING}.log"))
        for proxy in self.proxies.values():
            proxy.start()

    def start_incoming(self, signing_key: Path, policy_0: Path, custodian_key: str) -> None:
        """``custodian_key``: the outgoing custodian's log key (verifier key), with
        which the standby verifies what it copies."""
        pki = self.files.pki
        upstream = (
            self.proxies["transfer"].address
            if "transfer" in self.proxies
            else self.address(OUTGOING)
        )
        command = [
            *self._serve_command(INCOMING, signing_key, policy_0),
            "--standby-of",
            upstream,
            "--trusted-log-key",
            custodian_key,
            "--client-cert",
            str(pki / f"{INCOMING}.pem"),
            "--client-key",
            str(pki / f"{INCOMING}.key"),
        ]
        self._start(ServerProcess(INCOMING, command, self.files.logs / f"{INCOMING}.log"))

    def start_witness(self, keys: tuple[Path, Path], policy_0: Path) -> None:
        """``keys``: the witness's note key file and cosigner key file."""
        pki = self.files.pki
        command = [
            *ceir_command(),
            "custody",
            "witness",
            "serve",
            "--listen",
            self.address("witness"),
            "--name",
            WITNESS,
            "--key",
            str(keys[0]),
            "--cosigner-key",
            str(keys[1]),
            "--policy",
            str(policy_0),
            "--state",
            str(self.files.work / "witness-state.json"),
            "--tls-key",
            str(pki / "server.key"),
            "--tls-cert",
            str(pki / "server.pem"),
            "--client-ca",
            str(pki / "ca.pem"),
        ]
        self._start(ServerProcess("witness", command, self.files.logs / "witness.log"))

    def _start(self, server: ServerProcess) -> None:
        self.servers[server.name] = server
        server.start()

    def wait_serving(self, name: str, timeout: float = START_TIMEOUT) -> None:
        """Wait for ``name``'s health service; RuntimeError with its log's end if not."""
        server = self.servers[name]
        channel = self.channel(name, "kominfo")
        if not wait_serving(channel, timeout, lambda: server.running):
            raise RuntimeError(f"{name} did not start serving:\n{server.tail()}")

    def restart(self, name: str) -> None:
        self.servers[name].start()
        self.wait_serving(name)

    # -- channels ------------------------------------------------------------------

    def channel(self, name: str, organisation: str) -> grpc.Channel:
        """A channel to ``name`` with ``organisation``'s client certificate."""
        key = (name, organisation)
        channel = self._channels.get(key)
        if channel is None:
            tls = self.credentials[organisation].tls
            channel = open_channel(self.address(name), tls, CHANNEL_OPTIONS)
            self._channels[key] = channel
        return channel

    def channels(self, name: str) -> dict[str, grpc.Channel]:
        return {org: self.channel(name, org) for org in REQUIRED_ORGS}

    def stop(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
        for proxy in self.proxies.values():
            proxy.stop()
        for server in reversed(list(self.servers.values())):
            server.stop()

"""A CEIR of the simulation's own, for runs without ``--ceir``.

This is the one module of ``operators_sim`` that touches the server's code,
and only to stand a server up as its operator would (the handover drill
creates its two registers' organisations with ``create_organisations``): it runs
``ceir.api.server.create_server`` in a child process (its own interpreter,
so the register and the simulation do not share a GIL) and creates the
organisations with ``ceir.service.orgs.add_organisation``. Everything else
talks to it over gRPC: over mutual TLS with the organisations' client
certificates when it serves TLS with a client CA, else with the tokens
``create_organisations`` returns.

Unless asked for plain text, it serves mutual TLS with a demo PKI
(``demo_pki``: ``ceir.pki``'s CA, a server certificate and a client
certificate per organisation, made for each run in ``<data dir>/pki``).

It signs the log with a key it creates in its data directory
(``custodian.pem``, never in the database) and hands the public key
(``custodian.pub.pem``) to the nodes, as a custodian publishes it.

``python -m operators_sim.embedded --db FILE --address HOST:PORT
[--signing-key FILE] [--account-alert-factor F --account-alert-floor N]
(--tls-key FILE --tls-cert FILE [--client-ca FILE] |
--insecure)`` is the child: it prints ``PORT <n>`` once listening and stops
on SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from ceir.organisations import BRIEF_ORGANISATIONS

if TYPE_CHECKING:
    from ceir.pki import PkiFiles


def demo_pki(directory: Path) -> PkiFiles:
    """A new demo PKI in ``directory`` (emptied first), as ``ceir pki init``
    makes it: ``ca.pem``, ``server.pem`` for localhost and 127.0.0.1, and
    ``<org>.pem``/``<org>.key`` for every organisation of the brief
    (``ceir.organisations``)."""
    import shutil

    from ceir.pki import init_pki

    shutil.rmtree(directory, ignore_errors=True)  # each run starts from new certificates
    return init_pki(directory)


def create_organisations(db: str, migrate: bool = False) -> dict[str, str]:
    """Create every organisation of the brief in the register at ``db`` (a
    SQLite path or a SQLAlchemy URL), migrating its schema first when asked
    (no server has run on it yet); name -> token. The handover drill does
    this for both of its registers, as their custodians would."""
    from ceir.service.orgs import add_organisation
    from ceir.storage.database import Database

    database = Database(db)
    try:
        if migrate:
            database.migrate()
        return {
            org.name: add_organisation(database, org.name, org.kind, list(org.mcc_mncs))
            for org in BRIEF_ORGANISATIONS
        }
    finally:
        database.engine.dispose()


class EmbeddedCeir:
    """A CEIR server in a child process over a SQLite file."""

    def __init__(
        self,
        data_dir: Path,
        port: int = 0,
        tls: tuple[Path, Path] | None = None,
        client_ca: Path | None = None,
        alert_rule: tuple[float, float] | None = None,
    ) -> None:
        """``tls``: (key, certificate) PEM files to serve TLS, and with
        ``client_ca`` (the CA of the client certificates, PEM) mutual TLS;
        plain text on 127.0.0.1 without them (the server logs it).
        ``alert_rule``: the account alert's (factor, floor), as ``ceir serve
        --account-alert-factor/--account-alert-floor`` (default: the server's)."""
        if client_ca is not None and tls is None:
            raise ValueError("client_ca needs tls (a server key and certificate)")
        self.data_dir = data_dir
        self.db_path = data_dir / "ceir.db"
        self.port = port
        self.tls = tls
        self.client_ca = client_ca
        self.alert_rule = alert_rule
        self._process: subprocess.Popen[str] | None = None

    @property
    def signing_key_path(self) -> Path:
        return self.data_dir / "custodian.pem"

    @property
    def public_key_path(self) -> Path:
        """The custodian's public key: what the nodes are configured with."""
        return self.data_dir / "custodian.pub.pem"

    def _ensure_signing_key(self) -> None:
        from ceir.audit.keys import generate_signing_key, save_private_key, save_public_key

        if self.signing_key_path.exists():
            return  # a restart signs with the same key
        key = generate_signing_key()
        save_private_key(key, self.signing_key_path)
        self.public_key_path.unlink(missing_ok=True)
        save_public_key(key.public_key(), self.public_key_path)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        """Start the server (the same port as before, after a restart)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._ensure_signing_key()
        command = [
            sys.executable,
            "-m",
            "operators_sim.embedded",
            "--db",
            str(self.db_path),
            "--address",
            f"127.0.0.1:{self.port}",
            "--signing-key",
            str(self.signing_key_path),
        ]
        if self.tls is not None:
            command += ["--tls-key", str(self.tls[0]), "--tls-cert", str(self.tls[1])]
            if self.client_ca is not None:
                command += ["--client-ca", str(self.client_ca)]
        else:
            command.append("--insecure")
        if self.alert_rule is not None:
            factor, floor = self.alert_rule
            command += ["--account-alert-factor", str(factor), "--account-alert-floor", str(floor)]
        self._close_pipe()
        with (self.data_dir / "ceir.log").open("a") as log:  # the child keeps its own copy
            self._process = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        assert self._process.stdout is not None
        ready: list[str] = []
        reader = threading.Thread(
            target=lambda: ready.append(self._process.stdout.readline()),  # type: ignore[union-attr]
            daemon=True,
        )
        reader.start()
        reader.join(timeout)
        line = ready[0] if ready else ""
        if not line.startswith("PORT "):
            self.kill()
            tail = (self.data_dir / "ceir.log").read_text()[-2000:]
            raise RuntimeError(f"the embedded CEIR did not start: {line!r}\n{tail}")
        self.port = int(line.split()[1])

    def create_organisations(self) -> dict[str, str]:
        """Create every organisation of the brief; name -> token.
        Call once the server has started (it creates the schema)."""
        return create_organisations(str(self.db_path))

    def kill(self) -> None:
        """SIGKILL: the server gets no chance to shut down cleanly."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._close_pipe()

    def _close_pipe(self) -> None:
        if self._process is not None and self._process.stdout is not None:
            self._process.stdout.close()

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM and wait (graceful shutdown)."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._close_pipe()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None


def main() -> None:
    parser = argparse.ArgumentParser(description="run a CEIR for a simulation")
    parser.add_argument("--db", required=True)
    parser.add_argument("--address", default="127.0.0.1:0")
    parser.add_argument("--tls-key", type=Path)
    parser.add_argument("--tls-cert", type=Path)
    parser.add_argument("--client-ca", type=Path)
    parser.add_argument("--insecure", action="store_true", help="serve plain text")
    parser.add_argument("--signing-key", type=Path)
    parser.add_argument("--account-alert-factor", type=float)
    parser.add_argument("--account-alert-floor", type=float)
    args = parser.parse_args()
    from ceir.api.server import ServerConfig, create_server

    alert_rule = {
        name: value
        for name, value in (
            ("account_alert_factor", args.account_alert_factor),
            ("account_alert_floor", args.account_alert_floor),
        )
        if value is not None
    }

    running = create_server(
        ServerConfig(
            db=args.db,
            address=args.address,
            access_log=False,
            tls_key=args.tls_key,
            tls_cert=args.tls_cert,
            client_ca=args.client_ca,
            insecure=args.insecure,  # plain text only when asked, and it logs so
            signing_key=args.signing_key,
            **alert_rule,
        )
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    print(f"PORT {running.port}", flush=True)
    while not done.wait(1.0):
        if os.getppid() == 1:  # the simulation died: do not outlive it
            break
    running.stop(grace=2.0)


if __name__ == "__main__":
    main()

"""A real custodian register under a custody policy, a witness, and the people's key files.

Register A (Telkomsel, the docs' old log key) runs under policy 0 over mutual
TLS; register B is where policy 1 says the register goes (Kemenperin); a
witness (Kominfo) cosigns. Every officer and witness key is a key file made
from the docs' example keys, and the CLI is driven as people would drive it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from typer.testing import CliRunner, Result

from ceir.api.server import RunningServer, ServerConfig, create_server
from ceir.audit.keys import save_private_key
from ceir.cli import app
from ceir.custody.keyfiles import public_path, write_cosigner_key, write_note_key
from ceir.pki import PkiFiles, init_pki
from ceir.service.orgs import add_organisation
from ceir.witness import RunningWitness, WitnessConfig, create_witness_server

from .example import ORIGIN, private_key

PEOPLE = {  # key file name: (key name, example phrase)
    "ayu": ("officer.telkomsel.example/ayu", "telkomsel officer ayu"),
    "budi": ("officer.telkomsel.example/budi", "telkomsel officer budi"),
    "citra": ("officer.telkomsel.example/citra", "telkomsel officer citra"),
    "dewi": ("officer.kemenperin.example/dewi", "kemenperin officer dewi"),
    "eko": ("officer.kemenperin.example/eko", "kemenperin officer eko"),
    "fajar": ("officer.kemenperin.example/fajar", "kemenperin officer fajar"),
    "new-log": (ORIGIN, "kemenperin log key"),  # the incoming register's, to sign offline
}
WITNESS = "witness.kominfo.example"
ORGS = {
    "telkomsel": ("operator", ["510-10"]),
    "kemenperin": ("kemenperin", []),
    "kominfo": ("kominfo", []),
}
CLEAN_ENV: dict[str, str | None] = {
    "CEIR_ADDRESS": None,
    "CEIR_TOKEN": None,
    "CEIR_CA_CERT": None,
    "CEIR_CLIENT_CERT": None,
    "CEIR_CLIENT_KEY": None,
    "CEIR_DEBUG": None,
    "COLUMNS": "250",
}


def run(*args: str | Path) -> Result:
    """``ceir ARGS`` in this process."""
    return CliRunner(env=CLEAN_ENV).invoke(app, [str(a) for a in args])


def ok(*args: str | Path) -> Result:
    """``ceir ARGS``, which must succeed."""
    result = run(*args)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


@dataclass
class Ceremony:
    """The registers, the witness, the files; ``as_org`` gives the connection options."""

    directory: Path
    pki: PkiFiles
    outgoing: RunningServer
    incoming: RunningServer
    witness: RunningWitness
    keys: dict[str, Path] = field(default_factory=dict)

    def as_org(self, org: str, port: int | None = None) -> list[str]:
        """Connection options of ``org`` (its client certificate) to register A (or ``port``)."""
        certificate = self.pki.clients[org]
        return [
            "--ceir",
            f"localhost:{port or self.outgoing.port}",
            "--ca-cert",
            str(self.pki.ca),
            "--client-cert",
            str(certificate),
            "--client-key",
            str(self.pki.key(certificate)),
        ]

    @property
    def witness_address(self) -> str:
        return f"127.0.0.1:{self.witness.port}"

    def path(self, name: str) -> Path:
        return self.directory / name

    def sign(self, document: Path, *signers: str) -> Path:
        """``document`` signed by each of ``signers`` in turn, with `ceir custody sign`."""
        current = document
        for signer in signers:
            signed = self.path(f"{document.stem}.{signer}.note")
            ok("custody", "sign", current, "--key", self.keys[signer], "--out", signed)
            current = signed
        return current

    def draft(self, version: int, custodian: str, endpoint: str, log_key: Path) -> Path:
        """The policy text of ``version`` drafted with the CLI."""
        officers = (
            ["ayu", "budi", "citra"] if custodian == "telkomsel" else ["dewi", "eko", "fajar"]
        )
        out = self.path(f"policy-{version}.txt")
        pub = {name: public_path(path) for name, path in self.keys.items()}
        ok(
            "custody", "draft",
            "--version", str(version),
            "--origin", ORIGIN,
            "--custodian", custodian,
            "--complaints", "telkomsel",
            "--endpoint", endpoint,
            "--log-key", log_key,
            "--expires", str(int(time.time()) + 365 * 86_400),
            "--organisation", f"{custodian}:2",
            *(x for o in officers for x in ("--officer", f"{custodian}:{pub[o]}")),
            "--witness-quorum", "1",
            "--witness", f"{pub['kominfo']}:{pub['kominfo-cosigner']}",
            "--out", out,
        )  # fmt: skip
        return out


def _register(directory: Path, pki: PkiFiles, **config: object) -> RunningServer:
    directory.mkdir()
    running = create_server(
        ServerConfig(
            db=f"sqlite:///{directory / 'ceir.db'}",
            address="127.0.0.1:0",
            tls_key=pki.key(pki.server),
            tls_cert=pki.server,
            client_ca=pki.ca,
            access_log=False,
            log_origin=ORIGIN,
            **config,  # type: ignore[arg-type]
        )
    )
    for name, (kind, codes) in ORGS.items():
        add_organisation(running.register.db, name, kind, codes)
    return running


@contextmanager
def ceremony(directory: Path) -> Iterator[Ceremony]:
    """Everything started; stopped afterwards."""
    pki = init_pki(directory / "pki")
    keys: dict[str, Path] = {}
    for file, (name, phrase) in PEOPLE.items():
        keys[file] = directory / f"{file}.key"
        write_note_key(keys[file], name, private_key(phrase))
    keys["kominfo"] = directory / "kominfo.key"
    keys["kominfo-cosigner"] = directory / "kominfo.key.cosigner"
    write_note_key(keys["kominfo"], WITNESS, private_key("kominfo witness note key"))
    write_cosigner_key(
        keys["kominfo-cosigner"], WITNESS, private_key("kominfo witness cosigner key")
    )
    old_log = directory / "old-log.pem"
    save_private_key(private_key("public, never use it"), old_log)
    (directory / "old-log.pub").write_text(
        "ceir.example/changes+ccca3833+AVMzy7x5ruhgtYJsVvEMs4cMVAGUoiV12Hl/37osWgGv\n"
    )
    incoming = _register(directory / "b", pki, ephemeral_signing_key=True)
    half = Ceremony(directory, pki, incoming, incoming, None, keys)  # type: ignore[arg-type]
    policy_0 = half.sign(
        half.draft(0, "telkomsel", "localhost:1", directory / "old-log.pub"), "ayu", "budi"
    )
    outgoing = _register(directory / "a", pki, signing_key=old_log, custody_policy=policy_0)
    witness = create_witness_server(
        WitnessConfig(
            name=WITNESS,
            note_key=keys["kominfo"],
            cosigner_key=keys["kominfo-cosigner"],
            policy=policy_0,
            state=directory / "witness.json",
            insecure=True,
        )
    )
    try:
        yield Ceremony(directory, pki, outgoing, incoming, witness, keys)
    finally:
        witness.stop(grace=1)
        outgoing.stop(grace=1)
        incoming.stop(grace=1)

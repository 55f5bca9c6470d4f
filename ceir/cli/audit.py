"""``ceir audit``: the custodian's signing key and offline checks of the change log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ceir.audit import (
    Signer,
    Verifier,
    generate_signing_key,
    load_private_key,
    save_private_key,
    save_public_key,
    verifier_from_file,
)
from ceir.audit.note import valid_key_name
from ceir.service.log_audit import AuditReport, audit_database, audit_export, export_log
from ceir.service.merkle_log import DEFAULT_ORIGIN
from ceir.storage import log_repository as log_repo
from ceir.storage.database import Database

from ._output import err, fail, out, reporting_errors

audit_app = typer.Typer(
    name="audit",
    help="The custodian's signing key, and offline checks of the signed change log.",
    no_args_is_help=True,
)

OriginOption = Annotated[
    str | None,
    typer.Option(
        "--origin",
        help="The log's origin (and key name); default: the one the latest checkpoint states.",
    ),
]


@audit_app.command("keygen")
def keygen_command(
    key_file: Annotated[Path, typer.Argument(help="New PEM file for the private key.")],
    public_key: Annotated[
        Path | None,
        typer.Option("--public-key", help="Also write the public key (PEM) here."),
    ] = None,
    origin: Annotated[
        str, typer.Option("--origin", help="The log's origin: the key's name.")
    ] = DEFAULT_ORIGIN,
) -> None:
    """Make the custodian's Ed25519 signing key (readable by its owner only).

    Prints the verifier key string that operators configure. Refuses to
    overwrite an existing file.
    """
    if not valid_key_name(origin):
        fail(f"--origin {origin!r} must be non-empty, without spaces, + or controls")
    with reporting_errors():
        key = generate_signing_key()
        save_private_key(key, key_file)
        if public_key is not None:
            save_public_key(key.public_key(), public_key)
        out().print(Signer(origin, key).verifier.vkey, soft_wrap=True)


@audit_app.command("vkey")
def vkey_command(
    key_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    origin: Annotated[
        str, typer.Option("--origin", help="The log's origin: the key's name.")
    ] = DEFAULT_ORIGIN,
) -> None:
    """Print the verifier key string of a signing key or public key file."""
    with reporting_errors():
        text = key_file.read_bytes()
        if b"PRIVATE KEY" in text:
            verifier = Signer(origin, load_private_key(key_file)).verifier
        else:
            verifier = verifier_from_file(origin, key_file)
        out().print(verifier.vkey, soft_wrap=True)


@audit_app.command("verify")
def verify_command(
    db: Annotated[
        str | None,
        typer.Option("--db", envvar="CEIR_DB", metavar="PATH_OR_URL", help="Audit this database."),
    ] = None,
    export: Annotated[
        Path | None,
        typer.Option("--export", exists=True, dir_okay=False, help="Audit this export file."),
    ] = None,
    public_key: Annotated[
        Path | None,
        typer.Option(
            "--public-key",
            exists=True,
            dir_okay=False,
            help="The custodian's public key (PEM) that must have signed the checkpoint.",
        ),
    ] = None,
    vkey: Annotated[
        str | None,
        typer.Option("--vkey", help="The custodian's verifier key string, instead of a file."),
    ] = None,
    origin: OriginOption = None,
) -> None:
    """Check a whole log offline and print the verified checkpoint.

    Recomputes every leaf from the changes, compares it with the recorded
    leaf hash, rebuilds the tree, checks every checkpoint's root and the
    latest one's signature, and (from a database) the list tables against
    the replayed log. Exit code 1 names the first bad leaf or row.
    """
    if (db is None) == (export is None):
        fail("give one of --db PATH_OR_URL or --export FILE")
    with reporting_errors():
        verifiers = _verifiers(public_key, vkey, origin, db, export)
        if db is not None:
            database = Database(db)
            try:
                report = audit_database(database, verifiers, origin)
            finally:
                database.dispose()
        else:
            assert export is not None
            report = audit_export(export, verifiers, origin)
    _print(report)


@audit_app.command("export")
def export_command(
    target: Annotated[Path, typer.Argument(help="The export file to write (JSON lines).")],
    db: Annotated[
        str | None,
        typer.Option("--db", envvar="CEIR_DB", metavar="PATH_OR_URL", help="The database."),
    ] = None,
) -> None:
    """Write the log (leaf bytes, recorded hashes, signed checkpoints) to a file."""
    if db is None:
        fail("no database: pass --db PATH_OR_URL or set CEIR_DB")
    with reporting_errors():
        database = Database(db)
        try:
            with target.open("x", encoding="utf-8") as file:
                leaves = export_log(database, file)
        finally:
            database.dispose()
    err().print(f"exported {leaves:,} leaves to {target}")


@audit_app.command("list-checkpoint")
def list_checkpoint_command(
    db: Annotated[
        str | None,
        typer.Option("--db", envvar="CEIR_DB", metavar="PATH_OR_URL", help="The database."),
    ] = None,
    signing_key: Annotated[
        Path | None,
        typer.Option(
            "--signing-key",
            exists=True,
            dir_okay=False,
            help="The custodian's signing key (PEM), as given to `ceir serve`; set "
            "CEIR_SIGNING_KEY_PASSWORD if it is encrypted.",
        ),
    ] = None,
    target: Annotated[
        Path | None,
        typer.Option(
            "--file",
            dir_okay=False,
            help="The list checkpoint file (default: beside a SQLite database, <file>.lists).",
        ),
    ] = None,
    origin: Annotated[
        str, typer.Option("--log-origin", help="The change log's origin line.")
    ] = DEFAULT_ORIGIN,
) -> None:
    """Prove the database as `ceir serve` does at start, then write its list checkpoint.

    The file holds every list at the log's current size with a statement
    signed by the key, so the next `ceir serve` replays only the changes
    after it (docs/trust.md). Replaces the old file atomically.
    """
    if db is None:
        fail("no database: pass --db PATH_OR_URL or set CEIR_DB")
    if signing_key is None:
        fail("--signing-key is required: the checkpoint is signed with the log's key")
    from ceir.api.server import ServerConfig, checkpoint_signer
    from ceir.service.list_checkpoint import default_path, write_from_database
    from ceir.storage.database import normalise_url

    path = target or default_path(normalise_url(db))
    if path is None:
        fail("this database has no default checkpoint file: pass --file PATH")
    with reporting_errors():
        signer = checkpoint_signer(ServerConfig(db=db, signing_key=signing_key, log_origin=origin))
        assert signer is not None
        database = Database(db)
        try:
            statement = write_from_database(database, path, signer)
        finally:
            database.dispose()
    out().print(f"wrote the list checkpoint of size {statement.size:,} to {path}", soft_wrap=True)


def _verifiers(
    public_key: Path | None,
    vkey: str | None,
    origin: str | None,
    db: str | None,
    export: Path | None,
) -> list[Verifier]:
    if public_key is not None and vkey is not None:
        fail("give --public-key or --vkey, not both")
    if vkey is not None:
        return [Verifier.from_vkey(vkey)]
    if public_key is None:
        return []
    return [verifier_from_file(origin or _log_origin(db, export), public_key)]


def _log_origin(db: str | None, export: Path | None) -> str:
    """The origin the log's latest checkpoint states (the key's name)."""
    if export is not None:
        with export.open(encoding="utf-8") as file:
            return str(json.loads(file.readline() or "{}").get("origin") or DEFAULT_ORIGIN)
    assert db is not None
    database = Database(db)
    try:
        with database.read() as connection:
            latest = log_repo.latest_checkpoint(connection)
    finally:
        database.dispose()
    return latest[1].split("\n", 1)[0] if latest else DEFAULT_ORIGIN


def _print(report: AuditReport) -> None:
    if not report.ok:
        for problem in report.problems:
            err().print(f"[bold red]error:[/] {problem}", soft_wrap=True)
        if report.bad_leaves > 1:
            err().print(f"{report.bad_leaves:,} leaves do not match their recorded hashes")
        raise typer.Exit(1)
    checkpoint = report.checkpoint
    covered = checkpoint.size if checkpoint is not None else 0
    console = out()
    console.print(
        f"verified {report.leaves:,} leaves and {report.checkpoints:,} checkpoints", soft_wrap=True
    )
    if report.leaves > covered:
        console.print(f"{report.leaves - covered:,} leaves after the latest checkpoint")
    if report.note:
        if not report.signature_checked:
            console.print(
                "[yellow]signature not checked: give --public-key or --vkey[/]", soft_wrap=True
            )
        console.print(report.note, end="", soft_wrap=True, markup=False)

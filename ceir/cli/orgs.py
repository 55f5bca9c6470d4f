"""``ceir org``: organisations and their tokens, straight on the database.

These are the custodian's administration commands: they open the register's
database themselves (no server needed, and one may be running on the same
database). A token is printed only when it is created; the database keeps
its SHA-256 hash alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ceir.domain.model import OrgKind
from ceir.service.orgs import (
    CACHE_SECONDS,
    add_organisation,
    list_organisations,
    revoke_organisation,
)
from ceir.storage.database import Database

from ._output import CliError, err, out, reporting_errors
from .serve import DbOption, database

org_app = typer.Typer(
    name="org",
    help="Create, list and revoke organisations (operates on the database directly).",
    no_args_is_help=True,
)


@contextmanager
def _opened(db: str | None, *, create: bool) -> Iterator[Database]:
    """The database, migrated to the newest schema; closed afterwards.

    Without ``create``, a SQLite file that does not exist is an error rather
    than a new empty register (a typo in --db should not go unnoticed).
    """
    url = database(db)
    if not create and "://" not in url and not Path(url).expanduser().exists():
        raise CliError(f"no database at {url}; `ceir org add` or `ceir serve` creates one")
    opened = Database(url)
    try:
        opened.migrate()
        yield opened
    finally:
        opened.dispose()


@org_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Unique name: letters, digits, '-' or '_'.")],
    kind: Annotated[OrgKind, typer.Option(case_sensitive=False, help="Kind of organisation.")],
    mcc_mnc: Annotated[
        list[str] | None,
        typer.Option(
            "--mcc-mnc",
            metavar="MCC-MNC",
            help="An operator's network code, e.g. 510-10; repeat the option "
            "(or separate with commas) for several. Operators only.",
        ),
    ] = None,
    db: DbOption = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the token (for scripts).")
    ] = False,
) -> None:
    """Create an organisation and print its token, this once only."""
    codes = [code.strip() for value in mcc_mnc or [] for code in value.split(",") if code.strip()]
    with reporting_errors(), _opened(db, create=True) as opened:
        token = add_organisation(opened, name, kind.value, codes)
    if quiet:
        print(token)
        return
    networks = f", {', '.join(codes)}" if codes else ""
    err().print(f"Created organisation {name.strip()} ({kind.value}{networks}).")
    err().print("Its token follows; it is shown only this once, so store it now:")
    print(token)


@org_app.command("list")
def list_(db: DbOption = None) -> None:
    """List organisations: name, kind, MCC-MNCs, active or revoked."""
    with reporting_errors(), _opened(db, create=False) as opened:
        rows = list_organisations(opened)
    table = Table("name", "kind", "MCC-MNCs", "status")
    for name, kind, codes, revoked in rows:
        table.add_row(name, kind, codes.replace(",", ", "), "revoked" if revoked else "active")
    out().print(table)


@org_app.command("revoke")
def revoke(
    name: Annotated[str, typer.Argument(help="The organisation to revoke.")],
    db: DbOption = None,
) -> None:
    """Revoke an organisation: its token stops working."""
    with reporting_errors(), _opened(db, create=False) as opened:
        revoke_organisation(opened, name)
    out().print(
        f"Revoked {name}. Running servers refuse its token within {CACHE_SECONDS:g} seconds."
    )

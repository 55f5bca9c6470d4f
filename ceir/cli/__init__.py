"""The ``ceir`` command line: run the server, manage organisations, and call
a running CEIR (import, check, policy) as any API client would.

Exit codes: 0 success; 1 an error (one red line on stderr says what); 2 the
command line itself is wrong; 3 an import ran but rejected some rows.
"""

from __future__ import annotations

import typer

from .accounts import accounts_app
from .audit import audit_app
from .check import check_command
from .complaints import complaints_app
from .custody import custody_app
from .importer import import_command
from .orgs import org_app
from .pki import pki_app
from .policy import policy_app
from .ranges import ranges_app
from .serve import serve_command

__all__ = ["app"]

app = typer.Typer(
    name="ceir",
    help="A simulated CEIR (Centralized Equipment Identity Register): run it, "
    "administer it, and call it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("serve")(serve_command)
app.add_typer(org_app)
app.command("import")(import_command)
app.command("check")(check_command)
app.add_typer(policy_app)
app.add_typer(audit_app)
app.add_typer(pki_app)
app.add_typer(custody_app)
app.add_typer(ranges_app)
app.add_typer(complaints_app)
app.add_typer(accounts_app)

"""``ceir serve``: run the register's gRPC server until SIGINT or SIGTERM."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from ceir.api.observability import configure_logging
from ceir.api.server import ServerConfig, check_transport, serve
from ceir.audit.errors import KeyFormatError
from ceir.audit.note import Verifier, valid_key_name
from ceir.domain.complaints import DEFAULT_SERVICE_LEVELS, Category, ServiceLevels
from ceir.domain.oversight import DEFAULT_FACTOR, DEFAULT_FLOOR
from ceir.service.complaints import DEFAULT_DESK
from ceir.service.custody import CustodyConfigError
from ceir.service.list_audit import ListsNotFromLog
from ceir.service.list_checkpoint import EVERY_CHANGES, EVERY_SECONDS, default_path
from ceir.service.list_repair import ListsNotRepairable
from ceir.service.merkle_log import DEFAULT_ORIGIN
from ceir.service.startup_proof import LogNotVerified
from ceir.storage.database import normalise_url

from ._output import err, fail, reporting_errors

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="CEIR_DB",
        metavar="PATH_OR_URL",
        show_default=False,
        help="The register's database: a file path (SQLite) or a SQLAlchemy URL "
        "such as postgresql+psycopg://user@host/db.",
    ),
]


class LogLevel(enum.StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


def database(db: str | None) -> str:
    """The --db value, or a clear error when neither it nor CEIR_DB is given."""
    if not db:
        fail("no database: pass --db PATH_OR_URL or set CEIR_DB")
    return db


def serve_command(
    db: DbOption = None,
    listen: Annotated[
        str, typer.Option("--listen", metavar="HOST:PORT", help="Address to listen on.")
    ] = "127.0.0.1:50051",
    tls_key: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="PEM private key: serve TLS."),
    ] = None,
    tls_cert: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="PEM certificate chain: serve TLS."),
    ] = None,
    client_ca: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="PEM CA certificate of the organisations' client certificates: mutual TLS, "
            "every connection to --listen must present a certificate it signed.",
        ),
    ] = None,
    token_listen: Annotated[
        str | None,
        typer.Option(
            "--token-listen",
            metavar="HOST:PORT",
            help="With --client-ca: a second TLS address, without client certificates, "
            "where bearer tokens authenticate (tools and scripts).",
        ),
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure", help="Serve plain text without TLS (tests and local experiments only)."
        ),
    ] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            help="Expose Prometheus metrics on http://127.0.0.1:PORT/metrics.",
        ),
    ] = None,
    log_level: Annotated[
        LogLevel, typer.Option(case_sensitive=False, help="Least severe level logged.")
    ] = LogLevel.INFO,
    access_log: Annotated[
        bool, typer.Option("--access-log/--no-access-log", help="Log one JSON line per call.")
    ] = True,
    signing_key: Annotated[
        Path | None,
        typer.Option(
            "--signing-key",
            exists=True,
            dir_okay=False,
            help="The custodian's Ed25519 private key (PEM, from `ceir audit keygen`) that "
            "signs the change log's checkpoints; set CEIR_SIGNING_KEY_PASSWORD if it is "
            "encrypted. Without it no checkpoints are published.",
        ),
    ] = None,
    ephemeral_signing_key: Annotated[
        bool,
        typer.Option(
            "--ephemeral-signing-key",
            help="Without --signing-key: sign checkpoints with a key made up at start-up "
            "and lost at exit (demos only; nobody can have been given it).",
        ),
    ] = False,
    log_origin: Annotated[
        str,
        typer.Option(
            "--log-origin", help="The change log's origin line, also the signing key's name."
        ),
    ] = DEFAULT_ORIGIN,
    trusted_log_key: Annotated[
        list[str] | None,
        typer.Option(
            "--trusted-log-key",
            metavar="VKEY_OR_FILE",
            show_default=False,
            help="An earlier custodian's log verifier key (a C2SP key line, or a file "
            "holding one), repeatable: the latest stored checkpoint may be signed by it "
            "instead of --signing-key (after a handover), and a standby (--standby-of) "
            "verifies the custodian's checkpoints under it.",
        ),
    ] = None,
    standby_of: Annotated[
        str | None,
        typer.Option(
            "--standby-of",
            metavar="HOST:PORT",
            help="Run as a standby register: follow the custodian serving there (its "
            "change feed, every checkpoint verified under --trusted-log-key) into this "
            "database, signing nothing.",
        ),
    ] = None,
    client_cert: Annotated[
        Path | None,
        typer.Option(
            "--client-cert",
            exists=True,
            dir_okay=False,
            help="With --standby-of: the client certificate (PEM) of this register's "
            "organisation, a regulator's, presented to the custodian.",
        ),
    ] = None,
    client_key: Annotated[
        Path | None,
        typer.Option("--client-key", exists=True, dir_okay=False, help="The key of --client-cert."),
    ] = None,
    standby_ca: Annotated[
        Path | None,
        typer.Option(
            "--standby-ca",
            exists=True,
            dir_okay=False,
            help="With --standby-of: the CA certificate (PEM) that signed the custodian's "
            "server certificate (default: --client-ca).",
        ),
    ] = None,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="If the list tables differ from the replay of the verified change log, "
            "rewrite the differing rows from the log in one transaction, print each row "
            "changed and the change that explains it, then serve. A change log that fails "
            "its own verification is refused all the same.",
        ),
    ] = False,
    capacity: Annotated[
        int | None,
        typer.Option(
            "--capacity",
            min=0,
            metavar="IMEIS",
            help="IMEIs the whitelist may hold (default: unlimited). A registration or "
            "import chunk that would exceed it is refused whole (RESOURCE_EXHAUSTED, "
            "reason REGISTER_FULL, a QuotaFailure); from 90 % on the register warns "
            "(a log line, the ceir_whitelist_near_capacity metric).",
        ),
    ] = None,
    range_guard: Annotated[
        int | None,
        typer.Option(
            "--range-guard",
            min=2,
            metavar="K",
            help="Refuse an import chunk holding more than K consecutive serial numbers "
            "of one TAC unless the chunk sets confirm_ranges (FAILED_PRECONDITION, "
            "reason DENSE_RANGE). Default: off. 1000 is a reasonable K.",
        ),
    ] = None,
    account_alert_factor: Annotated[
        float,
        typer.Option(
            "--account-alert-factor",
            min=1.0,
            metavar="FACTOR",
            help="Raise an account alert when an organisation registers more IMEIs in a "
            "clock hour than FACTOR x its baseline (the mean hourly count of the 7 days "
            "before, at least --account-alert-floor): an entry in ListAccountAlerts, a "
            "WARNING log line, the ceir_account_alerts_total metric (docs/regulators.md).",
        ),
    ] = DEFAULT_FACTOR,
    account_alert_floor: Annotated[
        float,
        typer.Option(
            "--account-alert-floor",
            min=0.0,
            metavar="PER_HOUR",
            help="The least baseline of the account alert, in registrations an hour: a "
            "new or quiet account alerts only above FACTOR x this.",
        ),
    ] = DEFAULT_FLOOR,
    list_checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--list-checkpoint",
            dir_okay=False,
            show_default=False,
            help="The list checkpoint file (default: beside a SQLite database, <file>.lists; "
            "none for PostgreSQL unless given). With --signing-key the server writes the "
            "lists there at a signed tree size, and a start that finds it verified replays "
            "only the changes after it (docs/trust.md).",
        ),
    ] = None,
    list_checkpoint_every: Annotated[
        int,
        typer.Option(
            "--list-checkpoint-every",
            min=0,
            metavar="CHANGES",
            help="Write the list checkpoint every this many changes (and every hour once "
            "the lists moved, and at a clean shutdown); 0: only at shutdown.",
        ),
    ] = EVERY_CHANGES,
    full_proof: Annotated[
        bool,
        typer.Option(
            "--full-proof",
            help="Run the full start-up proof (every change hashed again, every list row "
            "compared) even when a verified list checkpoint is there.",
        ),
    ] = False,
    follow_interval: Annotated[
        float,
        typer.Option(
            "--follow-interval",
            min=0.01,
            max=60.0,
            metavar="SECONDS",
            help="How often to look for changes other servers sharing the database wrote. "
            "On PostgreSQL each of their commits wakes this server at once (LISTEN/NOTIFY); "
            "this is the fallback should a notification not come.",
        ),
    ] = 0.5,
    custody_policy: Annotated[
        Path | None,
        typer.Option(
            "--custody-policy",
            exists=True,
            dir_okay=False,
            help="The signed note of custody policy 0 (docs/custody.md), the trust root of "
            "the custody handover. The first start stores it: a register whose --signing-key "
            "is its log key is the custodian; one started with --standby-of follows the "
            "custodian as the incoming register. Later starts must be given the same file.",
        ),
    ] = None,
    complaints_desk: Annotated[
        str,
        typer.Option(
            "--complaints-desk",
            metavar="ORG",
            help="Without a custody policy: the organisation named as the complaints desk "
            "(an operator: each operator's desk owns what it files, ORG is the register's own "
            "desk for IMEIs no operator has seen; any other kind: ORG owns every complaint). "
            "With a custody policy its complaints line decides (docs/desk-agents.md).",
        ),
    ] = DEFAULT_DESK,
    complaint_hours: Annotated[
        list[str] | None,
        typer.Option(
            "--complaint-hours",
            metavar="CATEGORY=HOURS",
            help="A category's deadline in hours, e.g. stolen_or_lost=24 (repeatable; "
            "defaults in docs/desk-agents.md).",
        ),
    ] = None,
    customs_hours: Annotated[
        int,
        typer.Option(
            "--customs-hours",
            min=1,
            metavar="HOURS",
            help="Hours after a customs registration within which a complaint about that "
            "device is due (the later of this and the category's deadline holds).",
        ),
    ] = DEFAULT_SERVICE_LEVELS.customs_hours,
) -> None:
    """Run the CEIR gRPC server until SIGINT or SIGTERM.

    Migrates the database to the newest schema first, then, before it answers
    anything, verifies the stored change log (every change's leaf hash
    recomputed, the tree nodes, the latest checkpoint's root and, with
    --signing-key, its signature) and proves that the list tables equal its
    replay. On a mismatch it exits with code 1 naming the first differing
    change or row and the change that should explain it (--repair rebuilds
    differing list rows instead). With a verified list checkpoint
    (--list-checkpoint) only the changes after it are hashed and replayed.
    Logs are JSON lines on stderr. On a signal,
    health turns NOT_SERVING, in-flight calls finish and the command exits
    with code 0.
    """
    url = database(db)
    configure_logging(log_level.value)
    config = ServerConfig(
        db=url,
        address=listen,
        tls_key=tls_key,
        tls_cert=tls_cert,
        client_ca=client_ca,
        token_address=token_listen,
        insecure=insecure,
        metrics_port=metrics_port,
        access_log=access_log,
        follow_interval=follow_interval,
        signing_key=signing_key,
        ephemeral_signing_key=ephemeral_signing_key,
        log_origin=log_origin,
        repair_lists=repair,
        repair_report=_print_repair,
        custody_policy=custody_policy,
        trusted_log_keys=tuple(_log_key(value) for value in trusted_log_key or ()),
        standby_of=standby_of,
        client_cert=client_cert,
        client_key=client_key,
        standby_ca=standby_ca,
        capacity=capacity,
        range_guard=range_guard,
        account_alert_factor=account_alert_factor,
        account_alert_floor=account_alert_floor,
        list_checkpoint=list_checkpoint or default_path(normalise_url(url)),
        list_checkpoint_every=list_checkpoint_every,
        list_checkpoint_seconds=0 if list_checkpoint_every == 0 else EVERY_SECONDS,
        start_from_list_checkpoint=not full_proof,
        complaints_desk=complaints_desk,
        complaint_levels=_levels(complaint_hours or [], customs_hours),
    )
    if signing_key is not None and ephemeral_signing_key:
        fail("--ephemeral-signing-key contradicts --signing-key")
    if not valid_key_name(log_origin):
        fail(f"--log-origin {log_origin!r} must be non-empty, without spaces, + or controls")
    try:
        check_transport(config)
    except ValueError as error:
        fail(str(error))
    with reporting_errors():
        try:
            serve(config)
        except (ListsNotFromLog, ListsNotRepairable, LogNotVerified, CustodyConfigError) as error:
            fail(str(error))


def _levels(hours: list[str], customs_hours: int) -> ServiceLevels:
    """The service levels with the --complaint-hours given."""
    changes: dict[Category, int] = {}
    for item in hours:
        name, _, value = item.partition("=")
        try:
            category = Category[name.strip().upper()]
            changes[category] = int(value)
        except (KeyError, ValueError):
            names = ", ".join(c.name.lower() for c in Category)
            fail(f"--complaint-hours {item!r}: CATEGORY=HOURS with a category of {names}")
    try:
        return DEFAULT_SERVICE_LEVELS.with_hours(changes, customs_hours)
    except ValueError as error:
        fail(f"--complaint-hours: {error}")


def _log_key(value: str) -> Verifier:
    """A verifier key given as its line or as a file holding it."""
    text = value
    if "+" not in value:
        try:
            text = Path(value).read_text(encoding="utf-8").strip()
        except OSError as error:
            fail(f"--trusted-log-key {value!r}: not a key line, nor a file to read ({error})")
    try:
        return Verifier.from_vkey(text)
    except KeyFormatError as error:
        fail(f"--trusted-log-key: {error}")


def _print_repair(line: str) -> None:
    """One line on stderr per list row the repair changed."""
    err().print(Text(f"repaired: {line}", style="yellow"), soft_wrap=True)

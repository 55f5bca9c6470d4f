"""``ceir accounts``: the regulators' tools for an abused account.

``alerts`` lists the account alerts (``ListAccountAlerts``);
``registrations`` everything an organisation registered in a window
(``ListRegistrationsBy``, every page); ``revoke`` takes that set off the
whitelist through the audited write path (``RevokeRegistrationsBy``, a page
a call, all under one request id: a run interrupted and started again with
the same arguments replays the pages done and does the rest), writing every
IMEI's outcome to a CSV report, a progress line per page and a summary.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from google.protobuf.timestamp_pb2 import Timestamp
from rich.table import Table

from ceir.v1 import oversight_pb2, oversight_pb2_grpc, types_pb2

from ._output import err, fail, out, reporting_errors
from ._remote import (
    DEFAULT_ADDRESS,
    AddressOption,
    CaCertOption,
    ClientCertOption,
    ClientKeyOption,
    Remote,
    ServerNameOption,
    TimeoutOption,
    TokenOption,
)
from .check import JsonOption, enum_name

accounts_app = typer.Typer(
    name="accounts",
    help="Account alerts, an organisation's registrations in a time window, and their "
    "bulk revocation (regulators).",
    no_args_is_help=True,
)

OrganisationArgument = Annotated[
    str, typer.Argument(metavar="ORG", help="The organisation's name (`ceir org list`).")
]
SinceOption = Annotated[
    str,
    typer.Option(
        "--since",
        metavar="TIME",
        help="The window's start (inclusive), ISO 8601: 2022-10-10 or "
        "2022-10-10T08:00+07:00 (no zone: UTC).",
    ),
]
UntilOption = Annotated[
    str | None,
    typer.Option(
        "--until",
        metavar="TIME",
        show_default=False,
        help="The window's end (exclusive), ISO 8601 (default: none, up to now).",
    ),
]
PageSizeOption = Annotated[int, typer.Option("--page-size", min=1, max=10_000, help="Rows a call.")]


def parse_time(value: str, option: str) -> Timestamp:
    """An ISO 8601 date or time (UTC unless it names a zone) as a Timestamp."""
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        fail(f"{option} {value!r}: not an ISO 8601 date or time (2022-10-10T08:00+07:00)")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _iso(stamp: Timestamp) -> str:
    return stamp.ToDatetime(datetime.UTC).isoformat().replace("+00:00", "Z")


def _remote(
    ceir: str,
    token: str | None,
    ca_cert: Path | None,
    timeout: float,
    client_cert: Path | None,
    client_key: Path | None,
    server_name: str | None,
) -> Remote:
    return Remote(ceir, token, ca_cert, timeout, client_cert, client_key, server_name)


def _window(
    organisation: str, since: str, until: str | None
) -> tuple[str, Timestamp, Timestamp | None]:
    start = parse_time(since, "--since")
    end = parse_time(until, "--until") if until is not None else None
    return organisation, start, end


# --- alerts ------------------------------------------------------------------------------


@accounts_app.command("alerts")
def alerts_command(
    json_output: JsonOption = False,
    ceir: AddressOption = DEFAULT_ADDRESS,
    token: TokenOption = None,
    ca_cert: CaCertOption = None,
    client_cert: ClientCertOption = None,
    client_key: ClientKeyOption = None,
    server_name: ServerNameOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """List the account alerts, newest first (Kemenperin, Kominfo)."""
    remote = _remote(ceir, token, ca_cert, timeout, client_cert, client_key, server_name)
    alerts: list[oversight_pb2.AccountAlert] = []
    with reporting_errors(ceir), remote.channel() as channel:
        stub = oversight_pb2_grpc.OversightServiceStub(channel)
        page_token = ""
        while True:
            page = stub.ListAccountAlerts(
                oversight_pb2.ListAccountAlertsRequest(page_size=1_000, page_token=page_token),
                metadata=remote.metadata,
                timeout=timeout,
            )
            alerts.extend(page.alerts)
            settings = page.settings
            page_token = page.next_page_token
            if not page_token:
                break
    if json_output:
        print(
            json.dumps(
                {
                    "alerts": [_alert_dict(a) for a in alerts],
                    "settings": {"factor": settings.factor, "floor": settings.floor},
                }
            )
        )
        return
    table = Table("organisation", "hour from", "registrations", "at alert", "baseline/h", "over")
    for a in alerts:
        table.add_row(
            a.organisation,
            _iso(a.window_start_time),
            f"{a.registrations:,}",
            f"{a.registrations_at_alert:,}",
            f"{a.baseline:,.1f}",
            f"{a.threshold:,.0f}",
        )
    out().print(table)
    out().print(
        f"{len(alerts):,} alerts; an hour alerts over {settings.factor:g} x max(the mean "
        f"hourly count of the {settings.history_hours} hours before, {settings.floor:g})"
    )


def _alert_dict(alert: oversight_pb2.AccountAlert) -> dict[str, Any]:
    return {
        "alert_id": alert.alert_id,
        "organisation": alert.organisation,
        "window_start": _iso(alert.window_start_time),
        "window_end": _iso(alert.window_end_time),
        "registrations": alert.registrations,
        "registrations_at_alert": alert.registrations_at_alert,
        "baseline": alert.baseline,
        "threshold": alert.threshold,
        "factor": alert.factor,
        "raised": _iso(alert.raise_time),
        "sequence": alert.sequence,
    }


# --- registrations -------------------------------------------------------------------------


def list_registrations(
    stub: oversight_pb2_grpc.OversightServiceStub,
    metadata: Any,
    organisation: str,
    start: Timestamp,
    end: Timestamp | None,
    page_size: int,
    timeout: float,
) -> Iterator[oversight_pb2.AccountRegistration]:
    """Every page of ``ListRegistrationsBy``."""
    page_token = ""
    while True:
        page = stub.ListRegistrationsBy(
            oversight_pb2.ListRegistrationsByRequest(
                organisation=organisation,
                start_time=start,
                end_time=end,
                page_size=page_size,
                page_token=page_token,
            ),
            metadata=metadata,
            timeout=timeout,
        )
        yield from page.registrations
        page_token = page.next_page_token
        if not page_token:
            return


TABLE_ROWS = 1_000  # rows printed as a table; --csv writes them all
REGISTRATION_COLUMNS = [
    "imei_key",
    "device_id",
    "source",
    "reference",
    "register_time",
    "sequence",
    "on_whitelist",
]


@accounts_app.command("registrations")
def registrations_command(
    organisation: OrganisationArgument,
    since: SinceOption,
    until: UntilOption = None,
    csv_file: Annotated[
        Path | None,
        typer.Option(
            "--csv",
            dir_okay=False,
            help="Write every row to this CSV file instead of printing a table.",
        ),
    ] = None,
    page_size: PageSizeOption = 10_000,
    ceir: AddressOption = DEFAULT_ADDRESS,
    token: TokenOption = None,
    ca_cert: CaCertOption = None,
    client_cert: ClientCertOption = None,
    client_key: ClientKeyOption = None,
    server_name: ServerNameOption = None,
    timeout: TimeoutOption = 60.0,
) -> None:
    """Everything ORG registered in the window, from the change log (Kemenperin, Kominfo)."""
    org, start, end = _window(organisation, since, until)
    remote = _remote(ceir, token, ca_cert, timeout, client_cert, client_key, server_name)
    handle: TextIO | None = csv_file.open("w", newline="", encoding="utf-8") if csv_file else None
    listed = on_whitelist = 0
    table = Table(*REGISTRATION_COLUMNS)
    try:
        writer = csv.writer(handle) if handle is not None else None
        if writer is not None:
            writer.writerow(REGISTRATION_COLUMNS)
        with reporting_errors(ceir), remote.channel() as channel:
            stub = oversight_pb2_grpc.OversightServiceStub(channel)
            for row in list_registrations(
                stub, remote.metadata, org, start, end, page_size, timeout
            ):
                listed += 1
                on_whitelist += row.on_whitelist
                values = [
                    row.imei_key,
                    row.device_id,
                    enum_name(types_pb2.RegistrationSource, row.source, "REGISTRATION_SOURCE_"),
                    row.reference,
                    _iso(row.register_time),
                    str(row.sequence),
                    "yes" if row.on_whitelist else "no",
                ]
                if writer is not None:
                    writer.writerow(values)
                elif listed <= TABLE_ROWS:
                    table.add_row(*values)
    finally:
        if handle is not None:
            handle.close()
    if csv_file is None:
        out().print(table)
        if listed > TABLE_ROWS:
            err().print(f"(the first {TABLE_ROWS:,} rows; --csv FILE writes them all)")
    err().print(
        f"{org} registered {listed:,} IMEIs in the window; {on_whitelist:,} still on the "
        "whitelist from that registration"
    )


# --- revoke ------------------------------------------------------------------------------

REPORT_COLUMNS = ["imei_key", "registration_sequence", "outcome", "revocation_sequence"]
OUTCOME_PREFIX = "REVOCATION_OUTCOME_"


def default_request_id(organisation: str, since: str, until: str | None, reason: str) -> str:
    """The request id of a revocation: the same arguments give the same id, so a
    run started again replays the pages done."""
    text = f"{organisation}\x00{since}\x00{until}\x00{reason}"
    return f"accounts-revoke-{hashlib.sha256(text.encode()).hexdigest()[:24]}"


@accounts_app.command("revoke")
def revoke_command(
    organisation: OrganisationArgument,
    since: SinceOption,
    reason: Annotated[
        str,
        typer.Option("--reason", help="Why, for the audit trail (every revocation's reason)."),
    ],
    report: Annotated[
        Path,
        typer.Option(
            "--report",
            dir_okay=False,
            help="CSV file of every IMEI of the set: imei_key, registration_sequence, "
            "outcome, revocation_sequence.",
        ),
    ],
    until: UntilOption = None,
    request_id: Annotated[
        str | None,
        typer.Option(
            "--request-id",
            show_default=False,
            help="The revocation's idempotency key (default: derived from ORG, the window "
            "and the reason, so the same command resumes an interrupted run).",
        ),
    ] = None,
    page_size: PageSizeOption = 1_000,
    json_output: JsonOption = False,
    ceir: AddressOption = DEFAULT_ADDRESS,
    token: TokenOption = None,
    ca_cert: CaCertOption = None,
    client_cert: ClientCertOption = None,
    client_key: ClientKeyOption = None,
    server_name: ServerNameOption = None,
    timeout: TimeoutOption = 120.0,
) -> None:
    """Revoke everything ORG registered in the window, page by page, through the
    audited write path (Kemenperin only). Every IMEI's outcome goes to --report."""
    org, start, end = _window(organisation, since, until)
    remote = _remote(ceir, token, ca_cert, timeout, client_cert, client_key, server_name)
    key = request_id or default_request_id(org, since, until, reason)
    counts: Counter[str] = Counter()
    pages = 0
    set_sequence = 0
    with report.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(REPORT_COLUMNS)
        with reporting_errors(ceir), remote.channel() as channel:
            stub = oversight_pb2_grpc.OversightServiceStub(channel)
            page_token = ""
            while True:
                page = stub.RevokeRegistrationsBy(
                    oversight_pb2.RevokeRegistrationsByRequest(
                        request_id=key,
                        organisation=org,
                        start_time=start,
                        end_time=end,
                        reason=reason,
                        page_size=page_size,
                        page_token=page_token,
                    ),
                    metadata=remote.metadata,
                    timeout=timeout,
                )
                pages += 1
                set_sequence = page.set_sequence
                for row in page.rows:
                    outcome = enum_name(
                        oversight_pb2.RevocationOutcome, row.outcome, OUTCOME_PREFIX
                    ).lower()
                    counts[outcome] += 1
                    writer.writerow(
                        [
                            row.imei_key,
                            row.registration_sequence,
                            outcome,
                            row.revocation_sequence,
                        ]
                    )
                handle.flush()
                err().print(
                    f"page {pages}: {len(page.rows):,} rows, {page.revoked:,} revoked "
                    f"({sum(counts.values()):,} rows, {counts['revoked']:,} revoked so far)"
                )
                page_token = page.next_page_token
                if not page_token:
                    break
    summary = {
        "organisation": org,
        "request_id": key,
        "set_sequence": set_sequence,
        "pages": pages,
        "rows": sum(counts.values()),
        **{name: counts[name] for name in _OUTCOMES},
    }
    if json_output:
        print(json.dumps(summary))
        return
    out().print(
        f"{org}: {summary['rows']:,} registrations in the window (the log up to "
        f"{set_sequence:,}): {counts['revoked']:,} revoked, "
        f"{counts['already_off_whitelist']:,} already off the whitelist, "
        f"{counts['reregistered_by_others']:,} registered again by others, "
        f"{counts['superseded']:,} registered again by {org}; report in {report}"
    )


_OUTCOMES = ("revoked", "already_off_whitelist", "reregistered_by_others", "superseded")

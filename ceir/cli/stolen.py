"""``ceir stolen``: stolen-phone cases and theft alerts; ``ceir lookup``: the public lookup.

Clients of the published API (``ceir.v1.StolenCaseService``,
``ceir.v1.PublicLookupService``), like any operator's tools.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterator
from datetime import UTC
from typing import Annotated, Any

import grpc
import typer
from google.protobuf.timestamp_pb2 import Timestamp
from rich.table import Table

from ceir.v1 import lookup_pb2, lookup_pb2_grpc, stolen_pb2, stolen_pb2_grpc

from ._output import out, reporting_errors
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
from ._writes import DEFAULT_RETRY_FOR, RetryForOption, new_request_id, send_write
from .check import JsonOption, enum_name

stolen_app = typer.Typer(
    name="stolen",
    help="Stolen-phone cases (file, show, list, update) and their theft alerts.",
    no_args_is_help=True,
)
RequestIdOption = Annotated[
    str | None,
    typer.Option(
        show_default=False,
        help="Idempotency key of the write; default: one made up for this command.",
    ),
]


class TargetState(enum.StrEnum):
    BLOCKED = "blocked"
    RECOVERED = "recovered"
    PENDING = "pending"  # refused by the server from BLOCKED: shown for completeness


def _time(stamp: Timestamp) -> str:
    return stamp.ToDatetime(tzinfo=UTC).isoformat()


def case_values(case: stolen_pb2.StolenCase) -> dict[str, Any]:
    """A case as plain values (the --json document)."""
    return {
        "case_id": case.case_id,
        "state": enum_name(stolen_pb2.StolenCaseState, case.state, "STOLEN_CASE_STATE_").lower(),
        "imei_keys": list(case.imei_keys),
        "imsi": case.imsi,
        "msisdn": case.msisdn,
        "police_report": case.police_report,
        "reporter": case.reporter,
        "filed_time": _time(case.filed_time),
        "update_time": _time(case.update_time),
        "history": [
            {
                "state": enum_name(
                    stolen_pb2.StolenCaseState, step.state, "STOLEN_CASE_STATE_"
                ).lower(),
                "actor": step.actor,
                "note": step.note,
                "sequence": step.sequence,
                "time": _time(step.time),
            }
            for step in case.history
        ],
    }


def _print_case(case: stolen_pb2.StolenCase, json_output: bool) -> None:
    values = case_values(case)
    if json_output:
        print(json.dumps(values))
        return
    table = Table.grid(padding=(0, 2))
    for name, value in values.items():
        if name == "history":
            continue
        shown = ", ".join(value) if isinstance(value, list) else str(value)
        table.add_row(name, shown or "-")
    out().print(table)
    steps = Table("state", "actor", "sequence", "time", "note")
    for step in values["history"]:
        steps.add_row(
            step["state"], step["actor"], str(step["sequence"]), step["time"], step["note"]
        )
    out().print(steps)


def _remote(
    ceir: str,
    token: str | None,
    ca_cert: Any,
    timeout: float,
    client_cert: Any,
    client_key: Any,
    server_name: str | None,
) -> Remote:
    return Remote(ceir, token, ca_cert, timeout, client_cert, client_key, server_name)


@stolen_app.command("file")
def file_case(
    imeis: Annotated[list[str], typer.Argument(help="The phone's IMEIs (one per SIM slot).")],
    imsi: Annotated[str, typer.Option(help="The subscriber's IMSI.")],
    police_report: Annotated[str, typer.Option(help="The police report number.")],
    msisdn: Annotated[str, typer.Option(help="The subscriber's MSISDN (optional).")] = "",
    request_id: RequestIdOption = None,
    retry_for: RetryForOption = DEFAULT_RETRY_FOR,
    json_output: JsonOption = False,
    ceir: AddressOption = DEFAULT_ADDRESS,
    token: TokenOption = None,
    ca_cert: CaCertOption = None,
    client_cert: ClientCertOption = None,
    client_key: ClientKeyOption = None,
    server_name: ServerNameOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """File a stolen-phone case (PENDING); prints it with its case id."""
    remote = _remote(ceir, token, ca_cert, timeout, client_cert, client_key, server_name)
    request = stolen_pb2.FileStolenCaseRequest(
        request_id=request_id or new_request_id(),
        imeis=imeis,
        imsi=imsi,
        msisdn=msisdn,
        police_report=police_report,
    )
    with reporting_errors(ceir):

        def send(channel: grpc.Channel, to: Remote) -> stolen_pb2.FileStolenCaseResponse:
            stub = stolen_pb2_grpc.StolenCaseServiceStub(channel)
            return stub.FileStolenCase(request, metadata=to.metadata, timeout=timeout)

        response = send_write(remote, send, retry_for)
    _print_case(response.stolen_case, json_output)


@stolen_app.command("update")
def update_case(
    case_id: Annotated[str, typer.Argument(help="The case's id.")],
    state: Annotated[
        TargetState,
        typer.Argument(
            case_sensitive=False,
            help="blocked (blacklist the IMEIs) or recovered (close; unblock if blocked).",
        ),
    ],
    note: Annotated[str, typer.Option(help="Why (kept in the case's history).")] = "",
    request_id: RequestIdOption = None,
    retry_for: RetryForOption = DEFAULT_RETRY_FOR,
    json_output: JsonOption = False,
    ceir: AddressOption = DEFAULT_ADDRESS,
    token: TokenOption = None,
    ca_cert: CaCertOption = None,
    client_cert: ClientCertOption = None,
    client_key: ClientKeyOption = None,
    server_name: ServerNameOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Move a case: PENDING -> BLOCKED -> RECOVERED, or PENDING -> RECOVERED."""
    remote = _remote(ceir, token, ca_cert, timeout, client_cert, client_key, server_name)
    request = stolen_pb2.UpdateStolenCaseRequest(
        request_id=request_id or new_request_id(),
        case_id=case_id,
        state=stolen_pb2.StolenCaseState.Value(f"STOLEN_CASE_STATE_{state.name}"),
        note=note,
    )
    with reporting_errors(ceir):

        def send(channel: grpc.Channel, to: Remote) -> stolen_pb2.UpdateStolenCaseResponse:
            stub = stolen_pb2_grpc.StolenCaseServiceStub(channel)
            return stub.UpdateStolenCase(request, metadata=to.metadata, timeout=timeout)

        response = send_write(remote, send, retry_for)
    _print_case(response.stolen_case, json_output)


@stolen_app.command("show")
def show_case(
    case_id: Annotated[str, typer.Argument(help="The case's id.")],
    json_output: JsonOption = False,
    ceir: AddressOption = DEFAULT_ADDRESS,
    token: TokenOption = None,
    ca_cert: CaCertOption = None,
    client_cert: ClientCertOption = None,
    client_key: ClientKeyOption = None,
    server_name: ServerNameOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Show one case with its history."""
    remote = _remote(ceir, token, ca_cert, timeout, client_cert, client_key, server_name)
    with reporting_errors(ceir), remote.channel() as channel:
        stub = stolen_pb2_grpc.StolenCaseServiceStub(channel)
        response = stub.GetStolenCase(
            stolen_pb2.GetStolenCaseRequest(case_id=case_id),
            metadata=remote.metadata,
            timeout=timeout,
        )
    _print_case(response.stolen_case, json_output)


def _pages(fetch: Callable[[str], tuple[list[Any], str]]) -> Iterator[Any]:
    token = ""
    while True:
        items, token = fetch(token)
        yield from items
        if not token:
            return


@stolen_app.command("list")
def list_cases(
    json_output: JsonOption = False,
    ceir: AddressOption = DEFAULT_ADDRESS,
    token: TokenOption = None,
    ca_cert: CaCertOption = None,
    client_cert: ClientCertOption = None,
    client_key: ClientKeyOption = None,
    server_name: ServerNameOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """List your cases (regulators: every case), oldest first."""
    remote = _remote(ceir, token, ca_cert, timeout, client_cert, client_key, server_name)
    with reporting_errors(ceir), remote.channel() as channel:
        stub = stolen_pb2_grpc.StolenCaseServiceStub(channel)

        def fetch(page: str) -> tuple[list[Any], str]:
            answer = stub.ListStolenCases(
                stolen_pb2.ListStolenCasesRequest(page_token=page),
                metadata=remote.metadata,
                timeout=timeout,
            )
            return list(answer.stolen_cases), answer.next_page_token

        cases = [case_values(case) for case in _pages(fetch)]
    if json_output:
        print(json.dumps(cases))
        return
    table = Table("case", "state", "reporter", "IMEIs", "police report", "updated")
    for case in cases:
        table.add_row(
            case["case_id"],
            case["state"],
            case["reporter"],
            ", ".join(case["imei_keys"]),
            case["police_report"],
            case["update_time"],
        )
    out().print(table)


@stolen_app.command("alerts")
def list_alerts(
    json_output: JsonOption = False,
    ceir: AddressOption = DEFAULT_ADDRESS,
    token: TokenOption = None,
    ca_cert: CaCertOption = None,
    client_cert: ClientCertOption = None,
    client_key: ClientKeyOption = None,
    server_name: ServerNameOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """List the theft alerts of your cases, oldest first."""
    remote = _remote(ceir, token, ca_cert, timeout, client_cert, client_key, server_name)
    with reporting_errors(ceir), remote.channel() as channel:
        stub = stolen_pb2_grpc.StolenCaseServiceStub(channel)

        def fetch(page: str) -> tuple[list[Any], str]:
            answer = stub.ListTheftAlerts(
                stolen_pb2.ListTheftAlertsRequest(page_token=page),
                metadata=remote.metadata,
                timeout=timeout,
            )
            return list(answer.alerts), answer.next_page_token

        alerts = [
            {
                "alert_id": a.alert_id,
                "case_id": a.case_id,
                "imei_key": a.imei_key,
                "imsi": a.imsi,
                "msisdn": a.msisdn,
                "seen_by": a.seen_by,
                "seen_time": _time(a.seen_time),
            }
            for a in _pages(fetch)
        ]
    if json_output:
        print(json.dumps(alerts))
        return
    table = Table("alert", "case", "IMEI key", "IMSI", "MSISDN", "seen by", "time")
    for alert in alerts:
        table.add_row(*(str(value) or "-" for value in alert.values()))
    out().print(table)


def lookup_command(
    imei: Annotated[str, typer.Argument(help="The IMEI to look up (14 to 16 digits).")],
    address: Annotated[
        str,
        typer.Option(
            "--address",
            envvar="CEIR_LOOKUP_ADDRESS",
            metavar="HOST:PORT",
            help="The register's public lookup listener (ceir serve --lookup-listen).",
        ),
    ] = "127.0.0.1:50070",
    ca_cert: CaCertOption = None,
    json_output: JsonOption = False,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Look an IMEI up as the public does: registered or not, brand and model.

    No credentials: --ca-cert only for a lookup listener that serves TLS.
    """
    with reporting_errors(address):
        if ca_cert is not None:
            credentials = grpc.ssl_channel_credentials(ca_cert.read_bytes())
            channel = grpc.secure_channel(address, credentials)
        else:
            channel = grpc.insecure_channel(address)
        with channel:
            stub = lookup_pb2_grpc.PublicLookupServiceStub(channel)
            answer = stub.LookupImei(lookup_pb2.LookupImeiRequest(imei=imei), timeout=timeout)
    values = {
        "imei_key": answer.imei_key,
        "registered": answer.registered,
        "brand": answer.brand,
        "model": answer.model,
    }
    if json_output:
        print(json.dumps(values))
        return
    table = Table.grid(padding=(0, 2))
    for name, value in values.items():
        table.add_row(name, str(value) if value != "" else "-")
    out().print(table)

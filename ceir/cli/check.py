"""``ceir check``: ask the CEIR about one device, as an operator's EIR does."""

from __future__ import annotations

import json
from datetime import UTC
from typing import Annotated, Any

import typer
from rich.table import Table

from ceir.v1 import equipment_check_pb2, equipment_check_pb2_grpc, types_pb2

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

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]


def enum_name(enum: Any, number: int, prefix: str) -> str:
    """``EQUIPMENT_STATUS_WHITELISTED`` -> ``WHITELISTED``; unknown numbers as digits."""
    try:
        return str(enum.Name(number)).removeprefix(prefix)
    except ValueError:
        return str(number)


def decision(response: equipment_check_pb2.CheckEquipmentResponse) -> dict[str, Any]:
    """A check's answer as plain values (the --json document)."""
    block_date = None
    if response.HasField("block_date"):
        block_date = response.block_date.ToDatetime(tzinfo=UTC).isoformat()
    return {
        "status": enum_name(types_pb2.EquipmentStatus, response.status, "EQUIPMENT_STATUS_"),
        "reasons": [enum_name(types_pb2.Reason, r, "REASON_") for r in response.reasons],
        "imei_key": response.imei_key,
        "sequence": response.sequence,
        "block_date": block_date,
    }


def check_command(
    imei: Annotated[str, typer.Argument(help="The IMEI: 14, 15 or 16 (IMEISV) digits.")],
    imsi: Annotated[
        str, typer.Option(help="IMSI of the SIM (enables roaming, pairing, notification).")
    ] = "",
    msisdn: Annotated[str, typer.Option(help="Phone number of the subscriber.")] = "",
    json_output: JsonOption = False,
    ceir: AddressOption = DEFAULT_ADDRESS,
    token: TokenOption = None,
    ca_cert: CaCertOption = None,
    client_cert: ClientCertOption = None,
    client_key: ClientKeyOption = None,
    server_name: ServerNameOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Check one device: status, reasons, IMEI key, register sequence, block date.

    This is a real check: in the notify phase, an unregistered IMEI checked
    with an IMSI goes on the notification list.
    """
    remote = Remote(ceir, token, ca_cert, timeout, client_cert, client_key, server_name)
    request = equipment_check_pb2.CheckEquipmentRequest(imei=imei, imsi=imsi, msisdn=msisdn)
    with reporting_errors(ceir), remote.channel() as channel:
        stub = equipment_check_pb2_grpc.EquipmentCheckServiceStub(channel)
        response = stub.CheckEquipment(request, metadata=remote.metadata, timeout=timeout)
    answer = decision(response)
    if json_output:
        print(json.dumps(answer))
        return
    table = Table.grid(padding=(0, 2))
    table.add_row("status", answer["status"])
    table.add_row("reasons", ", ".join(answer["reasons"]))
    table.add_row("imei key", answer["imei_key"] or "-")
    table.add_row("sequence", str(answer["sequence"]))
    table.add_row("block date", answer["block_date"] or "-")
    out().print(table)

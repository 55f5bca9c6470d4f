"""``ceir ranges``: the regulator's cure for a register filled by range uploads.

``find`` lists the runs of consecutive, never seen IMEIs of one uploader
(``FindRangeUploads``); ``revoke`` takes them off the whitelist through the
audited write path (``RevokeRegistration``, 1,000 IMEIs a call, each call
under a request id derived from its IMEIs and the reason, so a run that is
interrupted and started again replays what was done and does the rest),
reporting every IMEI: ``revoked`` or ``not_registered`` (gone already).
A refusal of another kind (a permission) stops the command.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer
from rich.table import Table

from ceir.v1 import registry_pb2, registry_pb2_grpc
from ceir.v1.registry_pb2_grpc import RegistryServiceStub

from ._output import err, out, reporting_errors
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
from .check import JsonOption

ranges_app = typer.Typer(
    name="ranges",
    help="Find IMEIs uploaded as whole ranges and never seen on a network, and revoke them "
    "(regulators).",
    no_args_is_help=True,
)
REVOKE_BATCH = 1_000  # RevokeRegistration's most IMEIs per call
MinRunOption = Annotated[
    int,
    typer.Option(
        "--min-run",
        min=0,
        help="Shortest run of consecutive serials listed (0: the server's range guard, or 1,000).",
    ),
]


@dataclass(frozen=True)
class Found:
    ranges: list[registry_pb2.RangeUpload]
    observed_since: str
    checks_observed: int
    capacity: registry_pb2.RegisterCapacity


def find_all(
    stub: RegistryServiceStub, metadata: Any, min_run: int, timeout: float = 60.0
) -> Found:
    """Every page of ``FindRangeUploads``."""
    ranges: list[registry_pb2.RangeUpload] = []
    token = ""
    while True:
        page = stub.FindRangeUploads(
            registry_pb2.FindRangeUploadsRequest(
                min_run=min_run, page_size=1_000, page_token=token
            ),
            metadata=metadata,
            timeout=timeout,
        )
        ranges.extend(page.ranges)
        token = page.next_page_token
        if not token:
            since = page.observed_since.ToDatetime().isoformat() + "Z"
            return Found(ranges, since, page.checks_observed, page.capacity)


def _keys(found: registry_pb2.RangeUpload) -> range:
    return range(int(found.first_imei_key), int(found.last_imei_key) + 1)


def revoke_keys(
    stub: RegistryServiceStub, metadata: Any, keys: list[int], reason: str, timeout: float = 60.0
) -> Iterator[tuple[int, str, int]]:
    """Revoke ``keys`` (at most REVOKE_BATCH); (key, outcome, sequence) for each.

    The request id names the keys and the reason: sent again, the same call
    replays its answer. A batch refused because some of its keys are gone
    already is revoked key by key, so each key gets its own outcome.
    """
    digest = hashlib.sha256(reason.encode()).hexdigest()[:12]
    request = registry_pb2.RevokeRegistrationRequest(
        request_id=f"ranges-{digest}-{keys[0]:014d}-{len(keys)}",
        imeis=[f"{k:014d}" for k in keys],
        reason=reason,
    )
    try:
        done = stub.RevokeRegistration(request, metadata=metadata, timeout=timeout)
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.NOT_FOUND:
            raise  # not the register's to take (a permission): the command fails
        if len(keys) == 1:
            yield keys[0], "not_registered", 0
            return
        for key in keys:
            yield from revoke_keys(stub, metadata, [key], reason, timeout)
        return
    for key in keys:
        yield key, "revoked", int(done.sequence)


def revoke_ranges(
    stub: RegistryServiceStub,
    metadata: Any,
    ranges: list[registry_pb2.RangeUpload],
    reason: str,
    timeout: float = 60.0,
) -> Iterator[tuple[registry_pb2.RangeUpload, int, str, int]]:
    """Revoke every IMEI of ``ranges``: (range, key, outcome, sequence) for each."""
    for found in ranges:
        keys = list(_keys(found))
        for start in range(0, len(keys), REVOKE_BATCH):
            for key, outcome, sequence in revoke_keys(
                stub, metadata, keys[start : start + REVOKE_BATCH], reason, timeout
            ):
                yield found, key, outcome, sequence


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


def _range_dict(found: registry_pb2.RangeUpload) -> dict[str, Any]:
    return {
        "registered_by": found.registered_by,
        "reference": found.reference,
        "first_imei_key": found.first_imei_key,
        "last_imei_key": found.last_imei_key,
        "imeis": found.imeis,
    }


@ranges_app.command("find")
def find_command(
    min_run: MinRunOption = 0,
    json_output: JsonOption = False,
    ceir: AddressOption = DEFAULT_ADDRESS,
    token: TokenOption = None,
    ca_cert: CaCertOption = None,
    client_cert: ClientCertOption = None,
    client_key: ClientKeyOption = None,
    server_name: ServerNameOption = None,
    timeout: TimeoutOption = 60.0,
) -> None:
    """List range uploads: runs of consecutive serials of one TAC, one uploader and one
    reference, none seen in a check since the server started (Kemenperin, Kominfo)."""
    remote = _remote(ceir, token, ca_cert, timeout, client_cert, client_key, server_name)
    with reporting_errors(ceir), remote.channel() as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        found = find_all(stub, remote.metadata, min_run, timeout)
    total = sum(r.imeis for r in found.ranges)
    if json_output:
        print(
            json.dumps(
                {
                    "ranges": [_range_dict(r) for r in found.ranges],
                    "imeis": total,
                    "observed_since": found.observed_since,
                    "checks_observed": found.checks_observed,
                    "capacity": {"used": found.capacity.used, "limit": found.capacity.limit},
                }
            )
        )
        return
    table = Table("registered by", "reference", "first IMEI key", "last IMEI key", "IMEIs")
    for r in found.ranges:
        table.add_row(
            r.registered_by, r.reference, r.first_imei_key, r.last_imei_key, f"{r.imeis:,}"
        )
    out().print(table)
    limit = f"{found.capacity.limit:,}" if found.capacity.limit else "unlimited"
    out().print(
        f"{len(found.ranges):,} ranges, {total:,} IMEIs never seen since "
        f"{found.observed_since} ({found.checks_observed:,} checks of registered IMEIs "
        f"seen); whitelist {found.capacity.used:,} of {limit}"
    )


@ranges_app.command("revoke")
def revoke_command(
    reason: Annotated[
        str, typer.Option("--reason", help="Why, for the audit trail (each revocation's).")
    ],
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            dir_okay=False,
            help="CSV file of every IMEI: imei_key, reference, outcome, sequence "
            "(default: standard output).",
        ),
    ] = None,
    min_run: MinRunOption = 0,
    json_output: JsonOption = False,
    ceir: AddressOption = DEFAULT_ADDRESS,
    token: TokenOption = None,
    ca_cert: CaCertOption = None,
    client_cert: ClientCertOption = None,
    client_key: ClientKeyOption = None,
    server_name: ServerNameOption = None,
    timeout: TimeoutOption = 60.0,
) -> None:
    """Find range uploads and revoke every IMEI of them through RevokeRegistration.

    Needs an organisation that may revoke them (Kemenperin revokes any
    registration). Safe to run again: what was revoked is not found again,
    and a call sent again replays its answer.
    """
    remote = _remote(ceir, token, ca_cert, timeout, client_cert, client_key, server_name)
    counts = {"revoked": 0, "not_registered": 0}
    handle = report.open("w", newline="", encoding="utf-8") if report else sys.stdout
    try:
        with reporting_errors(ceir), remote.channel() as channel:
            stub = registry_pb2_grpc.RegistryServiceStub(channel)
            found = find_all(stub, remote.metadata, min_run, timeout)
            writer = csv.writer(handle)
            writer.writerow(["imei_key", "reference", "outcome", "sequence"])
            for upload, key, outcome, sequence in revoke_ranges(
                stub, remote.metadata, found.ranges, reason, timeout
            ):
                counts[outcome] += 1
                writer.writerow([f"{key:014d}", upload.reference, outcome, sequence])
    finally:
        if report:
            handle.close()
    summary = {"ranges": len(found.ranges), **counts}
    if json_output:
        err().print(json.dumps(summary))
    else:
        err().print(
            f"{summary['ranges']:,} ranges: {counts['revoked']:,} IMEIs revoked, "
            f"{counts['not_registered']:,} not registered any more"
        )

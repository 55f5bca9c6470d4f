"""``ceir policy``: read and change the regulator's policy."""

from __future__ import annotations

import enum
import json
from datetime import UTC
from typing import Annotated, Any

import grpc
import typer
from google.protobuf.field_mask_pb2 import FieldMask
from rich.table import Table

from ceir.v1 import policy_pb2, policy_pb2_grpc, types_pb2

from ._output import CliError, out, reporting_errors
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

policy_app = typer.Typer(
    name="policy",
    help="Show or change the regulator's policy (phase, grace days, clone detection).",
    no_args_is_help=True,
)
_UINT32 = 2**32 - 1


class PhaseName(enum.StrEnum):
    NOTIFY = "notify"
    ENFORCE = "enforce"


def policy_values(policy: types_pb2.Policy) -> dict[str, Any]:
    """The policy as plain values (the --json document)."""
    update_time = None
    if policy.HasField("update_time"):
        update_time = policy.update_time.ToDatetime(tzinfo=UTC).isoformat()
    return {
        "phase": enum_name(types_pb2.Phase, policy.phase, "PHASE_").lower(),
        "grace_days": policy.grace_days,
        "clone_threshold": policy.clone_threshold,
        "clone_window_seconds": policy.clone_window_seconds,
        "update_time": update_time,
        "updated_by": policy.updated_by,
    }


def _print(policy: types_pb2.Policy, json_output: bool) -> None:
    values = policy_values(policy)
    if json_output:
        print(json.dumps(values))
        return
    table = Table.grid(padding=(0, 2))
    for name, value in values.items():
        table.add_row(name, "-" if value in (None, "") else str(value))
    out().print(table)


def update_request(
    phase: PhaseName | None, numbers: dict[str, int | None], request_id: str
) -> policy_pb2.UpdatePolicyRequest:
    """An UpdatePolicy request whose mask names exactly the fields given."""
    policy = types_pb2.Policy()
    paths: list[str] = []
    if phase is not None:
        policy.phase = types_pb2.Phase.Value(f"PHASE_{phase.name}")
        paths.append("phase")
    for name, value in numbers.items():
        if value is None:
            continue
        if not 0 <= value <= _UINT32:  # the server checks the real limits
            raise CliError(f"--{name.replace('_', '-')} must be 0 or more, got {value}")
        setattr(policy, name, value)
        paths.append(name)
    if not paths:
        raise CliError(
            "nothing to change: give at least one of --phase, --grace-days, "
            "--clone-threshold, --clone-window-seconds"
        )
    return policy_pb2.UpdatePolicyRequest(
        request_id=request_id, policy=policy, update_mask=FieldMask(paths=paths)
    )


@policy_app.command("show")
def show(
    json_output: JsonOption = False,
    ceir: AddressOption = DEFAULT_ADDRESS,
    token: TokenOption = None,
    ca_cert: CaCertOption = None,
    client_cert: ClientCertOption = None,
    client_key: ClientKeyOption = None,
    server_name: ServerNameOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Show the policy in force."""
    remote = Remote(ceir, token, ca_cert, timeout, client_cert, client_key, server_name)
    with reporting_errors(ceir), remote.channel() as channel:
        stub = policy_pb2_grpc.PolicyServiceStub(channel)
        response = stub.GetPolicy(
            policy_pb2.GetPolicyRequest(), metadata=remote.metadata, timeout=timeout
        )
    _print(response.policy, json_output)


@policy_app.command("set")
def set_(
    phase: Annotated[
        PhaseName | None,
        typer.Option(
            case_sensitive=False,
            help="notify: unregistered devices are notified, then blocked after the "
            "grace days; enforce: blocked at once.",
        ),
    ] = None,
    grace_days: Annotated[
        int | None, typer.Option(help="Days from first sight to block date (0 to 365).")
    ] = None,
    clone_threshold: Annotated[
        int | None,
        typer.Option(
            help="Most IMSIs one IMEI may be seen with inside the clone window before it "
            "is greylisted as a suspected clone (1 to 1,000)."
        ),
    ] = None,
    clone_window_seconds: Annotated[
        int | None, typer.Option(help="The clone window in seconds (60 to 2,592,000).")
    ] = None,
    request_id: Annotated[
        str | None,
        typer.Option(
            show_default=False,
            help="Idempotency key of the change; default: one made up for this command.",
        ),
    ] = None,
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
    """Change the named fields of the policy (Kominfo only); prints the new policy.

    A register frozen for a custody handover gets the change again (same
    request id) until --retry-for runs out; a register handed over passes
    it to its successor's endpoint.
    """
    remote = Remote(ceir, token, ca_cert, timeout, client_cert, client_key, server_name)
    with reporting_errors(ceir):
        request = update_request(
            phase,
            {
                "grace_days": grace_days,
                "clone_threshold": clone_threshold,
                "clone_window_seconds": clone_window_seconds,
            },
            request_id or new_request_id(),
        )

        def send(channel: grpc.Channel, to: Remote) -> policy_pb2.UpdatePolicyResponse:
            stub = policy_pb2_grpc.PolicyServiceStub(channel)
            return stub.UpdatePolicy(request, metadata=to.metadata, timeout=timeout)

        response = send_write(remote, send, retry_for)
    _print(response.policy, json_output)

"""``ceir complaints``: the complaints desk from the command line (a client
of ``ceir.v1.ComplaintService``, as a desk agent's tool would be).

``file`` files a complaint and prints its tracking id; ``show`` and
``list`` read complaints with their history; ``update`` moves one along its
lifecycle; ``resolve`` resolves one through an action; ``diagnose``
explains why the register decides as it does for an IMEI.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from typing import Annotated, Any

import typer
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from rich.table import Table

from ceir.v1 import complaints_pb2 as pb
from ceir.v1 import complaints_pb2_grpc, registry_pb2, types_pb2

from ._output import CliError, fail, out, reporting_errors
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

complaints_app = typer.Typer(
    name="complaints",
    help="The complaints desk: file, show, list, update, resolve complaints; diagnose an IMEI.",
    no_args_is_help=True,
)

# The enums' values by their short lowercase names, for the options' help.
CATEGORIES = [
    c.name.removeprefix("COMPLAINT_CATEGORY_").lower()
    for c in pb.ComplaintCategory.DESCRIPTOR.values[1:]
]
STATES = [
    s.name.removeprefix("COMPLAINT_STATE_").lower() for s in pb.ComplaintState.DESCRIPTOR.values[1:]
]
RequestIdOption = Annotated[
    str, typer.Option("--request-id", help="Idempotency key: a retry with it changes nothing.")
]


@contextmanager
def _stub(remote: Remote, address: str) -> Iterator[complaints_pb2_grpc.ComplaintServiceStub]:
    with reporting_errors(address), remote.channel() as channel:
        yield complaints_pb2_grpc.ComplaintServiceStub(channel)


def _enum(enum: Any, value: str, prefix: str, option: str) -> int:
    try:
        return int(enum.Value(prefix + value.upper().replace("-", "_")))
    except ValueError:
        raise CliError(f"{option}: unknown value {value!r}") from None


def _show(complaint: pb.Complaint, json_output: bool) -> None:
    """One complaint and its history, for people or (--json) machines."""
    if json_output:
        print(json.dumps(MessageToDict(complaint, preserving_proto_field_name=True)))
        return
    console = out()
    state = enum_name(pb.ComplaintState, complaint.state, "COMPLAINT_STATE_")
    category = enum_name(pb.ComplaintCategory, complaint.category, "COMPLAINT_CATEGORY_")
    console.print(f"[bold]{complaint.tracking_id}[/bold]  {category}  {state}")
    console.print(f"  IMEIs      {', '.join(complaint.imei_keys)}")
    if complaint.imsi or complaint.msisdn:
        console.print(f"  subscriber {complaint.imsi} {complaint.msisdn}".rstrip())
    console.print(f"  filed by   {complaint.filed_by}; owned by {complaint.owner}")
    deadline = _time(complaint.deadline)
    missed = " (missed" + (
        f", escalated to {complaint.escalated_to})" if complaint.escalated_to else ")"
    )
    console.print(f"  deadline   {deadline}{missed if complaint.deadline_missed else ''}")
    if complaint.description:
        console.print(f"  says       {complaint.description}")
    table = Table("#", "time", "by", "step", "note", "changes")
    for step in complaint.history:
        kind = enum_name(pb.ComplaintStepKind, step.kind, "COMPLAINT_STEP_KIND_")
        to = enum_name(pb.ComplaintState, step.to_state, "COMPLAINT_STATE_")
        what = f"{kind} -> {to}" + (f" ({step.action})" if step.action else "")
        table.add_row(
            str(step.number),
            _time(step.step_time),
            step.actor,
            what,
            step.note,
            ", ".join(str(s) for s in step.change_sequences),
        )
    console.print(table)


def _time(stamp: Any) -> str:
    return str(stamp.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%SZ"))


def _print(message: Message) -> None:
    print(json.dumps(MessageToDict(message, preserving_proto_field_name=True)))


@complaints_app.command("file")
def file_command(
    imeis: Annotated[list[str], typer.Argument(help="The IMEIs concerned (1 to 8).")],
    category: Annotated[str, typer.Option(help=f"One of: {', '.join(CATEGORIES)}.")],
    imsi: Annotated[str, typer.Option(help="The subscriber's IMSI.")] = "",
    msisdn: Annotated[str, typer.Option(help="The subscriber's MSISDN.")] = "",
    description: Annotated[str, typer.Option(help="The subscriber's account.")] = "",
    request_id: RequestIdOption = "",
    json_output: JsonOption = False,
    ceir: AddressOption = DEFAULT_ADDRESS,
    token: TokenOption = None,
    ca_cert: CaCertOption = None,
    client_cert: ClientCertOption = None,
    client_key: ClientKeyOption = None,
    server_name: ServerNameOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """File a complaint at your desk; prints its tracking id and owner."""
    remote = Remote(ceir, token, ca_cert, timeout, client_cert, client_key, server_name)
    with _stub(remote, ceir) as stub:
        request = pb.FileComplaintRequest(
            request_id=request_id,
            imeis=imeis,
            imsi=imsi,
            msisdn=msisdn,
            category=_enum(pb.ComplaintCategory, category, "COMPLAINT_CATEGORY_", "--category"),  # type: ignore[arg-type]
            description=description,
        )
        answer = stub.FileComplaint(request, metadata=remote.metadata, timeout=timeout)
    _show(answer.complaint, json_output)


@complaints_app.command("show")
def show_command(
    tracking_id: Annotated[str, typer.Argument(help="The tracking id, e.g. C-000001.")],
    json_output: JsonOption = False,
    ceir: AddressOption = DEFAULT_ADDRESS,
    token: TokenOption = None,
    ca_cert: CaCertOption = None,
    client_cert: ClientCertOption = None,
    client_key: ClientKeyOption = None,
    server_name: ServerNameOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Show one complaint with its full history."""
    remote = Remote(ceir, token, ca_cert, timeout, client_cert, client_key, server_name)
    with _stub(remote, ceir) as stub:
        answer = stub.GetComplaint(
            pb.GetComplaintRequest(tracking_id=tracking_id),
            metadata=remote.metadata,
            timeout=timeout,
        )
    _show(answer.complaint, json_output)


@complaints_app.command("list")
def list_command(
    state: Annotated[str, typer.Option(help=f"Only this state: {', '.join(STATES)}.")] = "",
    json_output: JsonOption = False,
    ceir: AddressOption = DEFAULT_ADDRESS,
    token: TokenOption = None,
    ca_cert: CaCertOption = None,
    client_cert: ClientCertOption = None,
    client_key: ClientKeyOption = None,
    server_name: ServerNameOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """List the complaints you may read (every page), and the deadlines missed."""
    remote = Remote(ceir, token, ca_cert, timeout, client_cert, client_key, server_name)
    complaints: list[pb.Complaint] = []
    missed, page_token = 0, ""
    with _stub(remote, ceir) as stub:
        number = _enum(pb.ComplaintState, state, "COMPLAINT_STATE_", "--state") if state else 0
        while True:
            page = stub.ListComplaints(
                pb.ListComplaintsRequest(state=number, page_size=1_000, page_token=page_token),  # type: ignore[arg-type]
                metadata=remote.metadata,
                timeout=timeout,
            )
            complaints.extend(page.complaints)
            missed, page_token = page.deadlines_missed, page.next_page_token
            if not page_token:
                break
    if json_output:
        documents = [MessageToDict(c, preserving_proto_field_name=True) for c in complaints]
        print(json.dumps({"complaints": documents, "deadlines_missed": missed}))
        return
    table = Table("tracking id", "category", "state", "owner", "filed by", "deadline", "IMEIs")
    for c in complaints:
        table.add_row(
            c.tracking_id,
            enum_name(pb.ComplaintCategory, c.category, "COMPLAINT_CATEGORY_"),
            enum_name(pb.ComplaintState, c.state, "COMPLAINT_STATE_"),
            c.owner,
            c.filed_by,
            _time(c.deadline) + (" MISSED" if c.deadline_missed else ""),
            ", ".join(c.imei_keys),
        )
    console = out()
    console.print(table)
    console.print(f"{len(complaints)} complaints; deadlines missed: {missed}")


@complaints_app.command("update")
def update_command(
    tracking_id: Annotated[str, typer.Argument(help="The tracking id.")],
    state: Annotated[
        str, typer.Option(help="investigating, waiting_for_subscriber, resolved or rejected.")
    ],
    note: Annotated[str, typer.Option(help="Why (required to reject).")] = "",
    request_id: RequestIdOption = "",
    json_output: JsonOption = False,
    ceir: AddressOption = DEFAULT_ADDRESS,
    token: TokenOption = None,
    ca_cert: CaCertOption = None,
    client_cert: ClientCertOption = None,
    client_key: ClientKeyOption = None,
    server_name: ServerNameOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Move a complaint your desk owns to another state."""
    remote = Remote(ceir, token, ca_cert, timeout, client_cert, client_key, server_name)
    with _stub(remote, ceir) as stub:
        request = pb.UpdateComplaintRequest(
            request_id=request_id,
            tracking_id=tracking_id,
            state=_enum(pb.ComplaintState, state, "COMPLAINT_STATE_", "--state"),  # type: ignore[arg-type]
            note=note,
        )
        answer = stub.UpdateComplaint(request, metadata=remote.metadata, timeout=timeout)
    _show(answer.complaint, json_output)


@complaints_app.command("resolve")
def resolve_command(
    tracking_id: Annotated[str, typer.Argument(help="The tracking id.")],
    note: Annotated[str, typer.Option(help="What was done and why.")],
    whitelist_sibling: Annotated[
        str | None,
        typer.Option(
            metavar="DEAD:REGISTERED",
            help="Whitelist the dead slot DEAD of a dual-SIM phone (REGISTERED: its other slot).",
        ),
    ] = None,
    box: Annotated[
        str, typer.Option(help="The box or invoice listing both IMEIs (--whitelist-sibling).")
    ] = "",
    pair_sim: Annotated[
        str | None, typer.Option(metavar="IMEI:IMSI", help="Pair an IMEI with a SIM.")
    ] = None,
    unblock: Annotated[
        str | None, typer.Option(metavar="IMEI", help="Lift a stolen report.")
    ] = None,
    register_tourist: Annotated[
        str | None,
        typer.Option(
            metavar="IMEI:DAYS", help="Register a tourist's phone for DAYS days (operators)."
        ),
    ] = None,
    reference: Annotated[str, typer.Option(help="The document checked (--register-tourist).")] = "",
    request_id: RequestIdOption = "",
    json_output: JsonOption = False,
    ceir: AddressOption = DEFAULT_ADDRESS,
    token: TokenOption = None,
    ca_cert: CaCertOption = None,
    client_cert: ClientCertOption = None,
    client_key: ClientKeyOption = None,
    server_name: ServerNameOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Resolve a complaint through one action (none given: no list change)."""
    remote = Remote(ceir, token, ca_cert, timeout, client_cert, client_key, server_name)
    request = pb.ResolveComplaintRequest(request_id=request_id, tracking_id=tracking_id, note=note)
    given = [o for o in (whitelist_sibling, pair_sim, unblock, register_tourist) if o is not None]
    if len(given) > 1:
        fail("give one action at most")
    if whitelist_sibling is not None:
        dead, _, registered = whitelist_sibling.partition(":")
        request.whitelist_sibling.CopyFrom(
            pb.WhitelistSibling(imei=dead, registered_imei=registered, box_reference=box)
        )
    elif pair_sim is not None:
        value, _, imsi = pair_sim.partition(":")
        request.pair_sim.CopyFrom(pb.PairSim(imei=value, imsi=imsi))
    elif unblock is not None:
        request.unblock.CopyFrom(pb.Unblock(imei=unblock))
    elif register_tourist is not None:
        value, _, days = register_tourist.partition(":")
        if days and not days.isdigit():
            fail(f"--register-tourist {register_tourist!r}: IMEI:DAYS")
        device = registry_pb2.DeviceRegistration(
            imeis=[value], source=types_pb2.REGISTRATION_SOURCE_TOURIST, reference=reference
        )
        device.valid_until.FromSeconds(int(time.time()) + int(days or "30") * 86_400)
        request.register_device.CopyFrom(pb.RegisterDeviceAction(device=device))
    else:
        request.no_action.CopyFrom(pb.NoAction())
    with _stub(remote, ceir) as stub:
        answer = stub.ResolveComplaint(request, metadata=remote.metadata, timeout=timeout)
    _show(answer.complaint, json_output)
    if not json_output:
        out().print(f"register version after the action: {answer.sequence}")


@complaints_app.command("diagnose")
def diagnose_command(
    imei: Annotated[str, typer.Argument(help="The IMEI.")],
    imsi: Annotated[str, typer.Option(help="The subscriber's IMSI (optional).")] = "",
    json_output: JsonOption = False,
    ceir: AddressOption = DEFAULT_ADDRESS,
    token: TokenOption = None,
    ca_cert: CaCertOption = None,
    client_cert: ClientCertOption = None,
    client_key: ClientKeyOption = None,
    server_name: ServerNameOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Why does this phone get the answer it gets? The rules in order, the
    entries that matched, the device record and the IMEI's changes."""
    remote = Remote(ceir, token, ca_cert, timeout, client_cert, client_key, server_name)
    with _stub(remote, ceir) as stub:
        answer = stub.DiagnoseImei(
            pb.DiagnoseImeiRequest(imei=imei, imsi=imsi, page_size=1_000),
            metadata=remote.metadata,
            timeout=timeout,
        )
    if json_output:
        _print(answer)
        return
    console = out()
    status = enum_name(types_pb2.EquipmentStatus, answer.status, "EQUIPMENT_STATUS_")
    reasons = ", ".join(enum_name(types_pb2.Reason, r, "REASON_") for r in answer.reasons)
    console.print(f"[bold]{answer.imei_key or imei}[/bold]: {status} ({reasons})")
    rules = Table("#", "rule", "outcome", "found")
    for rule in answer.rules:
        outcome = enum_name(pb.RuleOutcome, rule.outcome, "RULE_OUTCOME_")
        rules.add_row(str(rule.number), rule.rule, outcome, rule.detail)
    console.print(rules)
    if answer.HasField("registration"):
        r = answer.registration
        source = enum_name(types_pb2.RegistrationSource, r.source, "REGISTRATION_SOURCE_")
        valid = "in force" if answer.registration_valid else "EXPIRED"
        console.print(
            f"device {r.device_id or '-'}: {source} {r.reference!r} by {r.registered_by}, "
            f"{r.brand} {r.model}, slots {', '.join(r.imei_keys)} ({valid})"
        )
    if answer.HasField("blacklist"):
        b = answer.blacklist
        cause = enum_name(types_pb2.BlacklistCause, b.cause, "BLACKLIST_CAUSE_")
        console.print(f"blacklisted: {cause} by {b.blocked_by} {b.police_report}".rstrip())
    for pair in answer.exceptions:
        console.print(f"paired with {pair.imsi} by {pair.added_by} ({pair.reason})")
    for n in answer.notifications:
        console.print(f"notified: {n.imsi} {n.msisdn}, block date {_time(n.block_date)}")
    changes = Table("sequence", "time", "change", "by", "detail")
    for change in answer.changes:
        kind = enum_name(types_pb2.ChangeKind, change.kind, "CHANGE_KIND_")
        detail = " ".join(
            v for v in (change.reference, change.reason, change.police_report, change.imsi) if v
        )
        changes.add_row(str(change.sequence), _time(change.commit_time), kind, change.actor, detail)
    console.print(changes)

"""The remote steps of ``ceir custody``: calls to a register's CustodyService.

Each step prints the ceremony as the register sees it afterwards (state,
versions, readiness, sizes, detail). Signatures are never made here: the
documents come from files that ``ceir custody sign`` wrote.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Annotated, Any, Literal

import grpc
import typer
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from rich.table import Table

from ceir.audit.checkpoint import Checkpoint
from ceir.custody import CustodyPolicy, Handover, policy_sha256, split_note
from ceir.custody.evidence import parse_consistency, policy_text
from ceir.v1 import custody_pb2, custody_pb2_grpc, transparency_pb2, transparency_pb2_grpc

from ._output import CliError, err, out, reporting_errors
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
from ._witness_client import witness_cosignature
from .check import JsonOption

__all__ = ["COMMANDS"]

TextFile = Annotated[Path, typer.Argument(exists=True, dir_okay=False)]
_DURATION = re.compile(r"([0-9]+)([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def status(
    json_output: JsonOption = False,
    ceir: AddressOption = DEFAULT_ADDRESS,
    token: TokenOption = None,
    ca_cert: CaCertOption = None,
    client_cert: ClientCertOption = None,
    client_key: ClientKeyOption = None,
    server_name: ServerNameOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Show the ceremony: state, policy version, readiness, sizes, custodian, detail."""
    remote = Remote(ceir, token, ca_cert, timeout, client_cert, client_key, server_name)
    with reporting_errors(ceir):
        custody = _get_custody(remote)
    if json_output:
        print(json.dumps(custody_values(custody, documents=True)))
    else:
        _print(custody)


def document(
    out_file: Annotated[Path, typer.Option("--out", dir_okay=False, help="Where to write it.")],
    ceir: AddressOption = DEFAULT_ADDRESS,
    token: TokenOption = None,
    ca_cert: CaCertOption = None,
    client_cert: ClientCertOption = None,
    client_key: ClientKeyOption = None,
    server_name: ServerNameOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Write the text of the document collecting signatures, for officers to sign.

    Read it before you sign it: `ceir custody sign FILE --key KEY`.
    """
    remote = Remote(ceir, token, ca_cert, timeout, client_cert, client_key, server_name)
    with reporting_errors(ceir):
        custody = _get_custody(remote)
        if not custody.pending_document:
            raise CliError(f"no document is collecting signatures (state {custody.state_name})")
        text = custody.pending_document
        if "\n\n" in text:
            text = split_note(text)[0]
        out_file.write_text(text, encoding="utf-8")
    err().print(f"the pending {custody.pending_kind} document is in {out_file}")


def propose(
    policy: TextFile,
    notice: Annotated[
        str,
        typer.Option(
            metavar="DURATION",
            help="No freeze before this long after the announcement: 90s, 30m, 12h, 14d.",
        ),
    ] = "0",
    ceir: AddressOption = DEFAULT_ADDRESS,
    token: TokenOption = None,
    ca_cert: CaCertOption = None,
    client_cert: ClientCertOption = None,
    client_key: ClientKeyOption = None,
    server_name: ServerNameOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Put the next policy (its text or signed note) up for signature."""
    remote = Remote(ceir, token, ca_cert, timeout, client_cert, client_key, server_name)
    with reporting_errors(ceir):
        request = custody_pb2.ProposePolicyRequest(
            policy=policy.read_text(encoding="utf-8"), notice=Duration(seconds=_duration(notice))
        )
        custody = _call(remote, lambda stub, md: stub.ProposePolicy(request, **md))
    _print(custody)


def submit(
    signed_note: TextFile,
    ceir: AddressOption = DEFAULT_ADDRESS,
    token: TokenOption = None,
    ca_cert: CaCertOption = None,
    client_cert: ClientCertOption = None,
    client_key: ClientKeyOption = None,
    server_name: ServerNameOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Submit signatures on the pending document (a signed note from `ceir custody sign`)."""
    remote = Remote(ceir, token, ca_cert, timeout, client_cert, client_key, server_name)
    with reporting_errors(ceir):
        request = custody_pb2.SubmitSignatureRequest(
            signed_note=signed_note.read_text(encoding="utf-8")
        )
        custody = _call(remote, lambda stub, md: stub.SubmitSignature(request, **md))
    _print(custody)


def ready(
    policy_version: Annotated[int, typer.Option(min=1, help="The announced policy's version.")],
    policy: Annotated[
        Path,
        typer.Option(exists=True, dir_okay=False, help="The announced policy your nodes verified."),
    ],
    ceir: AddressOption = DEFAULT_ADDRESS,
    token: TokenOption = None,
    ca_cert: CaCertOption = None,
    client_cert: ClientCertOption = None,
    client_key: ClientKeyOption = None,
    server_name: ServerNameOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Report that your operator's nodes hold and verified the announced policy."""
    remote = Remote(ceir, token, ca_cert, timeout, client_cert, client_key, server_name)
    with reporting_errors(ceir):
        parsed = CustodyPolicy.parse(policy_text(policy.read_text(encoding="utf-8")))
        if parsed.version != policy_version:
            raise CliError(f"{policy} is policy version {parsed.version}, not {policy_version}")
        request = custody_pb2.ReportReadinessRequest(
            policy_version=policy_version, policy_sha256=policy_sha256(parsed)
        )
        custody = _call(remote, lambda stub, md: stub.ReportReadiness(request, **md))
    _print(custody)


def freeze(
    ceir: AddressOption = DEFAULT_ADDRESS,
    token: TokenOption = None,
    ca_cert: CaCertOption = None,
    client_cert: ClientCertOption = None,
    client_key: ClientKeyOption = None,
    server_name: ServerNameOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Stop writes on the outgoing register and sign its final checkpoint."""
    remote = Remote(ceir, token, ca_cert, timeout, client_cert, client_key, server_name)
    with reporting_errors(ceir):
        custody = _call(remote, lambda stub, md: stub.Freeze(custody_pb2.FreezeRequest(), **md))
    _print(custody)


def cosign(
    witness: Annotated[str, typer.Option(metavar="HOST:PORT", help="The witness to ask.")],
    first: Annotated[
        bool,
        typer.Option(
            "--first", help="Cosign the incoming register's first checkpoint, not the final one."
        ),
    ] = False,
    witness_ca_cert: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="PEM CA of the witness's certificate: TLS to the witness (else plain text; "
            "its answer is a signature the register verifies).",
        ),
    ] = None,
    ceir: AddressOption = DEFAULT_ADDRESS,
    token: TokenOption = None,
    ca_cert: CaCertOption = None,
    client_cert: ClientCertOption = None,
    client_key: ClientKeyOption = None,
    server_name: ServerNameOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Have a witness cosign the final (or --first) checkpoint and submit its cosignature.

    Asks the witness with old size 0; when it has cosigned this log before
    (WITNESS_CONFLICT, naming its size), fetches the consistency proof from
    there from the register and asks again.
    """
    remote = Remote(ceir, token, ca_cert, timeout, client_cert, client_key, server_name)
    which = "first" if first else "final"
    with reporting_errors(ceir), remote.channel() as channel:
        custody = (
            _custody_stub(channel)
            .GetCustody(custody_pb2.GetCustodyRequest(), metadata=remote.metadata, timeout=timeout)
            .custody
        )
        note = custody.first_checkpoint if first else custody.final_checkpoint
        if not note:
            raise CliError(f"the register has no {which} checkpoint (state {custody.state_name})")
        size = Checkpoint.parse(split_note(note)[0]).size
        transparency = transparency_pb2_grpc.TransparencyServiceStub(channel)

        def proof_from(old_size: int) -> list[bytes]:
            request = transparency_pb2.GetConsistencyProofRequest(
                first_size=old_size, second_size=size
            )
            answer = transparency.GetConsistencyProof(
                request, metadata=remote.metadata, timeout=timeout
            )
            return list(answer.hashes)

        line = witness_cosignature(
            witness, witness_ca_cert, note, list(custody.policies), proof_from, timeout
        )
        request = custody_pb2.SubmitCosignatureRequest(checkpoint=note + line)
        custody = (
            _custody_stub(channel)
            .SubmitCosignature(request, metadata=remote.metadata, timeout=timeout)
            .custody
        )
    err().print(f"{witness} cosigned the {which} checkpoint (size {size}): {line.strip()}")
    _print(custody)


def transfer(
    ceir: AddressOption = DEFAULT_ADDRESS,
    token: TokenOption = None,
    ca_cert: CaCertOption = None,
    client_cert: ClientCertOption = None,
    client_key: ClientKeyOption = None,
    server_name: ServerNameOption = None,
    timeout: TimeoutOption = 300.0,
) -> None:
    """Ask the incoming register to confirm it holds the whole log with the final root.

    Waits for it to pull the rest of the log, up to --timeout.
    """
    remote = Remote(ceir, token, ca_cert, timeout, client_cert, client_key, server_name)
    with reporting_errors(ceir):
        custody = _call(remote, lambda stub, md: stub.Transfer(custody_pb2.TransferRequest(), **md))
    _print(custody)


def activate(
    handover: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="The signed handover note."),
    ] = None,
    from_: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="HOST:PORT",
            help="Take the handover note from the outgoing register instead (same credentials).",
        ),
    ] = None,
    ceir: AddressOption = DEFAULT_ADDRESS,
    token: TokenOption = None,
    ca_cert: CaCertOption = None,
    client_cert: ClientCertOption = None,
    client_key: ClientKeyOption = None,
    server_name: ServerNameOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Give the incoming register the handover note: it takes over the log.

    It adds its own signature, records ACTIVE and signs its first
    checkpoint; it accepts writes once the witnesses cosigned that.
    """
    remote = Remote(ceir, token, ca_cert, timeout, client_cert, client_key, server_name)
    with reporting_errors(ceir):
        if (handover is None) == (from_ is None):
            raise CliError("give one of --handover FILE or --from OUTGOING_HOST:PORT")
        if handover is not None:
            note = handover.read_text(encoding="utf-8")
        else:
            note = _get_custody(_elsewhere(remote, from_)).handover
            if not note:
                raise CliError(f"the register at {from_} holds no handover note")
        request = custody_pb2.ActivateRequest(handover=note)
        custody = _call(remote, lambda stub, md: stub.Activate(request, **md))
    _print(custody)


def retire(
    handover: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="The handover note, every signature."),
    ] = None,
    first_checkpoint: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, help="The incoming register's cosigned first checkpoint."
        ),
    ] = None,
    proof: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="The consistency proof from the final size: 'N M', then a base64 hash per line.",
        ),
    ] = None,
    from_: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="HOST:PORT",
            help="Take all three from the incoming register instead (same credentials).",
        ),
    ] = None,
    ceir: AddressOption = DEFAULT_ADDRESS,
    token: TokenOption = None,
    ca_cert: CaCertOption = None,
    client_cert: ClientCertOption = None,
    client_key: ClientKeyOption = None,
    server_name: ServerNameOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Make the outgoing register read-only for good, given the proof the incoming took over."""
    remote = Remote(ceir, token, ca_cert, timeout, client_cert, client_key, server_name)
    with reporting_errors(ceir):
        files = (handover, first_checkpoint, proof)
        if from_ is not None and any(f is not None for f in files):
            raise CliError("give --from INCOMING_HOST:PORT, or the three files, not both")
        if from_ is not None:
            request = _retirement_from(_elsewhere(remote, from_))
        elif handover is None or first_checkpoint is None or proof is None:
            raise CliError(
                "give --handover, --first-checkpoint and --proof, or --from INCOMING_HOST:PORT"
            )
        else:
            _, _, hashes = parse_consistency(proof.read_text(encoding="utf-8"))
            request = custody_pb2.RetireRequest(
                handover=handover.read_text(encoding="utf-8"),
                first_checkpoint=first_checkpoint.read_text(encoding="utf-8"),
                consistency_proof=hashes,
            )
        custody = _call(remote, lambda stub, md: stub.Retire(request, **md))
    _print(custody)


def abort(
    note: TextFile,
    ceir: AddressOption = DEFAULT_ADDRESS,
    token: TokenOption = None,
    ca_cert: CaCertOption = None,
    client_cert: ClientCertOption = None,
    client_key: ClientKeyOption = None,
    server_name: ServerNameOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Call the handover off with an abort note signed by the outgoing officers."""
    remote = Remote(ceir, token, ca_cert, timeout, client_cert, client_key, server_name)
    with reporting_errors(ceir):
        request = custody_pb2.AbortRequest(abort_note=note.read_text(encoding="utf-8"))
        custody = _call(remote, lambda stub, md: stub.Abort(request, **md))
    _print(custody)


COMMANDS: dict[str, Callable[..., None]] = {
    "status": status,
    "document": document,
    "propose": propose,
    "submit": submit,
    "ready": ready,
    "freeze": freeze,
    "cosign": cosign,
    "transfer": transfer,
    "activate": activate,
    "retire": retire,
    "abort": abort,
}


def custody_values(custody: custody_pb2.Custody, documents: bool = False) -> dict[str, Any]:
    """The ceremony as plain values (the --json document)."""
    values: dict[str, Any] = {
        "state": custody.state_name,
        "policy_version": custody.policy_version,
        "custodian": custody.custodian,
        "endpoint": custody.endpoint,
        "pending": custody.pending_kind,
        "ready_operators": list(custody.ready_operators),
        "waiting_operators": list(custody.waiting_operators),
        "final_size": custody.final_size,
        "transferred_size": custody.transferred_size,
        "announced_at": _time(custody, "announced_at"),
        "notice_ends_at": _time(custody, "notice_ends_at"),
        "expires_at": _time(custody, "expires_at"),
        "detail": custody.detail,
    }
    if documents:
        values |= {
            "policies": list(custody.policies),
            "pending_document": custody.pending_document,
            "final_checkpoint": custody.final_checkpoint,
            "handover": custody.handover,
            "first_checkpoint": custody.first_checkpoint,
            "abort_note": custody.abort_note,
        }
    return values


def _print(custody: custody_pb2.Custody) -> None:
    table = Table.grid(padding=(0, 2))
    for name, value in custody_values(custody).items():
        if isinstance(value, list):
            value = ", ".join(value)
        table.add_row(name.replace("_", " "), "-" if value in (None, "") else str(value))
    out().print(table)


def _time(
    custody: custody_pb2.Custody, name: Literal["announced_at", "notice_ends_at", "expires_at"]
) -> str | None:
    if not custody.HasField(name):
        return None
    stamp: Timestamp = getattr(custody, name)
    return stamp.ToDatetime(tzinfo=UTC).isoformat()


def _custody_stub(channel: grpc.Channel) -> custody_pb2_grpc.CustodyServiceStub:
    return custody_pb2_grpc.CustodyServiceStub(channel)


def _call(
    remote: Remote, step: Callable[[custody_pb2_grpc.CustodyServiceStub, dict[str, Any]], Any]
) -> custody_pb2.Custody:
    """One CustodyService call; the ceremony it answers with."""
    with remote.channel() as channel:
        response = step(
            _custody_stub(channel), {"metadata": remote.metadata, "timeout": remote.timeout}
        )
    custody: custody_pb2.Custody = response.custody
    return custody


def _get_custody(remote: Remote) -> custody_pb2.Custody:
    return _call(remote, lambda stub, md: stub.GetCustody(custody_pb2.GetCustodyRequest(), **md))


def _elsewhere(remote: Remote, address: str | None) -> Remote:
    """The same credentials at another register (the name to expect is its own)."""
    assert address is not None
    return Remote(
        address, remote.token, remote.ca_cert, remote.timeout, remote.client_cert, remote.client_key
    )


def _retirement_from(incoming: Remote) -> custody_pb2.RetireRequest:
    """The handover note, first checkpoint and consistency proof, as the incoming holds them."""
    custody = _get_custody(incoming)
    if not custody.handover or not custody.first_checkpoint:
        raise CliError(
            f"the register at {incoming.address} has no handover note or first checkpoint "
            f"(state {custody.state_name})"
        )
    final_size = Handover.parse(split_note(custody.handover)[0]).size
    first_size = Checkpoint.parse(split_note(custody.first_checkpoint)[0]).size
    with incoming.channel() as channel:
        answer = transparency_pb2_grpc.TransparencyServiceStub(channel).GetConsistencyProof(
            transparency_pb2.GetConsistencyProofRequest(
                first_size=final_size, second_size=first_size
            ),
            metadata=incoming.metadata,
            timeout=incoming.timeout,
        )
    return custody_pb2.RetireRequest(
        handover=custody.handover,
        first_checkpoint=custody.first_checkpoint,
        consistency_proof=list(answer.hashes),
    )


def _duration(text: str) -> int:
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise CliError(f"--notice {text!r} is not a duration such as 90s, 30m, 12h or 14d")
    return int(match.group(1)) * _UNITS[match.group(2)]

"""Sending a write so that it lands once, even across a custody handover.

Every write the CLI sends carries a request id (AIP-155): sent again, it is
answered from the register's stored answer, never applied twice. So a
write may be resent, and is, when the register answers:

- ``REGISTER_FROZEN`` (FAILED_PRECONDITION): the register is frozen for a
  handover. Wait the RetryInfo delay and resend to the same register, for
  at most ``--retry-for`` seconds, one line on stderr per wait. A freeze
  lasts while the log is transferred; the handover then either resumes
  writes here (aborted) or answers REGISTER_MOVED.
- ``REGISTER_MOVED`` (the register was handed over) or ``NOT_CUSTODIAN``
  (a standby): resend to the ErrorInfo metadata ``endpoint``, with the same
  TLS credentials, saying where it moved.

gRPC's own retry policy retries on status codes only: it cannot wait what
RetryInfo says, tell one FAILED_PRECONDITION reason from another, or
reconnect elsewhere, hence this loop.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Annotated, TypeVar

import grpc
import typer
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from ._output import err
from ._remote import Remote

T = TypeVar("T")

DEFAULT_RETRY_FOR = 120.0
DEFAULT_RETRY_DELAY = 1.0  # when a frozen register sends no RetryInfo
MAX_MOVES = 3  # two registers pointing at each other must not keep a write going forever

RetryForOption = Annotated[
    float,
    typer.Option(
        "--retry-for",
        min=0,
        metavar="SECONDS",
        help="While the register is frozen for a custody handover, resend the write "
        "(same request id) for up to this long.",
    ),
]


def new_request_id() -> str:
    """A request id made here, for a write whose user gave none."""
    return f"cli-{uuid.uuid4()}"


@dataclass(frozen=True)
class Refusal:
    """What a register's refusal says about where and when to send a write."""

    reason: str
    metadata: dict[str, str] = field(default_factory=dict)
    retry_delay: float | None = None


def refusal(error: grpc.RpcError) -> Refusal:
    """The ErrorInfo reason and metadata and the RetryInfo delay of a failed call."""
    try:
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
    except ValueError:
        status = None
    if status is None:
        return Refusal("")
    reason, metadata, delay = "", {}, None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        retry = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            reason, metadata = info.reason, dict(info.metadata)
        elif detail.Unpack(retry):
            delay = retry.retry_delay.ToNanoseconds() / 1e9
    return Refusal(reason, metadata, delay)


def send_write(
    remote: Remote,
    send: Callable[[grpc.Channel, Remote], T],
    retry_for: float = DEFAULT_RETRY_FOR,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """``send(channel, remote)``'s answer, resent as the module docstring says.

    ``send`` must send the same request (same request id) every time. The
    last refusal is raised when the register stays frozen past ``retry_for``.
    """
    deadline = clock() + retry_for
    moves = 0
    while True:
        try:
            with remote.channel() as channel:
                return send(channel, remote)
        except grpc.RpcError as error:
            found = refusal(error)
            if found.reason == "REGISTER_FROZEN":
                delay = max(found.retry_delay or DEFAULT_RETRY_DELAY, 0.05)
                if clock() + delay > deadline:
                    raise
                err().print(
                    f"the register at {remote.address} is frozen for a custody handover"
                    f"{_to(found)}; resending in {delay:g} s",
                    soft_wrap=True,
                )
                sleep(delay)
            elif found.reason in ("REGISTER_MOVED", "NOT_CUSTODIAN") and found.metadata.get(
                "endpoint"
            ):
                endpoint = found.metadata["endpoint"]
                if moves >= MAX_MOVES or endpoint == remote.address:
                    raise
                moves += 1
                if found.reason == "REGISTER_MOVED":
                    where = f"moved to {endpoint}{_to(found)}"
                else:
                    where = f"is a standby; the custodian is at {endpoint}{_to(found)}"
                err().print(
                    f"the register at {remote.address} {where}; sending there", soft_wrap=True
                )
                # The same credentials; the name to expect is the new host's own.
                remote = replace(remote, address=endpoint, server_name=None)
            else:
                raise


def _to(found: Refusal) -> str:
    custodian = found.metadata.get("custodian")
    return f" (custodian {custodian})" if custodian else ""

"""Reading a register's refusal: its ErrorInfo reason and metadata, its RetryInfo.

The register answers a write it cannot take now (AIP-193) with
FAILED_PRECONDITION and an ErrorInfo: ``REGISTER_FROZEN`` (with a
``google.rpc.RetryInfo``: try again later, same request id),
``REGISTER_MOVED`` and ``NOT_CUSTODIAN`` (metadata ``endpoint``: where the
custodian is now). A client acts on those fields, never on the message text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

__all__ = ["Refusal", "refusal"]

DOWN = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNKNOWN,  # a server killed mid-call can end it this way
)


@dataclass(frozen=True)
class Refusal:
    """What an error says: its code, reason (or UNAVAILABLE for a register
    that is not there), metadata and the delay it asks for."""

    code: grpc.StatusCode
    reason: str
    message: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    retry_after: float | None = None

    @property
    def down(self) -> bool:
        """The register could not be reached (or died during the call)."""
        return self.code in DOWN


def refusal(error: grpc.RpcError) -> Refusal:
    """The refusal an error carries."""
    call = error if isinstance(error, grpc.Call) else None
    code = call.code() if call is not None else grpc.StatusCode.UNKNOWN
    message = call.details() if call is not None else str(error)
    reason = ""
    metadata: dict[str, str] = {}
    retry_after: float | None = None
    try:
        status = rpc_status.from_call(call) if call is not None else None
    except ValueError:  # a status whose details do not match its code: keep the code
        status = None
    details: list[any_pb2.Any] = list(status.details) if status is not None else []
    for detail in details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
            metadata = dict(info.metadata)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_after = retry.retry_delay.ToTimedelta().total_seconds()
    if not reason and code in DOWN:
        reason = "UNAVAILABLE"
    return Refusal(code, reason or code.name, message or "", metadata, retry_after)

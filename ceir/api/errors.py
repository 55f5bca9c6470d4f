"""Domain errors to gRPC statuses (AIP-193): a code, a message, an ErrorInfo
with the machine-readable reason, and BadRequest field violations."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from ceir.domain import errors

ERROR_DOMAIN = "ceir.example.id"

CODES: dict[type[errors.CeirError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
}


def status_code(error: errors.CeirError) -> grpc.StatusCode:
    for kind in type(error).__mro__:
        if kind in CODES:
            return CODES[kind]  # type: ignore[index]
    return grpc.StatusCode.UNKNOWN


def to_status(error: errors.CeirError) -> grpc.Status:
    code = status_code(error)
    details = []
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN))
    details.append(info)
    if error.violations:
        bad_request = any_pb2.Any()
        bad_request.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in error.violations
                ]
            )
        )
        details.append(bad_request)
    message = status_pb2.Status(code=code.value[0], message=error.message[:2_000], details=details)
    return rpc_status.to_status(message)


def internal_status() -> grpc.Status:
    """What a caller sees of an unexpected failure: no traceback, no internals."""
    return rpc_status.to_status(
        status_pb2.Status(
            code=code_pb2.INTERNAL, message="internal error; the server logged the details"
        )
    )

"""Domain errors to gRPC statuses (AIP-193): a code, a message, an ErrorInfo
with the machine-readable reason (and metadata), BadRequest field
violations, a QuotaFailure for a quota a write would exceed, and RetryInfo
when the same request may succeed later."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from ceir.domain import errors

ERROR_DOMAIN = "ceir.example.id"
# A status travels in trailers, which gRPC refuses beyond 8 KiB (soft limit)
# to 16 KiB (hard): the caller would get RESOURCE_EXHAUSTED instead of the
# error. The message is sent twice (grpc-message, percent-encoded, and inside
# grpc-status-details-bin), so message and violations stay within a budget.
MAX_MESSAGE_BYTES = 600
MAX_VIOLATIONS_BYTES = 2_500
MAX_VIOLATION_TEXT_BYTES = 200

CODES: dict[type[errors.CeirError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.WritesRefused: grpc.StatusCode.FAILED_PRECONDITION,
    errors.OutOfRange: grpc.StatusCode.OUT_OF_RANGE,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.QuotaExceeded: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def status_code(error: errors.CeirError) -> grpc.StatusCode:
    for kind in type(error).__mro__:
        if kind in CODES:
            return CODES[kind]
    return grpc.StatusCode.UNKNOWN


def to_status(error: errors.CeirError) -> grpc.Status:
    code = status_code(error)
    details = []
    info = any_pb2.Any()
    info.Pack(
        error_details_pb2.ErrorInfo(
            reason=error.reason,
            domain=ERROR_DOMAIN,
            metadata={k: _clip(v, MAX_VIOLATION_TEXT_BYTES) for k, v in error.metadata.items()},
        )
    )
    details.append(info)
    if error.retry_after is not None:
        retry = any_pb2.Any()
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(max(0, round(error.retry_after * 1e9)))
        retry.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        details.append(retry)
    if isinstance(error, errors.QuotaExceeded) and error.quota:
        quota = any_pb2.Any()
        quota.Pack(
            error_details_pb2.QuotaFailure(
                violations=[
                    error_details_pb2.QuotaFailure.Violation(
                        subject=_clip(v.subject, MAX_VIOLATION_TEXT_BYTES),
                        description=_clip(v.description, MAX_VIOLATION_TEXT_BYTES),
                    )
                    for v in error.quota[:10]
                ]
            )
        )
        details.append(quota)
    text = error.message
    if error.violations:
        violations = _bounded_violations(error.violations)
        bad_request = any_pb2.Any()
        bad_request.Pack(violations)
        details.append(bad_request)
        sent, total = len(violations.field_violations), len(error.violations)
        if sent < total:
            suffix = f" ({total} field violations in all; the first {sent} are in the details)"
            text = _clip(text, MAX_MESSAGE_BYTES - len(suffix)) + suffix
    message = status_pb2.Status(
        code=code.value[0], message=_clip(text, MAX_MESSAGE_BYTES), details=details
    )
    return rpc_status.to_status(message)


def _bounded_violations(violations: list[errors.FieldViolation]) -> error_details_pb2.BadRequest:
    """The first violations, each clipped, as many as fit the budget."""
    bad_request = error_details_pb2.BadRequest()
    for violation in violations:
        bad_request.field_violations.add(
            field=_clip(violation.field, MAX_VIOLATION_TEXT_BYTES),
            description=_clip(violation.description, MAX_VIOLATION_TEXT_BYTES),
        )
        if bad_request.ByteSize() > MAX_VIOLATIONS_BYTES:
            del bad_request.field_violations[-1]
            break
    return bad_request


def _clip(text: str, limit: int) -> str:
    """At most ``limit`` bytes of UTF-8, cut at a character boundary."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode(errors="ignore") + "..."


def internal_status() -> grpc.Status:
    """What a caller sees of an unexpected failure: no traceback, no internals."""
    return rpc_status.to_status(
        status_pb2.Status(
            code=code_pb2.INTERNAL, message="internal error; the server logged the details"
        )
    )

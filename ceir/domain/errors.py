"""Domain errors, each carrying what a person needs to act on it.

::

    CeirError
    ├── InvalidArgument      a request field is wrong (field violations name it)
    ├── Unauthenticated      no credentials, or unknown ones
    ├── PermissionDenied     the caller's organisation may not do this
    ├── NotFound             the thing named does not exist
    ├── AlreadyExists        the thing to create exists already
    ├── FailedPrecondition   the register's state forbids the operation now
    │   └── WritesRefused    this register takes no writes now (custody: frozen, moved, standby)
    ├── OutOfRange           a position past what the register has (a sequence ahead of its head)
    └── ResourceExhausted    the server is at a limit it keeps for everyone's sake
        └── QuotaExceeded    a write would take the register past a stated quota (its capacity)

The API layer maps each class to a gRPC status code in one place.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One wrong field: its path in the request and what was wrong with it."""

    field: str
    description: str


class CeirError(Exception):
    """Base of every error the register reports to a caller.

    ``reason`` is an UPPER_SNAKE identifier for machines (AIP-193 ErrorInfo),
    the message is for people.
    """

    reason = "CEIR_ERROR"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        violations: list[FieldViolation] | None = None,
        metadata: dict[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        """``metadata``: ErrorInfo metadata (where to go instead, ...);
        ``retry_after``: seconds after which the same request may succeed
        (sent as google.rpc.RetryInfo)."""
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.violations: list[FieldViolation] = violations or []
        self.metadata: dict[str, str] = dict(metadata or {})
        self.retry_after = retry_after


class InvalidArgument(CeirError):
    reason = "INVALID_ARGUMENT"

    @classmethod
    def field(cls, field: str, description: str, *, reason: str | None = None) -> InvalidArgument:
        """An error about a single field."""
        return cls(
            f"{field}: {description}",
            reason=reason,
            violations=[FieldViolation(field, description)],
        )


class Unauthenticated(CeirError):
    reason = "UNAUTHENTICATED"


class PermissionDenied(CeirError):
    reason = "PERMISSION_DENIED"


class NotFound(CeirError):
    reason = "NOT_FOUND"


class AlreadyExists(CeirError):
    reason = "ALREADY_EXISTS"


class FailedPrecondition(CeirError):
    reason = "FAILED_PRECONDITION"


class WritesRefused(FailedPrecondition):
    """The register takes no writes now: frozen for a custody handover
    (``REGISTER_FROZEN``, retry later), handed over (``REGISTER_MOVED``) or a
    standby (``NOT_CUSTODIAN``). ``metadata`` names the custodian and its
    endpoint. Checks are still answered."""

    reason = "WRITES_REFUSED"


class OutOfRange(CeirError):
    reason = "OUT_OF_RANGE"


class ResourceExhausted(CeirError):
    reason = "RESOURCE_EXHAUSTED"


@dataclass(frozen=True)
class QuotaViolation:
    """One quota a request would exceed (google.rpc.QuotaFailure.Violation)."""

    subject: str
    description: str


class QuotaExceeded(ResourceExhausted):
    """Refused whole: the write would take the register past ``quota``."""

    reason = "QUOTA_EXCEEDED"

    def __init__(
        self,
        message: str,
        quota: list[QuotaViolation],
        *,
        reason: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.quota = quota

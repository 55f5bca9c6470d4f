"""How the CLI talks to a person: consoles, and errors as one red line.

Every command runs inside ``reporting_errors()``. Whatever goes wrong (a
gRPC status from the server, a domain error from a local database command, a
file that cannot be read) ends as one line on stderr naming what to fix, and
exit code 1, never a traceback. Set ``CEIR_DEBUG=1`` to get the traceback of
an unexpected failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import grpc
import typer
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from rich.console import Console
from rich.text import Text
from sqlalchemy.exc import SQLAlchemyError

from ceir.audit.errors import AuditError
from ceir.domain.errors import CeirError, FieldViolation

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_REJECTED = 3  # an import ran, but some rows were rejected


class CliError(Exception):
    """A failure the CLI itself detected, with a message for a person."""


def out() -> Console:
    """The console for results (stdout). Made per call, so that tests and
    ``COLUMNS`` see the streams of the moment."""
    return Console(highlight=False)


def err() -> Console:
    """The console for progress and errors (stderr)."""
    return Console(stderr=True, highlight=False)


def fail(message: str) -> NoReturn:
    """Print one red error line on stderr and exit with code 1."""
    err().print(Text(f"error: {message}", style="bold red"), soft_wrap=True)
    raise typer.Exit(EXIT_ERROR)


def describe_violations(message: str, violations: list[FieldViolation]) -> str:
    """The message, followed by the violations it does not already spell out."""
    extra = [
        f"{v.field}: {v.description}"
        for v in violations
        if f"{v.field}: {v.description}" not in message
    ]
    return "; ".join([message, *extra]) if extra else message


def describe_rpc_error(error: grpc.RpcError, address: str) -> str:
    """One line for a failed call: code, message, reason and field violations."""
    call: grpc.Call = error  # type: ignore[assignment]  # every client RpcError is a Call
    code = call.code()
    details = call.details() or ""
    if code is grpc.StatusCode.UNAVAILABLE:
        if any(sign in details.lower() for sign in ("socket closed", "handshake", "certificate")):
            # What a failed TLS handshake looks like from the client's side.
            return (
                f"cannot reach the CEIR at {address} ({details}); the TLS handshake failed: "
                "check --ca-cert, and --client-cert/--client-key (signed by the CEIR's client "
                "CA, not expired) if it requires mutual TLS"
            )
        return (
            f"cannot reach the CEIR at {address} ({details}); is `ceir serve` running there? "
            "Set --ceir or CEIR_ADDRESS"
        )
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"no answer from the CEIR at {address} in time (raise --timeout?)"
    reason, violations = _status_details(call)
    line = f"{code.name}: {describe_violations(details, violations)}"
    return f"{line} [{reason}]" if reason else line


def _status_details(call: grpc.Call) -> tuple[str, list[FieldViolation]]:
    """The ErrorInfo reason and BadRequest violations of a google.rpc.Status."""
    try:
        status: status_pb2.Status | None = rpc_status.from_call(call)
    except ValueError:  # a status that contradicts the call: show the call alone
        return "", []
    if status is None:
        return "", []
    reason = ""
    violations: list[FieldViolation] = []
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(info):
            reason = info.reason
        elif detail.Unpack(bad_request):
            violations.extend(
                FieldViolation(v.field, v.description) for v in bad_request.field_violations
            )
    return reason, violations


@contextmanager
def reporting_errors(address: str = "") -> Iterator[None]:
    """Turn every expected failure into ``fail()``: one line, exit code 1."""
    try:
        yield
    except CliError as error:
        fail(str(error))
    except grpc.RpcError as error:
        fail(describe_rpc_error(error, address))
    except CeirError as error:
        fail(describe_violations(error.message, error.violations))
    except AuditError as error:
        fail(str(error))
    except SQLAlchemyError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        fail(f"database: {type(error).__name__}: {first_line}")
    except OSError as error:
        where = f": {error.filename}" if error.filename else ""
        fail(f"{error.strerror or error}{where}")
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except Exception as error:
        if os.environ.get("CEIR_DEBUG") == "1":
            raise
        fail(f"unexpected {type(error).__name__}: {error} (set CEIR_DEBUG=1 for the traceback)")

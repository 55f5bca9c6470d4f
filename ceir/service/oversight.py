"""The regulators' tools for an abused account: alerts, an organisation's
registrations in a window, and the command that revokes them.

The alert rule and the counting live in ``ceir.domain.oversight`` and
``oversight_watch``; the bulk revocation's write in ``oversight_revoke``.
This module is the read side and the pages: ``ListRegistrationsBy`` and
``RevokeRegistrationsBy`` page through one set, fixed by the register
version of their first page, which their tokens carry (with a digest of the
organisation and window they were given for: a token is refused for
another).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, replace

from ceir.domain.commands import RevokeRegistrationsBy
from ceir.domain.errors import FieldViolation, InvalidArgument
from ceir.domain.model import Caller
from ceir.domain.oversight import AccountAlert, AlertRule, RegistrationRow, RevocationPage
from ceir.domain.permissions import Action, require
from ceir.domain.validation import check_text, raise_if
from ceir.storage import oversight_repository as oversight
from ceir.storage import repository as repo

from .register import Register

__all__ = [
    "ALERT_PAGE",
    "ROW_PAGE",
    "Cursor",
    "OversightService",
    "Window",
    "next_revoke_token",
    "revoke_command",
]

ALERT_PAGE = (100, 1_000)  # (default, most) alerts a page
ROW_PAGE = (1_000, 10_000)  # (default, most) rows a page: 10,000 rows stay far under 4 MB
MAX_NAME = 64


@dataclass(frozen=True)
class Window:
    """An organisation and [start_us, end_us) (``end_us`` None: no end)."""

    organisation: str
    start_us: int
    end_us: int | None

    def digest(self) -> str:
        text = f"{self.organisation}\x00{self.start_us}\x00{self.end_us}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_window(
    organisation: str,
    start_us: int | None,
    end_us: int | None,
    violations: list[FieldViolation],
    *,
    start_field: str = "start_time",
    end_field: str = "end_time",
) -> Window:
    """The window of a request, every wrong field a violation (start_us None:
    unset or out of range; out of range is named already)."""
    name = organisation.strip()
    if not name:
        violations.append(FieldViolation("organisation", "is required"))
    elif len(organisation) > MAX_NAME or not organisation.isprintable():
        violations.append(
            FieldViolation("organisation", f"an organisation name: 1 to {MAX_NAME} characters")
        )
    if start_us is None and not any(v.field.startswith(start_field) for v in violations):
        violations.append(FieldViolation(start_field, "is required"))
    if start_us is not None and end_us is not None and end_us < start_us:
        violations.append(FieldViolation(end_field, "must not be before start_time"))
    return Window(name, start_us or 0, end_us)


def page_size(value: int, sizes: tuple[int, int], violations: list[FieldViolation]) -> int:
    """AIP-158: 0 means the default; more than the maximum means the maximum."""
    if value < 0:
        violations.append(FieldViolation("page_size", "must not be negative"))
        return sizes[0]
    return min(value or sizes[0], sizes[1])


@dataclass(frozen=True)
class Cursor:
    """Where a page of a set starts: after ``after``, up to ``upper`` (None:
    a first page, which fixes it at the head)."""

    after: int = 0
    upper: int | None = None


def encode_cursor(kind: str, window: Window, upper: int, after: int) -> str:
    text = f"{kind}1:{upper}:{after}:{window.digest()}"
    return base64.urlsafe_b64encode(text.encode()).decode()


def decode_cursor(kind: str, token: str, window: Window) -> Cursor:
    """The cursor a token carries (a first page's for ""); BAD_PAGE_TOKEN
    for a token this server did not give for this very window."""
    if not token:
        return Cursor()
    try:
        version, upper, after, digest = base64.urlsafe_b64decode(token.encode()).decode().split(":")
        if (
            version != f"{kind}1"
            or not _digits(upper)
            or not _digits(after)
            or int(after) > int(upper)
        ):
            raise ValueError(token)
    except (ValueError, UnicodeError, binascii.Error):
        raise InvalidArgument.field(
            "page_token", "not a token this server gave", reason="BAD_PAGE_TOKEN"
        ) from None
    if digest != window.digest():
        raise InvalidArgument.field(
            "page_token",
            "a token given for another organisation or window",
            reason="BAD_PAGE_TOKEN",
        )
    return Cursor(int(after), int(upper))


def _digits(value: str) -> bool:
    # Within what fits the BIGINT sequence column.
    return 1 <= len(value) <= 18 and all("0" <= char <= "9" for char in value)


def revoke_command(
    organisation: str,
    start_us: int | None,
    end_us: int | None,
    reason: str,
    size: int,
    token: str,
    request_id: str,
    violations: list[FieldViolation],
) -> RevokeRegistrationsBy:
    """The command of one page of a bulk revocation (``RevokeRegistrationsBy``)."""
    if not request_id:
        violations.append(
            FieldViolation("request_id", "is required: it makes each page idempotent")
        )
    window = check_window(organisation, start_us, end_us, violations)
    text = check_text(reason, "reason", 256, violations, required=True)
    rows = page_size(size, ROW_PAGE, violations)
    raise_if(violations)
    cursor = decode_cursor("v", token, window)
    return RevokeRegistrationsBy(
        organisation=window.organisation,
        start_us=window.start_us,
        end_us=window.end_us,
        reason=text,
        page_size=rows,
        after=cursor.after,
        upper=cursor.upper,
        page_key=hashlib.sha256(token.encode()).hexdigest()[:16] if token else "first",
    )


def next_revoke_token(page: RevocationPage) -> str:
    """The token of the page after a revocation's page ("" once done)."""
    if not page.more:
        return ""
    window = Window(page.organisation, page.start_us, page.end_us)
    return encode_cursor("v", window, page.upper, page.after)


@dataclass(frozen=True)
class RegistrationsPage:
    rows: list[RegistrationRow]
    next_page_token: str
    upper: int


class OversightService:
    """The reads: alerts and registrations by organisation (regulators only)."""

    def __init__(self, register: Register) -> None:
        self.register = register

    @property
    def rule(self) -> AlertRule:
        return self.register.rates.rule

    def list_alerts(self, caller: Caller, size: int, token: str) -> tuple[list[AccountAlert], str]:
        require(caller, Action.OVERSEE_ACCOUNTS)
        violations: list[FieldViolation] = []
        limit = page_size(size, ALERT_PAGE, violations)
        raise_if(violations)
        before = _decode_alert_token(token)
        with self.register.db.read() as connection:
            alerts = oversight.alerts_page(connection, before, limit + 1)
        next_token = ""
        if len(alerts) > limit:
            alerts = alerts[:limit]
            next_token = _encode_alert_token(alerts[-1].alert_id)
        return alerts, next_token

    def list_registrations(
        self,
        caller: Caller,
        organisation: str,
        start_us: int | None,
        end_us: int | None,
        size: int,
        token: str,
        violations: list[FieldViolation],
    ) -> RegistrationsPage:
        """One page of what ``organisation`` registered in the window.

        ``violations``: those found in the request already (timestamps out
        of range), reported with the others."""
        require(caller, Action.OVERSEE_ACCOUNTS)
        window = check_window(organisation, start_us, end_us, violations)
        limit = page_size(size, ROW_PAGE, violations)
        raise_if(violations)
        cursor = decode_cursor("l", token, window)
        with self.register.db.read_snapshot() as connection:
            if not oversight.organisation_known(connection, window.organisation):
                raise InvalidArgument.field(
                    "organisation",
                    f"no organisation named {window.organisation!r} is or was known to the "
                    "register",
                    reason="UNKNOWN_ORGANISATION",
                )
            upper = repo.last_sequence(connection) if cursor.upper is None else cursor.upper
            rows = oversight.registrations_page(
                connection,
                window.organisation,
                window.start_us,
                window.end_us,
                cursor.after,
                upper,
                limit + 1,
            )
            more = len(rows) > limit
            rows = rows[:limit]
            listed = oversight.whitelisted_keys(connection, [row.imei_key for row in rows])
            latest = oversight.latest_registrations(connection, [row.imei_key for row in rows])
        rows = [
            replace(
                row,
                on_whitelist=row.imei_key in listed
                and latest.get(row.imei_key, (row.sequence, ""))[0] == row.sequence,
            )
            for row in rows
        ]
        next_token = encode_cursor("l", window, upper, rows[-1].sequence) if more else ""
        return RegistrationsPage(rows, next_token, upper)


def _encode_alert_token(alert_id: int) -> str:
    return base64.urlsafe_b64encode(f"a1:{alert_id}".encode()).decode()


def _decode_alert_token(token: str) -> int | None:
    if not token:
        return None
    try:
        version, alert_id = base64.urlsafe_b64decode(token.encode()).decode().split(":")
        if version != "a1" or not _digits(alert_id):
            raise ValueError(token)
    except (ValueError, UnicodeError, binascii.Error):
        raise InvalidArgument.field(
            "page_token", "not a token this server gave", reason="BAD_PAGE_TOKEN"
        ) from None
    return int(alert_id)

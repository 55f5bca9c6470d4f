"""Reads of the registry: the notification lists and one IMEI's record, as
each caller may see them."""

from __future__ import annotations

import base64
import binascii

from ceir.domain.errors import InvalidArgument
from ceir.domain.identifiers import parse_imei
from ceir.domain.model import Caller, ImeiRecord, Notification
from ceir.domain.permissions import (
    Action,
    blacklist_as_seen,
    change_as_seen,
    require,
    visible_imsi_prefixes,
)
from ceir.storage import repository as repo

from .register import Register

MAX_PAGE = 1_000
DEFAULT_PAGE = 100
# At most this many notifications and exception pairs in an IMEI's record;
# the response says when there are more.
RECORD_NOTIFICATIONS = 100
RECORD_EXCEPTIONS = 100


class RegistryService:
    """Reads of the registry: notification lists and IMEI records. (Its
    mutations are commands, ``ceir.domain.commands``.)"""

    def __init__(self, register: Register) -> None:
        self.register = register

    def list_notifications(
        self, caller: Caller, page_size: int, page_token: str
    ) -> tuple[list[Notification], str]:
        require(caller, Action.LIST_NOTIFICATIONS)
        size = _page_size(page_size)
        after = _decode_token(page_token)
        # An operator lists its own subscribers' entries, by the IMSI itself
        # (as GetImeiRecord does; the stored operator column assumes 2-digit
        # MNCs); regulators every operator's, and entries without an IMSI.
        with self.register.db.read() as connection:
            rows = repo.notifications_page(
                connection, visible_imsi_prefixes(caller), after, size + 1
            )
        token = ""
        if len(rows) > size:
            rows = rows[:size]
            token = _encode_token(rows[-1].imei_key, rows[-1].imsi)
        return rows, token

    def imei_record(
        self, caller: Caller, imei: str, page_size: int = 0, page_token: str = ""
    ) -> ImeiRecord:
        """The IMEI's record with one page of its history (AIP-158), as the
        caller may see it: an operator gets its own subscribers'
        notifications and pairs only, and the IMSIs and MSISDNs of other
        subscribers blanked in the history and the blacklist entry."""
        require(caller, Action.READ_RECORD)
        key = parse_imei(imei, "imei")
        size = _page_size(page_size)
        after = _decode_history_token(page_token, key)
        prefixes = visible_imsi_prefixes(caller)
        with self.register.db.read() as connection:
            registration = repo.registration_of(connection, key)
            blacklist = repo.blacklist_entry(connection, key)
            notifications = repo.notifications_of_imei(
                connection, key, prefixes, RECORD_NOTIFICATIONS + 1
            )
            exceptions = repo.exceptions_of_imei(connection, key, prefixes, RECORD_EXCEPTIONS + 1)
            history = repo.changes_of_imei(connection, key, size + 1, after)
        token = ""
        if len(history) > size:
            history = history[:size]
            token = _encode_history_token(key, history[-1].sequence)
        return ImeiRecord(
            imei_key=key,
            registration=registration,
            blacklist=None if blacklist is None else blacklist_as_seen(caller, blacklist),
            notifications=notifications[:RECORD_NOTIFICATIONS],
            exceptions=exceptions[:RECORD_EXCEPTIONS],
            history=[change_as_seen(caller, change) for change in history],
            notifications_truncated=len(notifications) > RECORD_NOTIFICATIONS,
            exceptions_truncated=len(exceptions) > RECORD_EXCEPTIONS,
            next_page_token=token,
        )


def _page_size(page_size: int) -> int:
    """AIP-158: 0 means the default; more than the maximum means the maximum."""
    if page_size < 0:
        raise InvalidArgument.field("page_size", "must not be negative")
    return min(page_size or DEFAULT_PAGE, MAX_PAGE)


def _encode_history_token(key: int, sequence: int) -> str:
    return base64.urlsafe_b64encode(f"h1:{key}:{sequence}".encode()).decode()


def _decode_history_token(token: str, key: int) -> int:
    """The sequence a history page starts after (0 for the first page).

    The token names the IMEI it pages: another IMEI's token is refused
    rather than silently skipping that IMEI's changes.
    """
    if not token:
        return 0
    try:
        version, token_key, sequence = base64.urlsafe_b64decode(token.encode()).decode().split(":")
        # Within what the server hands out: a 14-digit key and a sequence
        # that fits the BIGINT column.
        if (
            version != "h1"
            or not _ascii_digits(token_key, 1, 14)
            or not _ascii_digits(sequence, 1, 18)
        ):
            raise ValueError(token)
    except (ValueError, UnicodeError, binascii.Error):
        raise InvalidArgument.field(
            "page_token", "not a token this server gave", reason="BAD_PAGE_TOKEN"
        ) from None
    if int(token_key) != key:
        raise InvalidArgument.field(
            "page_token",
            f"a token for IMEI {int(token_key):014d}, not {key:014d}",
            reason="BAD_PAGE_TOKEN",
        )
    return int(sequence)


def _encode_token(key: int, imsi: str) -> str:
    return base64.urlsafe_b64encode(f"v1:{key}:{imsi}".encode()).decode()


def _ascii_digits(value: str, shortest: int, longest: int) -> bool:
    return shortest <= len(value) <= longest and all("0" <= char <= "9" for char in value)


def _decode_token(token: str) -> tuple[int, str] | None:
    if not token:
        return None
    try:
        version, key, imsi = base64.urlsafe_b64decode(token.encode()).decode().split(":")
        # Within what the server hands out: a 14-digit key (a longer one
        # overflows the BIGINT column) and an IMSI of at most 15 digits.
        if version != "v1" or not _ascii_digits(key, 1, 14) or not _ascii_digits(imsi, 0, 15):
            raise ValueError(token)
        return int(key), imsi
    except (ValueError, UnicodeError, binascii.Error):
        raise InvalidArgument.field(
            "page_token", "not a token this server gave", reason="BAD_PAGE_TOKEN"
        ) from None

"""Audited list operations: registration, revocation, stolen reports,
recoveries and pairings. Each runs as one ``Register.mutate`` unit."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import TypeVar

from ceir.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
)
from ceir.domain.identifiers import parse_imei, validate_imsi
from ceir.domain.model import (
    BlacklistCause,
    BlacklistEntry,
    Caller,
    Change,
    ChangeKind,
    DeviceRegistration,
    ExceptionEntry,
    ImeiRecord,
    Notification,
    Registration,
)
from ceir.domain.permissions import (
    Action,
    blacklist_as_seen,
    change_as_seen,
    require,
    require_may_recover,
    require_may_revoke,
    require_own_imsi,
    require_source,
    visible_imsi_prefixes,
)
from ceir.domain.validation import check_text, imei_keys, raise_if
from ceir.storage import repository as repo

from .register import Committed, Register, Replayed, WriteUnit

T = TypeVar("T")
Render = Callable[[Committed[T]], bytes]
MAX_PAGE = 1_000
DEFAULT_PAGE = 100
# At most this many notifications and exception pairs in an IMEI's record;
# the response says when there are more.
RECORD_NOTIFICATIONS = 100
RECORD_EXCEPTIONS = 100


def registered_validly(unit: WriteUnit, key: int) -> bool:
    """True if the key is on the whitelist with an unexpired registration."""
    if key not in unit.state.whitelist:
        return False
    valid_until = unit.state.whitelist[key]
    return valid_until is None or valid_until > unit.now_us


def add_devices(unit: WriteUnit, devices: Sequence[DeviceRegistration]) -> list[Registration]:
    """Whitelist devices (already validated and checked for conflicts)."""
    stored: list[Registration] = []
    resolved: list[tuple[int, str]] = []
    unblocked: list[int] = []
    state = unit.state
    for device in devices:
        device_id = f"D{unit.next_sequence}"
        for key in device.imei_keys:
            unit.add(
                Change(
                    ChangeKind.WHITELIST_ADDED,
                    key,
                    source=device.source,
                    valid_until_us=device.valid_until_us,
                    device_id=device_id,
                )
            )
            # Registering an IMEI ends its notifications and a block that
            # only the missing registration caused.
            notified = state.notified.get(key)
            for imsi in sorted(notified) if notified else ():
                unit.add(Change(ChangeKind.NOTIFICATION_RESOLVED, key, imsi=imsi))
                resolved.append((key, imsi))
            blocked = state.blacklist.get(key)
            if blocked is not None and blocked[0] is BlacklistCause.NOTIFICATION_EXPIRED:
                unit.add(Change(ChangeKind.BLACKLIST_UNBLOCKED, key))
                unblocked.append(key)
        stored.append(
            Registration(
                device_id=device_id,
                imei_keys=device.imei_keys,
                source=device.source,
                reference=device.reference,
                valid_until_us=device.valid_until_us,
                brand=device.brand,
                model=device.model,
                registered_by=unit.actor,
                registered_at_us=unit.now_us,
            )
        )
    # Under the write lock the lists hold exactly the whitelist's rows: only
    # IMEIs on them have an old row to replace.
    whitelist = state.whitelist
    replaced = [key for device in devices for key in device.imei_keys if key in whitelist]
    repo.delete_whitelist(unit.session, replaced)
    repo.insert_devices(unit.session, stored)
    repo.delete_notifications(unit.session, resolved)
    repo.delete_blacklist(unit.session, unblocked)
    return stored


class RegistryService:
    def __init__(self, register: Register) -> None:
        self.register = register

    def register_device(
        self,
        caller: Caller,
        request_id: str,
        fingerprint: str,
        device: DeviceRegistration,
        render: Render[Registration],
    ) -> Committed[Registration] | Replayed:
        require(caller, Action.REGISTER)
        require_source(caller, device.source)

        def work(unit: WriteUnit) -> Registration:
            taken = [key for key in device.imei_keys if registered_validly(unit, key)]
            if taken:
                raise AlreadyExists(
                    f"already registered: {', '.join(f'{k:014d}' for k in taken)}",
                    reason="IMEI_ALREADY_REGISTERED",
                    violations=[
                        FieldViolation(
                            f"device.imeis[{device.imei_keys.index(k)}]",
                            f"IMEI {k:014d} is already registered",
                        )
                        for k in taken
                    ],
                )
            return add_devices(unit, [device])[0]

        return self.register.mutate(caller, "RegisterDevice", request_id, fingerprint, work, render)

    def revoke(
        self,
        caller: Caller,
        request_id: str,
        fingerprint: str,
        imeis: list[str],
        reason: str,
        render: Render[list[int]],
    ) -> Committed[list[int]] | Replayed:
        require(caller, Action.REVOKE)
        violations: list[FieldViolation] = []
        keys = imei_keys(imeis, "imeis", violations, limit=1_000)
        check_text(reason, "reason", 256, violations, required=True)
        raise_if(violations)

        def work(unit: WriteUnit) -> list[int]:
            missing = [k for k in keys if k not in unit.state.whitelist]
            if missing:
                raise NotFound(
                    f"not on the whitelist: {', '.join(f'{k:014d}' for k in missing)}",
                    reason="IMEI_NOT_REGISTERED",
                )
            for key in keys:
                registration = repo.registration_of(unit.session, key)
                if registration is not None:
                    require_may_revoke(caller, key, registration)
            for key in keys:
                unit.add(Change(ChangeKind.WHITELIST_REMOVED, key))
            repo.delete_whitelist(unit.session, keys)
            return keys

        return self.register.mutate(
            caller, "RevokeRegistration", request_id, fingerprint, work, render
        )

    def report_stolen(
        self,
        caller: Caller,
        request_id: str,
        fingerprint: str,
        imeis: list[str],
        police_report: str,
        subscriber_imsi: str,
        render: Render[list[int]],
    ) -> Committed[list[int]] | Replayed:
        require(caller, Action.REPORT_STOLEN)
        violations: list[FieldViolation] = []
        keys = imei_keys(imeis, "imeis", violations, limit=8)
        report = check_text(police_report, "police_report", 128, violations, required=True)
        if not subscriber_imsi:
            violations.append(
                FieldViolation(
                    "subscriber_imsi", "is required: the IMSI of the subscriber whose device it is"
                )
            )
        else:
            try:
                validate_imsi(subscriber_imsi, "subscriber_imsi")
            except InvalidArgument as error:
                violations.extend(error.violations)
        raise_if(violations)
        # An operator reports for its own subscribers; Kominfo for any.
        require_own_imsi(caller, subscriber_imsi, "subscriber_imsi")

        def work(unit: WriteUnit) -> list[int]:
            blocked = [
                k for k in keys if unit.state.blacklist.get(k, (None,))[0] is BlacklistCause.STOLEN
            ]
            if blocked:
                raise AlreadyExists(
                    f"already reported stolen: {', '.join(f'{k:014d}' for k in blocked)}",
                    reason="IMEI_ALREADY_BLOCKED",
                )
            # A stolen report supersedes a block for a missing registration.
            superseded = [k for k in keys if k in unit.state.blacklist]
            for key in superseded:
                unit.add(Change(ChangeKind.BLACKLIST_UNBLOCKED, key))
            repo.delete_blacklist(unit.session, superseded)
            for key in keys:
                unit.add(
                    Change(ChangeKind.BLACKLIST_BLOCKED, key, blacklist_cause=BlacklistCause.STOLEN)
                )
            repo.insert_blacklist(
                unit.session,
                [
                    BlacklistEntry(
                        k, BlacklistCause.STOLEN, report, caller.name, unit.now_us, subscriber_imsi
                    )
                    for k in keys
                ],
            )
            return keys

        return self.register.mutate(caller, "ReportStolen", request_id, fingerprint, work, render)

    def report_recovered(
        self,
        caller: Caller,
        request_id: str,
        fingerprint: str,
        imeis: list[str],
        police_report: str,
        render: Render[list[int]],
    ) -> Committed[list[int]] | Replayed:
        require(caller, Action.REPORT_RECOVERED)
        violations: list[FieldViolation] = []
        keys = imei_keys(imeis, "imeis", violations, limit=8)
        check_text(police_report, "police_report", 128, violations, required=True)
        raise_if(violations)

        def work(unit: WriteUnit) -> list[int]:
            not_stolen = [
                k
                for k in keys
                if unit.state.blacklist.get(k, (None,))[0] is not BlacklistCause.STOLEN
            ]
            if not_stolen:
                raise FailedPrecondition(
                    f"not reported stolen: {', '.join(f'{k:014d}' for k in not_stolen)}",
                    reason="IMEI_NOT_STOLEN",
                )
            for key in keys:
                entry = repo.blacklist_entry(unit.session, key)
                if entry is not None:
                    require_may_recover(caller, key, entry)
            for key in keys:
                unit.add(Change(ChangeKind.BLACKLIST_UNBLOCKED, key))
            repo.delete_blacklist(unit.session, keys)
            return keys

        return self.register.mutate(
            caller, "ReportRecovered", request_id, fingerprint, work, render
        )

    def add_exception(
        self,
        caller: Caller,
        request_id: str,
        fingerprint: str,
        imei: str,
        imsi: str,
        reason: str,
        render: Render[tuple[int, str]],
    ) -> Committed[tuple[int, str]] | Replayed:
        require(caller, Action.MANAGE_EXCEPTIONS)
        key, imsi = _pair(imei, imsi)
        violations: list[FieldViolation] = []
        reason = check_text(reason, "reason", 256, violations)
        raise_if(violations)
        require_own_imsi(caller, imsi, "imsi")

        def work(unit: WriteUnit) -> tuple[int, str]:
            if (key, imsi) in unit.state.exceptions:
                raise AlreadyExists(
                    f"IMEI {key:014d} is already paired with IMSI {imsi}", reason="PAIR_EXISTS"
                )
            unit.add(Change(ChangeKind.EXCEPTION_ADDED, key, imsi=imsi))
            repo.insert_exception(
                unit.session, ExceptionEntry(key, imsi, reason, caller.name), unit.now_us
            )
            return key, imsi

        return self.register.mutate(caller, "AddException", request_id, fingerprint, work, render)

    def remove_exception(
        self,
        caller: Caller,
        request_id: str,
        fingerprint: str,
        imei: str,
        imsi: str,
        render: Render[int],
    ) -> Committed[int] | Replayed:
        require(caller, Action.MANAGE_EXCEPTIONS)
        key, imsi = _pair(imei, imsi)
        require_own_imsi(caller, imsi, "imsi")

        def work(unit: WriteUnit) -> int:
            if (key, imsi) not in unit.state.exceptions:
                raise NotFound(
                    f"IMEI {key:014d} is not paired with IMSI {imsi}", reason="PAIR_NOT_FOUND"
                )
            unit.add(Change(ChangeKind.EXCEPTION_REMOVED, key, imsi=imsi))
            repo.delete_exception(unit.session, key, imsi)
            return unit.sequence

        return self.register.mutate(
            caller, "RemoveException", request_id, fingerprint, work, render
        )

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


def _pair(imei: str, imsi: str) -> tuple[int, str]:
    violations: list[FieldViolation] = []
    key = 0
    for check in (lambda: parse_imei(imei, "imei"), lambda: validate_imsi(imsi, "imsi")):
        try:
            value = check()
            if isinstance(value, int):
                key = value
        except InvalidArgument as error:
            violations.extend(error.violations)
    raise_if(violations)
    return key, imsi


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

"""Equipment checks: decided from the in-memory lists, with the notification
list written when a check finds an unregistered device."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ceir.domain.errors import FieldViolation, InvalidArgument
from ceir.domain.identifiers import (
    home_mcc_mnc,
    is_imsi,
    msisdn_digits,
    validate_imsi,
    validate_msisdn,
)
from ceir.domain.lists import Effect, GraceExpired, NewNotification
from ceir.domain.model import (
    BlacklistCause,
    BlacklistEntry,
    Caller,
    Change,
    ChangeKind,
    Decision,
    Notification,
)
from ceir.domain.permissions import Action, require
from ceir.storage import repository as repo

from .register import Register, WriteUnit

MAX_BATCH = 1_000


@dataclass(frozen=True)
class CheckQuery:
    imei: str
    imsi: str = ""
    msisdn: str = ""


def validate_query(query: CheckQuery, prefix: str, violations: list[FieldViolation]) -> CheckQuery:
    """Check a query's fields: an empty IMEI, a bad IMSI or MSISDN is an error
    (a malformed IMEI is not: it is answered BLACKLISTED)."""
    if not query.imei:
        violations.append(FieldViolation(f"{prefix}imei", "an IMEI is required"))
    elif len(query.imei) > 64:
        violations.append(FieldViolation(f"{prefix}imei", "at most 64 characters"))
    msisdn = query.msisdn
    try:
        if query.imsi:
            validate_imsi(query.imsi, f"{prefix}imsi")
        if msisdn:
            msisdn = validate_msisdn(msisdn, f"{prefix}msisdn")
    except InvalidArgument as error:
        violations.extend(error.violations)
    return CheckQuery(query.imei, query.imsi, msisdn)


def _checked_fields(query: CheckQuery) -> tuple[str, str, str] | None:
    """(IMEI, IMSI, MSISDN digits) of a query whose fields are all right, or
    None: then ``validate_query`` names what is wrong. The common case of a
    batch, without building field names or a new query."""
    imei, imsi, msisdn = query.imei, query.imsi, query.msisdn
    if not imei or len(imei) > 64 or (imsi and not is_imsi(imsi)):
        return None
    if msisdn:
        digits = msisdn_digits(msisdn)
        return None if digits is None else (imei, imsi, digits)
    return imei, imsi, msisdn


class CheckService:
    def __init__(self, register: Register) -> None:
        self.register = register

    def authorize(self, caller: Caller) -> None:
        """Refuse a caller that may not check at all (before a stream starts)."""
        require(caller, Action.CHECK)

    def check(self, caller: Caller, query: CheckQuery) -> Decision:
        """Decide one query: a network's real-time check."""
        require(caller, Action.CHECK)
        fields = _checked_fields(query)
        if fields is not None:
            decision, effect = self.register.state.decide(*fields, self.register.clock.now_us())
            if effect is None:  # nothing to write: the common case
                return decision
        # A wrong field, or a first sight to record: the general path (deciding
        # an unregistered device changes nothing, so deciding again is safe).
        return self.check_many(caller, [query], batch=False)[0]

    def check_many(
        self, caller: Caller, queries: Sequence[CheckQuery], *, batch: bool = True
    ) -> list[Decision]:
        """Decide up to MAX_BATCH queries, in order."""
        require(caller, Action.CHECK)
        if batch and not 1 <= len(queries) <= MAX_BATCH:
            raise InvalidArgument.field("checks", f"1 to {MAX_BATCH} checks, got {len(queries)}")
        violations: list[FieldViolation] = []
        valid: list[tuple[str, str, str]] = []
        for index, query in enumerate(queries):
            fields = _checked_fields(query)
            if fields is None:
                checked = validate_query(query, f"checks[{index}]." if batch else "", violations)
                fields = (checked.imei, checked.imsi, checked.msisdn)
            valid.append(fields)
        if violations:
            raise InvalidArgument(
                "; ".join(f"{v.field}: {v.description}" for v in violations),
                reason="INVALID_CHECK",
                violations=violations,
            )
        state = self.register.state
        now_us = self.register.clock.now_us()
        decisions: list[Decision] = []
        pending: list[int] = []
        effects: list[Effect] = []
        decide = state.decide
        for index, (imei, imsi, msisdn) in enumerate(valid):
            decision, effect = decide(imei, imsi, msisdn, now_us)
            decisions.append(decision)
            if effect is not None:
                pending.append(index)
                effects.append(effect)
        if effects:
            self.register.write(caller.name, lambda unit: _record(unit, effects))
            # Decide again against the lists that now hold the effects: the
            # answers then carry the new sequence and the block date stored.
            state = self.register.state
            for index in pending:
                decisions[index] = state.decide(*valid[index], now_us)[0]
        return decisions


def _record(unit: WriteUnit, effects: Sequence[Effect]) -> None:
    """Write the checks' effects, skipping what another writer did meanwhile."""
    state = unit.state
    new: dict[tuple[int, str], Notification] = {}
    new_blocks: dict[int, int] = {}  # block dates given in this unit, by IMEI
    expired: dict[int, int] = {}
    for effect in effects:
        key = effect.imei_key
        if isinstance(effect, GraceExpired):
            if key not in state.blacklist:
                expired[key] = effect.block_date_us
            continue
        assert isinstance(effect, NewNotification)
        if effect.imsi in state.notified.get(key, {}) or (key, effect.imsi) in new:
            continue
        block = state.block_date_of(key) or new_blocks.setdefault(key, effect.block_date_us)
        new[(key, effect.imsi)] = Notification(
            imei_key=key,
            imsi=effect.imsi,
            msisdn=effect.msisdn,
            operator_mcc_mnc=home_mcc_mnc(effect.imsi) if effect.imsi else "",
            first_seen_us=unit.now_us,
            block_date_us=block,
        )
    for notification in new.values():
        unit.add(
            Change(
                ChangeKind.NOTIFICATION_NEW,
                notification.imei_key,
                imsi=notification.imsi,
                msisdn=notification.msisdn,
                block_date_us=notification.block_date_us,
                operator_mcc_mnc=notification.operator_mcc_mnc,
            )
        )
    repo.insert_notifications(unit.session, list(new.values()))
    blocked: list[BlacklistEntry] = []
    for key, block_date in expired.items():
        pairs = sorted(state.notified.get(key, {}))
        for imsi in pairs:
            unit.add(Change(ChangeKind.NOTIFICATION_BLACKLISTED, key, imsi=imsi))
        repo.delete_notifications(unit.session, [(key, imsi) for imsi in pairs])
        unit.add(
            Change(
                ChangeKind.BLACKLIST_BLOCKED,
                key,
                blacklist_cause=BlacklistCause.NOTIFICATION_EXPIRED,
                block_date_us=block_date,
            )
        )
        blocked.append(
            BlacklistEntry(key, BlacklistCause.NOTIFICATION_EXPIRED, "", "ceir", unit.now_us)
        )
    repo.insert_blacklist(unit.session, blocked, list(expired.values()))

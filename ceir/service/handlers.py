"""One handler per command: the rules of each mutation, as changes.

A handler checks the command's preconditions against the unit's lists and
records, and emits the ``Change``s that carry it out, each with everything
the list row or device record it writes will hold (who acted, the reference,
the police report, the reason, the subscriber and its salt). It writes no
table: the pipeline (``Register.execute``) stores the changes, projects them
into the tables (``ceir.storage.projection``) and applies them to the
in-memory lists, so the tables are always the replay of the log.

Each ``Handler`` has two steps. ``authorize`` runs before the transaction,
with the rules that need only the caller and the command (which sources an
organisation registers, whose subscribers an operator acts for); the
pipeline has checked the command's ``action`` already. ``handle`` runs
inside the write transaction, under the write lock, where the lists are
exact: preconditions, the rules that depend on a stored entry (who may
revoke a registration or lift a report), then the changes.

The register's own changes (a registration that ends a notification, a
grace period that runs out) carry a short fixed ``reason`` (``REASONS``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

import numpy as np

from ceir.audit.commitment import new_salt
from ceir.domain.commands import (
    AddException,
    Command,
    ImportChunk,
    RecordCheckEffects,
    RecordCustodyStep,
    RegisterDevice,
    RemoveException,
    ReportRecovered,
    ReportStolen,
    ResolveComplaint,
    RevokeRegistration,
    RevokeRegistrationsBy,
    UpdatePolicy,
    WhitelistSibling,
)
from ceir.domain.custody_steps import custody_change
from ceir.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    NotFound,
    PermissionDenied,
)
from ceir.domain.identifiers import home_mcc_mnc
from ceir.domain.lists import MAX_NOTIFICATIONS_PER_IMEI, GraceExpired, ListState, NewNotification
from ceir.domain.model import (
    BlacklistCause,
    Caller,
    Change,
    ChangeKind,
    DeviceRegistration,
    ImportRejection,
    ImportResult,
    Phase,
    Policy,
    Registration,
    RegistrationSource,
)
from ceir.domain.permissions import (
    may_notify,
    require,
    require_may_recover,
    require_may_revoke,
    require_own_imsi,
    require_source,
    revokes_any,
)

from .oversight_revoke import authorize_revoke_by, revoke_by
from .unit import WriteUnit

__all__ = ["HANDLERS", "REASONS", "Handler", "handler_for", "may_record", "registered_validly"]

C = TypeVar("C", bound=Command[Any])
R = TypeVar("R")

# The reasons the register gives its own changes.
REASONS = {
    "registered": "registered",  # a registration ends a notification or an expired block
    "superseded": "superseded by stolen report",  # a stolen report replaces an expired block
    "grace_over": "grace period over",  # a notification's grace period ran out
    "recovered": "recovered",  # a stolen report lifted
}


@dataclass(frozen=True)
class Handler(Generic[C, R]):
    """The two steps of one command type (see the module's docstring)."""

    authorize: Callable[[Caller, C], None]
    handle: Callable[[C, WriteUnit], R]


def _anyone(caller: Caller, command: Any) -> None:
    """No rule beyond the command's action."""


# --- registrations ----------------------------------------------------------------------


def registered_validly(unit: WriteUnit, key: int) -> bool:
    """True if the key is on the whitelist with an unexpired registration."""
    state = unit.state
    if not state.is_whitelisted(key):
        return False
    valid_until = state.valid_until_of(key)
    return valid_until is None or valid_until > unit.now_us


def add_devices(unit: WriteUnit, devices: Sequence[DeviceRegistration]) -> list[str]:
    """Whitelist devices (already validated and checked for conflicts); their ids."""
    stored: list[str] = []
    state = unit.state
    notified_keys = state.notified
    added = unit.stamped(Change(ChangeKind.WHITELIST_ADDED))
    for device in devices:
        device_id = f"D{unit.next_sequence}"
        keys = device.imei_keys
        for key in keys:
            # What Change(WHITELIST_ADDED, key, ...) holds, built from a
            # stamped template: an import adds one per IMEI.
            fields = added.copy()
            fields["imei_key"] = key
            fields["source"] = device.source
            fields["valid_until_us"] = device.valid_until_us
            fields["device_id"] = device_id
            fields["reference"] = device.reference
            fields["brand"] = device.brand
            fields["model"] = device.model
            fields["device_imei_keys"] = keys
            unit.add_stamped(fields)
            # Registering an IMEI ends its notifications and a block that
            # only the missing registration caused.
            notified = notified_keys.get(key)
            for imsi in sorted(notified) if notified else ():
                unit.add(
                    _notification_end(
                        state, ChangeKind.NOTIFICATION_RESOLVED, key, imsi, REASONS["registered"]
                    )
                )
            blocked = state.blacklist_entry_of(key)
            if blocked is not None and blocked[0] is BlacklistCause.NOTIFICATION_EXPIRED:
                unit.add(Change(ChangeKind.BLACKLIST_UNBLOCKED, key, reason=REASONS["registered"]))
        stored.append(device_id)
    return stored


def _registration(unit: WriteUnit, device: DeviceRegistration, device_id: str) -> Registration:
    return Registration(
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


def _authorize_register(caller: Caller, command: RegisterDevice) -> None:
    require_source(caller, command.device.source)


def _register_device(command: RegisterDevice, unit: WriteUnit) -> Registration:
    device = command.device
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
    return _registration(unit, device, add_devices(unit, [device])[0])


def _revoke(command: RevokeRegistration, unit: WriteUnit) -> tuple[int, ...]:
    keys = command.imei_keys
    missing = [k for k in keys if not unit.state.is_whitelisted(k)]
    if missing:
        raise NotFound(
            f"not on the whitelist: {', '.join(f'{k:014d}' for k in missing)}",
            reason="IMEI_NOT_REGISTERED",
        )
    # Kemenperin may revoke any registration: its bulk revocations (the
    # range cure) skip reading each IMEI's record, most of their cost.
    if not revokes_any(unit.caller):
        for key in keys:
            registration = unit.records.registration_of(key)
            if registration is not None:
                require_may_revoke(unit.caller, key, registration)
    for key in keys:
        unit.add(Change(ChangeKind.WHITELIST_REMOVED, key, reason=command.reason))
    return keys


def _import_chunk(command: ImportChunk, unit: WriteUnit) -> ImportResult:
    """The rows in order: a source the caller may not register, or an IMEI
    taken (registered and unexpired, or claimed by an earlier row of the
    chunk), rejects a row; the others are whitelisted."""
    result = ImportResult(
        rows_received=len(command.rows) + len(command.rejected),
        rejections=list(command.rejected),
    )
    taken = _registered_validly(unit, [k for row in command.rows for k in row.device.imei_keys])
    refusals: dict[RegistrationSource, str | None] = {}  # the caller's answer per source
    accepted: list[DeviceRegistration] = []
    claimed: set[int] = set()
    for row in command.rows:
        device = row.device
        source = device.source
        if source not in refusals:
            refusals[source] = _source_refusal(unit.caller, source)
        refusal = refusals[source]
        if refusal is not None:
            result.rejections.append(ImportRejection(row.row, "device.source", refusal))
            continue
        keys = device.imei_keys
        conflict = next((k for k in keys if k in claimed or k in taken), None)
        if conflict is not None:
            result.rejections.append(
                ImportRejection(
                    row.row,
                    f"device.imeis[{keys.index(conflict)}]",
                    f"IMEI {conflict:014d} is already registered",
                )
            )
            continue
        claimed.update(keys)
        accepted.append(device)
    add_devices(unit, accepted)
    result.rows_accepted = len(accepted)
    result.rows_rejected = len(result.rejections)
    result.rejections.sort(key=lambda r: r.row)
    result.sequence = unit.sequence
    return result


def _registered_validly(unit: WriteUnit, keys: list[int]) -> set[int]:
    """Those of ``keys`` registered with an unexpired registration (the
    whitelist asked once for all of them)."""
    if not keys:
        return set()
    listed = unit.state.whitelisted(np.array(keys, dtype=np.uint64))
    return {
        k for k in np.array(keys, dtype=np.int64)[listed].tolist() if registered_validly(unit, k)
    }


def _source_refusal(caller: Caller, source: RegistrationSource) -> str | None:
    """Why the caller may not register devices of this source (None: it may),
    in the same words as ``RegisterDevice``."""
    try:
        require_source(caller, source)
    except PermissionDenied as error:
        return error.message
    return None


# --- stolen reports -----------------------------------------------------------------------


def _authorize_stolen(caller: Caller, command: ReportStolen) -> None:
    # An operator reports for its own subscribers; Kominfo for any.
    require_own_imsi(caller, command.subscriber_imsi, "subscriber_imsi")


def _report_stolen(command: ReportStolen, unit: WriteUnit) -> tuple[int, ...]:
    keys = command.imei_keys
    entries = {k: unit.state.blacklist_entry_of(k) for k in keys}
    blocked = [k for k in keys if (entries[k] or (None,))[0] is BlacklistCause.STOLEN]
    if blocked:
        raise AlreadyExists(
            f"already reported stolen: {', '.join(f'{k:014d}' for k in blocked)}",
            reason="IMEI_ALREADY_BLOCKED",
        )
    # A stolen report supersedes a block for a missing registration.
    for key in (k for k in keys if entries[k] is not None):
        unit.add(Change(ChangeKind.BLACKLIST_UNBLOCKED, key, reason=REASONS["superseded"]))
    for key in keys:
        unit.add(
            Change(
                ChangeKind.BLACKLIST_BLOCKED,
                key,
                blacklist_cause=BlacklistCause.STOLEN,
                police_report=command.police_report,
                imsi=command.subscriber_imsi,
                subscriber_salt=new_salt(),
            )
        )
    return keys


def _report_recovered(command: ReportRecovered, unit: WriteUnit) -> tuple[int, ...]:
    keys = command.imei_keys
    entries = {k: unit.state.blacklist_entry_of(k) for k in keys}
    not_stolen = [k for k in keys if (entries[k] or (None,))[0] is not BlacklistCause.STOLEN]
    if not_stolen:
        raise FailedPrecondition(
            f"not reported stolen: {', '.join(f'{k:014d}' for k in not_stolen)}",
            reason="IMEI_NOT_STOLEN",
        )
    for key in keys if not command.case_id else ():  # a case authorised its own steps
        entry = unit.records.blacklist_entry(key)
        if entry is not None:
            require_may_recover(unit.caller, key, entry)
    for key in keys:
        unit.add(
            Change(
                ChangeKind.BLACKLIST_UNBLOCKED,
                key,
                police_report=command.police_report,
                reason=REASONS["recovered"],
            )
        )
    return keys


# --- exception pairs ----------------------------------------------------------------------


def _authorize_pair(caller: Caller, command: AddException | RemoveException) -> None:
    require_own_imsi(caller, command.imsi, "imsi")


def _add_exception(command: AddException, unit: WriteUnit) -> tuple[int, str]:
    key, imsi = command.imei_key, command.imsi
    if (key, imsi) in unit.state.exceptions:
        raise AlreadyExists(
            f"IMEI {key:014d} is already paired with IMSI {imsi}", reason="PAIR_EXISTS"
        )
    unit.add(
        Change(
            ChangeKind.EXCEPTION_ADDED,
            key,
            imsi=imsi,
            reason=command.reason,
            subscriber_salt=new_salt(),
        )
    )
    return key, imsi


def _remove_exception(command: RemoveException, unit: WriteUnit) -> None:
    key, imsi = command.imei_key, command.imsi
    if (key, imsi) not in unit.state.exceptions:
        raise NotFound(f"IMEI {key:014d} is not paired with IMSI {imsi}", reason="PAIR_NOT_FOUND")
    # The pair's own salt: the end of the row commits to what its start did.
    salt = unit.state.exception_salts.get((key, imsi), b"")
    unit.add(Change(ChangeKind.EXCEPTION_REMOVED, key, imsi=imsi, subscriber_salt=salt))


# --- policy -------------------------------------------------------------------------------


def _update_policy(command: UpdatePolicy, unit: WriteUnit) -> Policy:
    current = unit.state.policy
    policy = replace(
        current,
        phase=Phase(command.phase if command.phase is not None else current.phase),
        grace_days=_given(command.grace_days, current.grace_days),
        clone_threshold=_given(command.clone_threshold, current.clone_threshold),
        clone_window_seconds=_given(command.clone_window_seconds, current.clone_window_seconds),
        updated_at_us=unit.now_us,
        updated_by=unit.actor,
    )
    unit.add(Change(ChangeKind.POLICY_CHANGED, policy=policy))
    return policy


def _given(value: int | None, current: int) -> int:
    return current if value is None else value


# --- what checks record -------------------------------------------------------------------


def may_record(caller: Caller, effect: NewNotification | GraceExpired) -> bool:
    """Whether this caller's check may leave this effect (see ``may_notify``)."""
    return isinstance(effect, GraceExpired) or may_notify(caller, effect.imsi)


def _record_check_effects(command: RecordCheckEffects, unit: WriteUnit) -> int:
    """Decide the checks again and emit the effects they still call for.

    The unit holds the write lock and its lists have caught up with the
    database's head, so a registration, pairing, block or notification that
    committed after the check decided is seen here, and the effect it makes
    void is dropped. Returns the time the checks were decided at.
    """
    state = unit.state
    caller = unit.caller
    now_us = unit.now_us
    new: dict[tuple[int, str], Change] = {}
    added: dict[int, int] = {}  # pairs notified in this unit, by IMEI
    expired: dict[int, int] = {}
    for imei, imsi, msisdn in command.checks:
        effect = state.decide(imei, imsi, msisdn, now_us)[1]
        if effect is None or not may_record(caller, effect):
            continue
        key = effect.imei_key
        if isinstance(effect, GraceExpired):
            expired[key] = effect.block_date_us
            continue
        # The lists do not hold this unit's own notifications yet.
        if (key, effect.imsi) in new:
            continue
        if state.notifications_of(key) + added.get(key, 0) >= MAX_NOTIFICATIONS_PER_IMEI:
            continue
        added[key] = added.get(key, 0) + 1
        # Every check of this IMEI decided at the same time against the same
        # lists, so they all carry the same block date.
        new[(key, effect.imsi)] = Change(
            ChangeKind.NOTIFICATION_NEW,
            key,
            imsi=effect.imsi,
            msisdn=effect.msisdn,
            block_date_us=effect.block_date_us,
            # The checking operator's own code (it notifies only its own
            # subscribers): right for 3-digit MNCs too, which the IMSI alone
            # cannot tell.
            operator_mcc_mnc=caller.mcc_mnc_of(effect.imsi) or home_mcc_mnc(effect.imsi),
            # A pair notified already keeps its salt (and so its commitment).
            subscriber_salt=state.notification_salts.get((key, effect.imsi)) or new_salt(),
        )
    for change in new.values():
        unit.add(change)
    for key, block_date in expired.items():
        for imsi in sorted(state.notified.get(key, {})):
            unit.add(
                _notification_end(
                    state, ChangeKind.NOTIFICATION_BLACKLISTED, key, imsi, REASONS["grace_over"]
                )
            )
        unit.add(
            Change(
                ChangeKind.BLACKLIST_BLOCKED,
                key,
                blacklist_cause=BlacklistCause.NOTIFICATION_EXPIRED,
                block_date_us=block_date,
                reason=REASONS["grace_over"],
            )
        )
    return now_us


def _notification_end(
    state: ListState, kind: ChangeKind, key: int, imsi: str, reason: str
) -> Change:
    """The change that ends a notified pair: its subscriber and salt as the
    pair's start gave them, so the two commit to the same subscriber."""
    return Change(
        kind,
        key,
        imsi=imsi,
        msisdn=state.msisdns.get((key, imsi), ""),
        subscriber_salt=state.notification_salts.get((key, imsi), b""),
        reason=reason,
    )


# --- custody -----------------------------------------------------------------------------


def _record_custody_step(command: RecordCustodyStep, unit: WriteUnit) -> int:
    """One leaf, no list row (``ceir.domain.custody_steps`` gives its one shape)."""
    unit.add(custody_change(command.step, command.version, command.reference, unit.actor))
    return unit.sequence


# --- complaint resolutions --------------------------------------------------------------


_SERIALS = 1_000_000  # a 14-digit key is an 8-digit TAC and a 6-digit serial


def _whitelist_sibling(command: WhitelistSibling, unit: WriteUnit) -> Registration:
    """The dead slot gets the registered slot's source, brand, model and
    expiry, as a device of its own (same change kinds as any registration)."""
    sibling, registered = command.imei_key, command.registered_key
    if sibling == registered:
        raise FailedPrecondition(
            f"IMEI {sibling:014d} cannot be its own sibling", reason="SAME_IMEI"
        )
    if not registered_validly(unit, registered):
        raise FailedPrecondition(
            f"the registered slot {registered:014d} is not validly registered: a sibling "
            "takes its registration from it",
            reason="SIBLING_NOT_REGISTERED",
            violations=[
                FieldViolation("whitelist_sibling.registered_imei", "not validly registered")
            ],
        )
    if registered_validly(unit, sibling):
        raise AlreadyExists(
            f"IMEI {sibling:014d} is already registered",
            reason="IMEI_ALREADY_REGISTERED",
            violations=[FieldViolation("whitelist_sibling.imei", "already registered")],
        )
    record = unit.records.registration_of(registered)
    if record is None:  # listed but without a record: nothing to copy from
        raise FailedPrecondition(
            f"no device record for {registered:014d}", reason="SIBLING_NOT_REGISTERED"
        )
    # A desk's word (the box) is the evidence, so the claim is held to what a
    # real dead second slot looks like: one model's TAC for both slots, and a
    # registration that holds the one slot the network saw. Otherwise any
    # desk could whitelist any IMEI by naming some registered phone.
    if sibling // _SERIALS != registered // _SERIALS:
        raise FailedPrecondition(
            f"IMEI {sibling:014d} has TAC {sibling // _SERIALS:08d}, the registered slot "
            f"{registered // _SERIALS:08d}: the slots of one phone share its TAC",
            reason="SIBLING_TAC_DIFFERS",
            violations=[FieldViolation("whitelist_sibling.imei", "another TAC")],
        )
    if len(record.imei_keys) != 1:
        raise FailedPrecondition(
            f"the registration of {registered:014d} already holds "
            f"{len(record.imei_keys)} slots: no slot of it is left unregistered",
            reason="SIBLING_NOT_SINGLE_SLOT",
            violations=[
                FieldViolation("whitelist_sibling.registered_imei", "not a one-slot registration")
            ],
        )
    device = DeviceRegistration(
        imei_keys=(sibling,),
        source=record.source,
        reference=command.reference,
        valid_until_us=record.valid_until_us,
        brand=record.brand,
        model=record.model,
    )
    return _registration(unit, device, add_devices(unit, [device])[0])


def _authorize_resolution(caller: Caller, command: ResolveComplaint) -> None:
    """The inner operation's own rules: its action, then its handler's."""
    inner = command.inner
    if inner is not None:
        require(caller, inner.action)
        handler_for(inner).authorize(caller, inner)


def _resolve_complaint(command: ResolveComplaint, unit: WriteUnit) -> Any:
    inner = command.inner
    value = None if inner is None else handler_for(inner).handle(inner, unit)
    # For the complaint's step, written in this transaction after the changes.
    command.caused[:] = [change.sequence for change in unit.changes]
    return value


# --- the table ----------------------------------------------------------------------------

HANDLERS: dict[type[Command[Any]], Handler[Any, Any]] = {
    RegisterDevice: Handler(_authorize_register, _register_device),
    RevokeRegistration: Handler(_anyone, _revoke),
    ImportChunk: Handler(_anyone, _import_chunk),
    ReportStolen: Handler(_authorize_stolen, _report_stolen),
    ReportRecovered: Handler(_anyone, _report_recovered),
    AddException: Handler(_authorize_pair, _add_exception),
    RemoveException: Handler(_authorize_pair, _remove_exception),
    UpdatePolicy: Handler(_anyone, _update_policy),
    RecordCheckEffects: Handler(_anyone, _record_check_effects),
    RecordCustodyStep: Handler(_anyone, _record_custody_step),
    WhitelistSibling: Handler(_anyone, _whitelist_sibling),
    ResolveComplaint: Handler(_authorize_resolution, _resolve_complaint),
    RevokeRegistrationsBy: Handler(authorize_revoke_by, revoke_by),
}


def handler_for(command: Command[R]) -> Handler[Any, R]:
    """The handler of the command's type."""
    handler = HANDLERS.get(type(command))
    if handler is None:
        raise TypeError(f"no handler for {type(command).__name__}")
    return handler

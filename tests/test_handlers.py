"""Each command's handler against a unit of work held in memory.

No database and no server: the lists are a ``ListState`` and the records a
``ProjectedRows``, both fed with the changes each handler emits, as the
write pipeline feeds the tables. A handler must check its preconditions,
emit changes carrying everything their rows hold (who acted, the reference,
the police report, the reason, the subscriber and its salt), and emit
nothing when it refuses. The real contract, through servers and databases,
is in the other tests.
"""

from __future__ import annotations

from typing import Any, TypeVar

import pytest

from ceir.audit.commitment import SALT_BYTES
from ceir.domain.commands import (
    AddException,
    Command,
    ImportChunk,
    ImportRow,
    RecordCheckEffects,
    RegisterDevice,
    RemoveException,
    ReportRecovered,
    ReportStolen,
    RevokeRegistration,
    UpdatePolicy,
)
from ceir.domain.errors import (
    AlreadyExists,
    CeirError,
    FailedPrecondition,
    NotFound,
    PermissionDenied,
)
from ceir.domain.lists import MAX_NOTIFICATIONS_PER_IMEI, ListState, grace_end_us
from ceir.domain.model import (
    CURRENT_LEAF_VERSION,
    DAY_MICROS,
    BlacklistCause,
    Caller,
    Change,
    ChangeKind,
    DeviceRegistration,
    OrgKind,
    Phase,
    RegistrationSource,
)
from ceir.domain.permissions import require
from ceir.service.handlers import REASONS, handler_for
from ceir.service.unit import WriteUnit
from ceir.storage.projection import ProjectedRows

from .helpers import INDOSAT_IMSI, TELKOMSEL_IMSI, imei

R = TypeVar("R")

NOW = 1_600_000_000_000_000
KEMENPERIN = Caller("kemenperin", OrgKind.KEMENPERIN)
KOMINFO = Caller("kominfo", OrgKind.KOMINFO)
CUSTOMS = Caller("customs", OrgKind.CUSTOMS)
TELKOMSEL = Caller("telkomsel", OrgKind.OPERATOR, ("510-10",))
INDOSAT = Caller("indosat", OrgKind.OPERATOR, ("510-01", "510-21"))
MSISDN = "628111000001"


def key(serial: int) -> int:
    return int(imei(serial)[:14])


class MemoryRegister:
    """The lists and records in memory, following the changes handlers emit."""

    def __init__(self) -> None:
        self.state = ListState()
        self.rows = ProjectedRows()
        self.now_us = NOW

    def run(self, caller: Caller, command: Command[R]) -> tuple[R, list[Change]]:
        """Run one command as the pipeline does, without a database."""
        handler = handler_for(command)
        require(caller, command.action)
        handler.authorize(caller, command)
        unit = WriteUnit(caller, self.now_us, self.state, self.rows, self.state.sequence + 1)
        result = handler.handle(command, unit)
        for change in unit.changes:
            self.state.apply(change)
            self.rows.apply(change)
        return result, unit.changes

    def refused(self, caller: Caller, command: Command[Any], error: type[CeirError]) -> str:
        """Run a command that must fail; its reason. Nothing may change."""
        before = self.state.sequence
        with pytest.raises(error) as raised:
            self.run(caller, command)
        assert self.state.sequence == before
        return raised.value.reason

    def register(self, *serials: int, caller: Caller = KEMENPERIN, **fields: Any) -> None:
        source = fields.pop("source", RegistrationSource.TPP_IMPORT)
        device = DeviceRegistration(tuple(key(s) for s in serials), source, **fields)
        self.run(caller, RegisterDevice(device))

    def notify(self, serial: int, imsi: str = TELKOMSEL_IMSI, msisdn: str = MSISDN) -> None:
        self.run(TELKOMSEL, RecordCheckEffects(((imei(serial), imsi, msisdn),)))


@pytest.fixture
def memory() -> MemoryRegister:
    return MemoryRegister()


# --- RegisterDevice ------------------------------------------------------------------------


def test_register_device_emits_one_added_change_per_slot_with_the_device_record(
    memory: MemoryRegister,
) -> None:
    device = DeviceRegistration(
        (key(1), key(2)), RegistrationSource.TPP_IMPORT, "TPP-7", None, "Brand", "Model"
    )
    registration, changes = memory.run(KEMENPERIN, RegisterDevice(device))
    assert [(c.kind, c.imei_key) for c in changes] == [
        (ChangeKind.WHITELIST_ADDED, key(1)),
        (ChangeKind.WHITELIST_ADDED, key(2)),
    ]
    for change in changes:
        assert change.actor == "kemenperin" and change.committed_at_us == NOW
        assert change.leaf_version == CURRENT_LEAF_VERSION
        assert change.device_id == registration.device_id == "D1"
        assert change.source is RegistrationSource.TPP_IMPORT
        assert (change.reference, change.brand, change.model) == ("TPP-7", "Brand", "Model")
        assert change.device_imei_keys == (key(1), key(2))
    assert registration.registered_by == "kemenperin" and registration.registered_at_us == NOW
    assert memory.rows.registration_of(key(2)) == registration


def test_register_device_refuses_a_validly_registered_imei_naming_its_slot(
    memory: MemoryRegister,
) -> None:
    memory.register(2)
    device = DeviceRegistration((key(1), key(2)), RegistrationSource.TPP_IMPORT)
    with pytest.raises(AlreadyExists) as raised:
        memory.run(KEMENPERIN, RegisterDevice(device))
    assert raised.value.reason == "IMEI_ALREADY_REGISTERED"
    assert [v.field for v in raised.value.violations] == ["device.imeis[1]"]


def test_register_device_replaces_an_expired_tourist_registration(
    memory: MemoryRegister,
) -> None:
    memory.register(
        1, caller=TELKOMSEL, source=RegistrationSource.TOURIST, valid_until_us=NOW + DAY_MICROS
    )
    memory.now_us = NOW + 2 * DAY_MICROS
    memory.register(1)
    registration = memory.rows.registration_of(key(1))
    assert registration is not None and registration.source is RegistrationSource.TPP_IMPORT
    assert memory.state.is_whitelisted(key(1)) and memory.state.valid_until_of(key(1)) is None


def test_register_device_needs_the_source_s_organisation(memory: MemoryRegister) -> None:
    device = DeviceRegistration((key(1),), RegistrationSource.CUSTOMS)
    assert memory.refused(KEMENPERIN, RegisterDevice(device), PermissionDenied) == (
        "SOURCE_NOT_ALLOWED"
    )


def test_a_registration_ends_notifications_and_an_expired_block_with_a_reason(
    memory: MemoryRegister,
) -> None:
    memory.notify(1)
    salt = memory.state.notification_salts[(key(1), TELKOMSEL_IMSI)]
    memory.now_us = grace_end_us(NOW, memory.state.policy) + 1
    memory.notify(1)  # the grace is over: blocked
    assert memory.state.blacklist_entry_of(key(1))[0] is BlacklistCause.NOTIFICATION_EXPIRED  # type: ignore[index]
    memory.notify(2)
    _, changes = memory.run(
        KEMENPERIN,
        RegisterDevice(DeviceRegistration((key(1), key(2)), RegistrationSource.TPP_IMPORT)),
    )
    kinds = [(c.kind, c.imei_key) for c in changes]
    assert kinds == [
        (ChangeKind.WHITELIST_ADDED, key(1)),
        (ChangeKind.BLACKLIST_UNBLOCKED, key(1)),
        (ChangeKind.WHITELIST_ADDED, key(2)),
        (ChangeKind.NOTIFICATION_RESOLVED, key(2)),
    ]
    assert changes[1].reason == REASONS["registered"]
    resolved = changes[3]
    assert resolved.reason == REASONS["registered"]
    assert (resolved.imsi, resolved.msisdn) == (TELKOMSEL_IMSI, MSISDN)
    assert len(resolved.subscriber_salt) == SALT_BYTES
    assert salt != resolved.subscriber_salt  # key(2)'s pair has a salt of its own
    assert memory.rows.blacklist_entry(key(1)) is None


# --- RevokeRegistration --------------------------------------------------------------------


def test_revoke_emits_removed_changes_with_the_reason(memory: MemoryRegister) -> None:
    memory.register(1, 2)
    keys, changes = memory.run(KEMENPERIN, RevokeRegistration((key(1),), "complaint 12"))
    assert keys == (key(1),)
    assert [(c.kind, c.imei_key, c.reason) for c in changes] == [
        (ChangeKind.WHITELIST_REMOVED, key(1), "complaint 12")
    ]
    assert memory.rows.registration_of(key(1)) is None
    assert memory.rows.rows["devices"][("D1",)]  # the device record stays


def test_revoke_refuses_an_unregistered_imei(memory: MemoryRegister) -> None:
    memory.register(1)
    command = RevokeRegistration((key(1), key(2)), "x")
    assert memory.refused(KEMENPERIN, command, NotFound) == "IMEI_NOT_REGISTERED"


def test_an_operator_revokes_only_what_it_registered(memory: MemoryRegister) -> None:
    memory.register(1, caller=TELKOMSEL, source=RegistrationSource.GRANDFATHERED)
    command = RevokeRegistration((key(1),), "x")
    assert memory.refused(INDOSAT, command, PermissionDenied) == "NOT_REGISTRANT"
    memory.run(TELKOMSEL, command)


# --- ReportStolen and ReportRecovered ---------------------------------------------------------


def test_report_stolen_emits_blocks_with_report_subscriber_and_a_fresh_salt(
    memory: MemoryRegister,
) -> None:
    keys, changes = memory.run(
        TELKOMSEL, ReportStolen((key(1), key(2)), "LP/1/2020", TELKOMSEL_IMSI)
    )
    assert keys == (key(1), key(2))
    for change in changes:
        assert change.kind is ChangeKind.BLACKLIST_BLOCKED
        assert change.blacklist_cause is BlacklistCause.STOLEN
        assert (change.police_report, change.imsi) == ("LP/1/2020", TELKOMSEL_IMSI)
        assert len(change.subscriber_salt) == SALT_BYTES
    assert changes[0].subscriber_salt != changes[1].subscriber_salt
    entry = memory.rows.blacklist_entry(key(1))
    assert entry is not None
    assert (entry.police_report, entry.blocked_by, entry.blocked_at_us) == (
        "LP/1/2020",
        "telkomsel",
        NOW,
    )
    assert entry.subscriber_imsi == TELKOMSEL_IMSI


def test_a_stolen_report_supersedes_an_expired_block(memory: MemoryRegister) -> None:
    memory.notify(1)
    memory.now_us = grace_end_us(NOW, memory.state.policy) + 1
    memory.notify(1)
    _, changes = memory.run(TELKOMSEL, ReportStolen((key(1),), "LP/2", TELKOMSEL_IMSI))
    assert [(c.kind, c.reason) for c in changes] == [
        (ChangeKind.BLACKLIST_UNBLOCKED, REASONS["superseded"]),
        (ChangeKind.BLACKLIST_BLOCKED, ""),
    ]


def test_report_stolen_refuses_a_second_report(memory: MemoryRegister) -> None:
    memory.run(TELKOMSEL, ReportStolen((key(1),), "LP/1", TELKOMSEL_IMSI))
    command = ReportStolen((key(2), key(1)), "LP/2", TELKOMSEL_IMSI)
    assert memory.refused(TELKOMSEL, command, AlreadyExists) == "IMEI_ALREADY_BLOCKED"


def test_an_operator_reports_only_its_own_subscribers(memory: MemoryRegister) -> None:
    command = ReportStolen((key(1),), "LP/1", INDOSAT_IMSI)
    assert memory.refused(TELKOMSEL, command, PermissionDenied) == "FOREIGN_SUBSCRIBER"
    memory.run(KOMINFO, command)


def test_report_recovered_emits_unblocks_with_the_report_and_a_reason(
    memory: MemoryRegister,
) -> None:
    memory.run(KOMINFO, ReportStolen((key(1),), "LP/1", TELKOMSEL_IMSI))
    # The subscriber's operator may lift a report Kominfo filed.
    _, changes = memory.run(TELKOMSEL, ReportRecovered((key(1),), "LP/1-R"))
    assert [(c.kind, c.police_report, c.reason, c.actor) for c in changes] == [
        (ChangeKind.BLACKLIST_UNBLOCKED, "LP/1-R", REASONS["recovered"], "telkomsel")
    ]
    assert memory.state.blacklist_entry_of(key(1)) is None


def test_report_recovered_refuses_an_imei_not_stolen(memory: MemoryRegister) -> None:
    memory.run(TELKOMSEL, ReportStolen((key(1),), "LP/1", TELKOMSEL_IMSI))
    command = ReportRecovered((key(1), key(2)), "LP/1-R")
    assert memory.refused(TELKOMSEL, command, FailedPrecondition) == "IMEI_NOT_STOLEN"


def test_only_the_reporter_or_the_subscriber_s_operator_recovers(memory: MemoryRegister) -> None:
    memory.run(TELKOMSEL, ReportStolen((key(1),), "LP/1", TELKOMSEL_IMSI))
    command = ReportRecovered((key(1),), "LP/1-R")
    assert memory.refused(INDOSAT, command, PermissionDenied) == "NOT_REPORTER"
    memory.run(KEMENPERIN, command)


# --- AddException and RemoveException ----------------------------------------------------------


def test_a_pair_s_removal_carries_the_salt_its_addition_made(memory: MemoryRegister) -> None:
    pair, added = memory.run(TELKOMSEL, AddException(key(1), TELKOMSEL_IMSI, "complaint 9"))
    assert pair == (key(1), TELKOMSEL_IMSI)
    (change,) = added
    assert (change.kind, change.imsi, change.reason) == (
        ChangeKind.EXCEPTION_ADDED,
        TELKOMSEL_IMSI,
        "complaint 9",
    )
    assert len(change.subscriber_salt) == SALT_BYTES
    assert memory.rows.rows["exceptions"][(key(1), TELKOMSEL_IMSI)] == (
        "complaint 9",
        "telkomsel",
        NOW,
        change.subscriber_salt,
    )
    _, removed = memory.run(TELKOMSEL, RemoveException(key(1), TELKOMSEL_IMSI))
    assert [(c.kind, c.imsi, c.subscriber_salt) for c in removed] == [
        (ChangeKind.EXCEPTION_REMOVED, TELKOMSEL_IMSI, change.subscriber_salt)
    ]
    assert (key(1), TELKOMSEL_IMSI) not in memory.rows.rows["exceptions"]


def test_pairs_are_added_once_and_removed_once(memory: MemoryRegister) -> None:
    memory.run(TELKOMSEL, AddException(key(1), TELKOMSEL_IMSI))
    again = AddException(key(1), TELKOMSEL_IMSI)
    assert memory.refused(TELKOMSEL, again, AlreadyExists) == "PAIR_EXISTS"
    missing = RemoveException(key(2), TELKOMSEL_IMSI)
    assert memory.refused(TELKOMSEL, missing, NotFound) == "PAIR_NOT_FOUND"


def test_an_operator_pairs_only_its_own_subscribers(memory: MemoryRegister) -> None:
    command = AddException(key(1), INDOSAT_IMSI)
    assert memory.refused(TELKOMSEL, command, PermissionDenied) == "FOREIGN_SUBSCRIBER"


# --- UpdatePolicy ------------------------------------------------------------------------


def test_update_policy_changes_the_named_fields_only(memory: MemoryRegister) -> None:
    policy, changes = memory.run(KOMINFO, UpdatePolicy(phase=Phase.ENFORCE, grace_days=10))
    assert (policy.phase, policy.grace_days, policy.clone_threshold) == (Phase.ENFORCE, 10, 3)
    assert (policy.updated_by, policy.updated_at_us) == ("kominfo", NOW)
    assert [(c.kind, c.policy) for c in changes] == [(ChangeKind.POLICY_CHANGED, policy)]
    assert memory.rows.policy == policy


def test_only_the_regulator_changes_the_policy(memory: MemoryRegister) -> None:
    refused = memory.refused(KEMENPERIN, UpdatePolicy(grace_days=1), PermissionDenied)
    assert refused == "ACTION_NOT_ALLOWED"


# --- ImportChunk -------------------------------------------------------------------------


def test_an_import_chunk_registers_good_rows_and_rejects_the_others(
    memory: MemoryRegister,
) -> None:
    memory.register(3)
    rows = (
        ImportRow(10, DeviceRegistration((key(1),), RegistrationSource.TPP_IMPORT, "R-1")),
        ImportRow(11, DeviceRegistration((key(2),), RegistrationSource.CUSTOMS)),
        ImportRow(12, DeviceRegistration((key(3),), RegistrationSource.TPP_IMPORT)),
        ImportRow(13, DeviceRegistration((key(4), key(1)), RegistrationSource.TPP_IMPORT)),
        ImportRow(14, DeviceRegistration((key(5),), RegistrationSource.TPP_PRODUCTION)),
    )
    result, changes = memory.run(KEMENPERIN, ImportChunk(0, rows))
    assert (result.rows_received, result.rows_accepted, result.rows_rejected) == (5, 2, 3)
    assert [(r.row, r.field) for r in result.rejections] == [
        (11, "device.source"),
        (12, "device.imeis[0]"),
        (13, "device.imeis[1]"),
    ]
    assert [(c.imei_key, c.reference) for c in changes] == [(key(1), "R-1"), (key(5), "")]
    assert result.sequence == memory.state.sequence


def test_the_request_key_of_a_chunk_names_the_chunk() -> None:
    assert ImportChunk(3, ()).request_key("bulk-1") == "bulk-1#3"
    assert ImportChunk(3, ()).request_key("") == ""


# --- RecordCheckEffects ------------------------------------------------------------------


def test_a_first_sight_notifies_the_operator_s_own_subscriber_with_a_salt(
    memory: MemoryRegister,
) -> None:
    checks = ((imei(1), TELKOMSEL_IMSI, MSISDN), (imei(1), INDOSAT_IMSI, ""))
    decided_at, changes = memory.run(TELKOMSEL, RecordCheckEffects(checks))
    assert decided_at == NOW
    (change,) = changes  # not the other operator's subscriber
    assert (change.kind, change.imsi, change.msisdn, change.operator_mcc_mnc) == (
        ChangeKind.NOTIFICATION_NEW,
        TELKOMSEL_IMSI,
        MSISDN,
        "510-10",
    )
    assert change.block_date_us == grace_end_us(NOW, memory.state.policy)
    assert len(change.subscriber_salt) == SALT_BYTES
    row = memory.rows.rows["notifications"][(key(1), TELKOMSEL_IMSI)]
    assert row == (MSISDN, "510-10", NOW, change.block_date_us, change.subscriber_salt)


def test_a_check_records_nothing_once_it_is_no_longer_due(memory: MemoryRegister) -> None:
    memory.notify(1)
    _, again = memory.run(TELKOMSEL, RecordCheckEffects(((imei(1), TELKOMSEL_IMSI, ""),)))
    assert again == []  # notified already
    memory.register(2)
    _, registered = memory.run(TELKOMSEL, RecordCheckEffects(((imei(2), TELKOMSEL_IMSI, ""),)))
    assert registered == []  # registered meanwhile


def test_an_imei_gets_at_most_so_many_notifications(memory: MemoryRegister) -> None:
    checks = tuple((imei(1), f"51010{n:010d}", "") for n in range(MAX_NOTIFICATIONS_PER_IMEI + 3))
    _, changes = memory.run(TELKOMSEL, RecordCheckEffects(checks))
    assert len(changes) == MAX_NOTIFICATIONS_PER_IMEI


def test_a_grace_over_blocks_and_ends_the_pairs_with_their_salts(
    memory: MemoryRegister,
) -> None:
    memory.notify(1)
    salt = memory.state.notification_salts[(key(1), TELKOMSEL_IMSI)]
    memory.now_us = grace_end_us(NOW, memory.state.policy) + 1
    # Any organisation's check records a grace that ran out.
    _, changes = memory.run(KOMINFO, RecordCheckEffects(((imei(1), "", ""),)))
    ended, blocked = changes
    assert (ended.kind, ended.imsi, ended.msisdn, ended.subscriber_salt, ended.reason) == (
        ChangeKind.NOTIFICATION_BLACKLISTED,
        TELKOMSEL_IMSI,
        MSISDN,
        salt,
        REASONS["grace_over"],
    )
    assert (blocked.kind, blocked.blacklist_cause, blocked.reason, blocked.actor) == (
        ChangeKind.BLACKLIST_BLOCKED,
        BlacklistCause.NOTIFICATION_EXPIRED,
        REASONS["grace_over"],
        "kominfo",
    )
    entry = memory.rows.blacklist_entry(key(1))
    assert entry is not None and entry.blocked_by == "ceir"  # the register blocks

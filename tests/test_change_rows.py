"""A change stored in the ``changes`` table reads back as the same change, every
field of it, on SQLite and PostgreSQL (``change_from_row`` builds changes
without the dataclass's __init__, for speed: a field it forgot would be
missing here, not silently defaulted)."""

from __future__ import annotations

import dataclasses

import pytest

from ceir.domain.model import (
    BlacklistCause,
    Change,
    ChangeKind,
    Phase,
    Policy,
    RegistrationSource,
)
from ceir.storage import repository as repo
from ceir.storage.database import Database

EVERY_FIELD = Change(
    kind=ChangeKind.WHITELIST_ADDED,
    imei_key=35209900000010,
    imsi="510101234567890",
    msisdn="6281234567890",
    source=RegistrationSource.CUSTOMS,
    valid_until_us=1_798_761_600_000_000,
    device_id="D7",
    blacklist_cause=BlacklistCause.STOLEN,
    block_date_us=1_767_225_600_000_000,
    operator_mcc_mnc="510-10",
    policy=Policy(Phase.ENFORCE, 10, 4, 3_600, 1_700_000_000_000_000, "kemenperin"),
    sequence=1,
    committed_at_us=1_700_000_000_000_001,
    actor="customs",
    reference="BC-2026-0042",
    brand="Samsung",
    model="Galaxy A15",
    device_imei_keys=(35209900000010, 35209900000028),
    police_report="LP/1/XI/2026",
    reason="a reason",
    subscriber_salt=bytes(range(16)),
    leaf_version=2,
)


@pytest.mark.parametrize(
    "change",
    [
        EVERY_FIELD,
        Change(ChangeKind.WHITELIST_REMOVED, 35209900000010, sequence=1, leaf_version=1),
    ],
    ids=["every-field", "defaults"],
)
def test_a_stored_change_reads_back_whole(db_url: str, change: Change) -> None:
    db = Database(db_url)
    db.migrate()
    try:
        with db.write() as session:
            repo.lock_state(session)
            repo.write_changes(session, [change])
        with db.read() as connection:
            (read,) = repo.changes_after(connection, 0, 10)
    finally:
        db.dispose()
    assert set(read.__dict__) == {field.name for field in dataclasses.fields(Change)}
    assert read == change
    assert type(read.kind) is ChangeKind and type(read.subscriber_salt) is bytes

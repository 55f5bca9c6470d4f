"""One-slot devices without a devices row (migration 0007).

A version 2 registration of a one-slot device is read from its change row;
the migration deletes only device rows equal to their change and the
downgrade writes them back, on SQLite and PostgreSQL; an insider who edits
the change, shadows it with a device row or points a whitelist row at
another change is caught by the audit and the start-up proof.
"""

from __future__ import annotations

from typing import Any, cast

import pytest
import sqlalchemy
from alembic import command
from sqlalchemy.pool import NullPool

from ceir.api.server import RunningServer, ServerConfig, create_server
from ceir.audit import encode_change, leaf_hash
from ceir.domain.model import Change, Registration
from ceir.service.list_audit import ListsNotFromLog, list_differences, replay
from ceir.service.log_audit import audit_database
from ceir.storage import repository as repo
from ceir.storage.database import Database
from ceir.storage.projection import WHITELIST, table_rows
from ceir.storage.range_rows import whitelist_uploaders
from ceir.v1 import registry_pb2

from .helpers import Client, imei
from .test_bulk_import import _config, _contents, _migrate, _write_as_0005
from .test_transparency import alter, populate


def _downgrade(url: str, revision: str) -> None:
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            command.downgrade(_config(url, connection), revision)
    finally:
        engine.dispose()


def _registrations(url: str) -> dict[int, Registration | None]:
    db = Database(url)
    try:
        with db.read() as connection:
            keys = [key[0] for key, _ in table_rows(connection, WHITELIST)]
            return {key: repo.registration_of(connection, key) for key in keys}
    finally:
        db.dispose()


def _rows(url: str) -> tuple[list[tuple[Change, bytes]], dict[str, list[Any]]]:
    changes, tables = _contents(url)
    return changes, cast(dict[str, list[Any]], tables)


def _differences(url: str) -> list[str]:
    db = Database(url)
    try:
        with db.read() as connection:
            return list(list_differences(connection, replay(connection)))
    finally:
        db.dispose()


def test_migration_0007_drops_only_device_rows_their_change_repeats_and_back(
    db_url: str,
) -> None:
    _migrate(db_url, "0005")
    _write_as_0005(db_url)
    _migrate(db_url, "0006")
    # A device row that differs from its change (IMEI ...0002 is change 2): kept.
    alter(db_url, "UPDATE devices SET brand = 'Other' WHERE id = 'D2'")
    before, registrations = _contents(db_url), _registrations(db_url)
    before_rows = _rows(db_url)[1]
    assert len(before_rows["devices"]) == 21  # 20 imported (one revoked since), one of two slots

    _migrate(db_url, "head")
    changes, tables = _rows(db_url)
    assert changes == before[0]
    for change, stored in changes:
        assert leaf_hash(encode_change(change)) == stored
    # The same keys and expiries; the device ids '' (the key's latest registration's).
    assert [(key, until) for key, _, until in tables["whitelist"]] == [
        (key, until) for key, _, until in before_rows["whitelist"]
    ]
    assert {row[1] for row in tables["whitelist"]} == {"D2", "", "D21"}
    assert sorted(row[0] for row in tables["devices"]) == ["D2", "D21"]
    engine = sqlalchemy.create_engine(db_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            ids = connection.exec_driver_sql("SELECT DISTINCT device_id FROM changes")
            # Its own id is '' (changes 1 to 21); the two-slot device's second slot names it.
            assert set(ids.scalars()) == {"", "D21"}
    finally:
        engine.dispose()
    assert _registrations(db_url) == registrations
    key_2 = 35209900000002
    assert [d.split(" behind", 1)[0] for d in _differences(db_url)] == [
        f"whitelist row for IMEI key {key_2:014d} altered",
        "devices row for device D2 inserted",
    ]

    _downgrade(db_url, "0006")
    assert _contents(db_url) == before


def test_a_one_slot_registration_is_read_back_from_its_change(
    clients: dict[str, Client], server: RunningServer, db_url: str
) -> None:
    populate(clients)
    record = clients["kemenperin"].register(imei(40), brand="B", model="M", reference="R-40")
    device_id = record.registration.device_id
    assert [row[0] for row in _rows(db_url)[1]["devices"]] == ["D11"]  # the two-slot one
    registration = _registrations(db_url)[int(imei(40)[:14])]
    assert registration is not None
    assert (registration.device_id, registration.brand, registration.model) == (device_id, "B", "M")
    assert registration.registered_by == "kemenperin"


# An insider's edits the device row no longer catches: IMEI 4 is change 5, D5.
_KEY_4 = imei(4)[:14]
TAMPERING = {
    "a change's device column": (
        "UPDATE changes SET brand = 'Other' WHERE sequence = 5",
        "change 5",
    ),
    "a device row shadowing its change": (
        "INSERT INTO devices (id, source, reference, valid_until_us, brand, model, "
        "registered_by, registered_at_us, imei_keys) SELECT 'D5', source, reference, "
        "valid_until_us, 'Other', model, actor, committed_at_us, CAST(imei_key AS TEXT) "
        "FROM changes WHERE sequence = 5",
        "devices row for device D5",
    ),
    "a whitelist row pointing at another change": (
        f"UPDATE whitelist SET device_id = 'D2' WHERE imei_key = {_KEY_4}",
        f"whitelist row for IMEI key {_KEY_4}",
    ),
}


@pytest.mark.parametrize("tamper", sorted(TAMPERING))
def test_an_edit_of_a_one_slot_registration_fails_the_audit_and_the_start(
    clients: dict[str, Client], server: RunningServer, db_url: str, tamper: str
) -> None:
    populate(clients)
    server.stop(grace=0)
    statement, named = TAMPERING[tamper]
    alter(db_url, statement)
    db = Database(db_url)
    try:
        report = audit_database(db, [])
    finally:
        db.dispose()
    assert not report.ok
    assert any(named in problem for problem in report.problems), report.problems
    with pytest.raises(Exception) as refused:
        create_server(ServerConfig(db=db_url, address="127.0.0.1:0", insecure=True))
    if isinstance(refused.value, ListsNotFromLog):
        assert any(named in d for d in refused.value.differences), refused.value
    else:
        assert named in str(refused.value)


def test_the_range_finder_reads_one_slot_uploaders_from_their_changes(
    clients: dict[str, Client], server: RunningServer, db_url: str
) -> None:
    kemenperin = clients["kemenperin"]
    kemenperin.register(imei(1), reference="R-1")  # no device row
    kemenperin.register(imei(2), imei(3), reference="R-2")  # a device row
    kemenperin.register(imei(4), reference="R-4")
    kemenperin.call(  # registered again: the latest registration counts
        kemenperin.registry.RevokeRegistration,
        registry_pb2.RevokeRegistrationRequest(imeis=[imei(4)], reason="wrong"),
    )
    kemenperin.register(imei(4), reference="R-4b")
    db = Database(db_url)
    try:
        with db.read() as connection:
            keys, owner, owners = whitelist_uploaders(connection)
    finally:
        db.dispose()
    found = {int(key): owners[code] for key, code in zip(keys, owner, strict=True)}
    assert found == {
        int(imei(1)[:14]): ("kemenperin", "R-1"),
        int(imei(2)[:14]): ("kemenperin", "R-2"),
        int(imei(3)[:14]): ("kemenperin", "R-2"),
        int(imei(4)[:14]): ("kemenperin", "R-4b"),
    }

"""The list tables are the projection of the change log.

A run of every command kind through a real server, on SQLite and on
PostgreSQL; then every row of every list table (whitelist, devices,
blacklist, notifications, exceptions) and the policy must equal what the
changes replay to, column for column, and the start-up proof must pass.
Rows written by leaf version 1 changes are compared only in the columns
that version carries.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy.pool import NullPool

from ceir.api.server import RunningServer
from ceir.audit.commitment import SALT_BYTES
from ceir.service.clock import ManualClock
from ceir.service.list_audit import list_differences, replay
from ceir.storage.projection import LIST_TABLES, UNKNOWN, table_rows
from ceir.v1 import policy_pb2, registry_pb2, types_pb2

from ..helpers import INDOSAT_IMSI, TELKOMSEL_IMSI, Client, imei
from ..test_transparency import alter

DAY = 86_400
TPP = types_pb2.REGISTRATION_SOURCE_TPP_IMPORT


@pytest.fixture
def engine(db_url: str) -> Iterator[sqlalchemy.Engine]:
    engine = sqlalchemy.create_engine(db_url, poolclass=NullPool)
    yield engine
    engine.dispose()


def every_command(clients: dict[str, Client], clock: ManualClock) -> None:
    """At least one change of every kind, by every command that makes one."""
    kemenperin, telkomsel, kominfo = clients["kemenperin"], clients["telkomsel"], clients["kominfo"]
    registry = kemenperin.registry
    kemenperin.register(imei(1), imei(2), reference="TPP-1", brand="Brand", model="Model")
    until = Timestamp()
    until.FromSeconds(int(clock.now_us() // 1_000_000) + 10 * DAY)
    telkomsel.register(imei(3), source=types_pb2.REGISTRATION_SOURCE_TOURIST, valid_until=until)
    rows = [
        registry_pb2.ImportRow(
            row=n, device=registry_pb2.DeviceRegistration(imeis=[imei(n)], source=TPP)
        )
        for n in (10, 11, 12)
    ]
    kemenperin.call(
        registry.ImportRegistrations,
        iter([registry_pb2.ImportRegistrationsRequest(request_id="bulk", rows=rows)]),
    )
    kemenperin.call(
        registry.RevokeRegistration,
        registry_pb2.RevokeRegistrationRequest(imeis=[imei(12)], reason="complaint 4"),
    )
    telkomsel.call(
        telkomsel.registry.ReportStolen,
        registry_pb2.ReportStolenRequest(
            imeis=[imei(10), imei(11)], police_report="LP/1", subscriber_imsi=TELKOMSEL_IMSI
        ),
    )
    kemenperin.call(
        registry.ReportRecovered,
        registry_pb2.ReportRecoveredRequest(imeis=[imei(11)], police_report="LP/1-R"),
    )
    for serial in (20, 21):
        telkomsel.call(
            telkomsel.registry.AddException,
            registry_pb2.AddExceptionRequest(imei=imei(serial), imsi=TELKOMSEL_IMSI, reason="C-1"),
        )
    telkomsel.call(
        telkomsel.registry.RemoveException,
        registry_pb2.RemoveExceptionRequest(imei=imei(21), imsi=TELKOMSEL_IMSI),
    )
    for serial in (30, 31, 32, 33):  # first sights: notifications
        telkomsel.check_imei(imei(serial), msisdn="+628111000001")
    clients["indosat"].check_imei(imei(30), imsi=INDOSAT_IMSI)
    clock.advance(31 * DAY)
    for serial in (30, 31, 32):  # the grace is over: blocked
        telkomsel.check_imei(imei(serial))
    kemenperin.register(imei(30))  # lifts the block
    kemenperin.register(imei(33))  # resolves the notification
    telkomsel.call(  # supersedes the block
        telkomsel.registry.ReportStolen,
        registry_pb2.ReportStolenRequest(
            imeis=[imei(31)], police_report="LP/2", subscriber_imsi=TELKOMSEL_IMSI
        ),
    )
    telkomsel.check_imei(imei(34), msisdn="+628111000002")  # a notification that stays
    policy = types_pb2.Policy(grace_days=14)
    kominfo.call(
        kominfo.policy.UpdatePolicy,
        policy_pb2.UpdatePolicyRequest(policy=policy, update_mask=FieldMask(paths=["grace_days"])),
    )


def test_the_tables_written_by_every_command_are_the_replay_of_the_log(
    clients: dict[str, Client],
    clock: ManualClock,
    server: RunningServer,
    engine: sqlalchemy.Engine,
) -> None:
    every_command(clients, clock)
    with engine.connect() as connection:
        kinds = {row[0] for row in connection.exec_driver_sql("SELECT kind FROM changes")}
        assert kinds == set(range(1, 11)), "a change kind is missing from the run"
        versions = {
            row[0] for row in connection.exec_driver_sql("SELECT leaf_version FROM changes")
        }
        assert versions == {2}
        replayed = replay(connection)
        for table in LIST_TABLES:
            expected = replayed.rows[table.name]
            assert expected, f"the run wrote no {table.name} row"
            assert not any(UNKNOWN in values for values in expected.values())
            assert dict(table_rows(connection, table)) == expected, table.name
        assert list(list_differences(connection, replayed)) == []
        devices = dict(table_rows(connection, LIST_TABLES[1]))
        salts = connection.exec_driver_sql(
            "SELECT subscriber_salt FROM notifications"
            " UNION ALL SELECT subscriber_salt FROM exceptions"
        )
        assert all(len(bytes(row[0])) == SALT_BYTES for row in salts)
    assert ("TPP-1", "Brand", "Model", "kemenperin") in {
        values[1:2] + values[3:6] for values in devices.values()
    }


def test_a_devices_row_changed_behind_the_log_is_named(
    clients: dict[str, Client], server: RunningServer, engine: sqlalchemy.Engine, db_url: str
) -> None:
    # Two slots: a one-slot device has no row (its change holds it, migration 0007).
    answer = clients["kemenperin"].register(imei(1), imei(2), brand="Brand")
    device_id = answer.registration.device_id
    alter(db_url, f"UPDATE devices SET brand = 'Other' WHERE id = '{device_id}'")
    with engine.connect() as connection:
        (difference,) = list_differences(connection, replay(connection))
    assert difference.startswith(f"devices row for device {device_id} altered behind the log")
    assert "brand is 'Other' in the table, change 2 (WHITELIST_ADDED) set 'Brand'" in difference


def test_rows_of_leaf_version_1_changes_are_compared_in_the_columns_it_carries(
    clients: dict[str, Client], server: RunningServer, engine: sqlalchemy.Engine, db_url: str
) -> None:
    telkomsel = clients["telkomsel"]
    telkomsel.call(
        telkomsel.registry.ReportStolen,
        registry_pb2.ReportStolenRequest(
            imeis=[imei(1)], police_report="LP/1", subscriber_imsi=TELKOMSEL_IMSI
        ),
    )
    # As a database from before migration 0004 holds it.
    alter(db_url, "UPDATE changes SET leaf_version = 1, police_report = '' WHERE sequence = 1")
    alter(db_url, "UPDATE blacklist SET blocked_by = 'someone' WHERE cause = 1")
    with engine.connect() as connection:
        assert list(list_differences(connection, replay(connection))) == []
    alter(db_url, "UPDATE blacklist SET cause = 2 WHERE cause = 1")  # version 1 carries the cause
    with engine.connect() as connection:
        (difference,) = list_differences(connection, replay(connection))
    assert "cause is 2 in the table, change 1 (BLACKLIST_BLOCKED) set 1" in difference

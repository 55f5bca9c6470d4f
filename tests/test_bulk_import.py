"""The bulk import path: columnar checks, bulk leaves, migration 0006, COPY.

The columnar IMEI checks and the bulk leaf encoder must agree with the
scalar functions they stand in for, on any input; an import through a real
server rejects exactly the rows, fields and words the one-device converter
names; a database written before migration 0006 keeps every change, leaf
and list row through it, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import gc
from pathlib import Path

import grpc
import pytest
import sqlalchemy
from alembic import command
from alembic.config import Config
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.pool import NullPool

from ceir.api.commands import _device
from ceir.audit import encode_change, encode_changes, leaf_hash
from ceir.domain.columns import MALFORMED, imei_keys
from ceir.domain.commands import ImportChunk, ImportRow, RegisterDevice, RevokeRegistration
from ceir.domain.errors import InvalidArgument
from ceir.domain.identifiers import full_imei, imei_key
from ceir.domain.model import (
    Caller,
    Change,
    ChangeKind,
    DeviceRegistration,
    OrgKind,
    RegistrationSource,
)
from ceir.service.collection import collection_paused
from ceir.service.list_audit import list_differences, replay
from ceir.service.oversight_watch import RateWatch
from ceir.service.register import Register
from ceir.storage import repository as repo
from ceir.storage.database import MIGRATIONS, Database
from ceir.storage.projection import WHITELIST, table_rows
from ceir.v1 import registry_pb2, registry_pb2_grpc, types_pb2

from .helpers import Client, imei

# --- columnar checks against the scalar ones ---------------------------------------------------

_IMEI_LIKE = st.one_of(
    st.text(alphabet="0123456789", min_size=12, max_size=18),
    st.text(alphabet="0123456789٣３a \x00", min_size=13, max_size=17),
    st.text(max_size=20),
    st.integers(0, 10**14 - 1).map(full_imei),
)


@given(st.lists(_IMEI_LIKE, max_size=40))
@settings(max_examples=300, deadline=None)
def test_columnar_imei_keys_agree_with_the_scalar_check(values: list[str]) -> None:
    found = imei_keys(values).tolist()
    expected = [MALFORMED if imei_key(v) is None else imei_key(v) for v in values]
    assert found == expected


_TEXT = st.text(max_size=30)


@given(
    key=st.integers(0, 10**14 - 1),
    sequence=st.integers(1, 2**63),
    time_us=st.integers(-(2**63), 2**63 - 1),
    valid_until=st.none() | st.integers(-(2**63), 2**63 - 1),
    texts=st.tuples(_TEXT, _TEXT, _TEXT, _TEXT, _TEXT),
    slots=st.sampled_from(["own", "none", "two"]),
)
@settings(max_examples=300, deadline=None)
def test_bulk_leaves_are_the_leaves_of_encode_change(
    key: int,
    sequence: int,
    time_us: int,
    valid_until: int | None,
    texts: tuple[str, str, str, str, str],
    slots: str,
) -> None:
    actor, device_id, reference, brand, model = texts
    keys = {"own": (key,), "none": (), "two": (key, (key + 1) % 10**14)}[slots]
    change = Change(
        ChangeKind.WHITELIST_ADDED,
        key,
        source=RegistrationSource.TPP_IMPORT,
        valid_until_us=valid_until,
        device_id=device_id,
        sequence=sequence,
        committed_at_us=time_us,
        actor=actor,
        reference=reference,
        brand=brand,
        model=model,
        device_imei_keys=keys,
    )
    other = dataclasses.replace(change, kind=ChangeKind.WHITELIST_REMOVED, device_imei_keys=())
    try:
        expected = [encode_change(change), encode_change(other)]
    except Exception as error:  # the bulk path must refuse the same way
        with pytest.raises(type(error)):
            encode_changes([change, other])
        return
    assert encode_changes([change, other]) == expected


# --- row-exact rejections through a real server ------------------------------------------------


def _row(number: int, imeis: list[str], **fields: object) -> registry_pb2.ImportRow:
    device = registry_pb2.DeviceRegistration(
        imeis=imeis,
        source=fields.pop("source", types_pb2.REGISTRATION_SOURCE_TPP_IMPORT),  # type: ignore[arg-type]
        reference=fields.pop("reference", "TPP-1"),  # type: ignore[arg-type]
        brand=fields.pop("brand", "Samsung"),  # type: ignore[arg-type]
        model=fields.pop("model", "A5"),  # type: ignore[arg-type]
    )
    return registry_pb2.ImportRow(row=number, device=device)


def test_an_import_rejects_the_rows_the_one_device_converter_rejects(
    clients: dict[str, Client], channel: grpc.Channel
) -> None:
    clients["kemenperin"].register(imei(9))
    good = imei(1)
    rows = [
        _row(1, [good]),
        _row(2, [good[:14] + str((int(good[14]) + 1) % 10)]),  # Luhn does not hold
        _row(3, ["3520990000000٣"]),  # not ASCII digits
        _row(4, [imei(2) + "12"]),  # 17 digits
        _row(5, [imei(3)], brand="Sam\x07sung"),
        _row(6, [imei(4)], source=types_pb2.REGISTRATION_SOURCE_TOURIST),  # no expiry
        _row(7, [good]),  # claimed by row 1
        _row(8, [imei(9)]),  # registered already
        _row(9, [imei(5), imei(6)], model="m" * 65),
        _row(10, [imei(7), imei(8)]),
        _row(11, [imei(10)], reference=" padded "),
        _row(12, [], brand="x"),
    ]
    stub = registry_pb2_grpc.RegistryServiceStub(channel)
    answer = stub.ImportRegistrations(
        iter([registry_pb2.ImportRegistrationsRequest(request_id="exact", rows=rows)]),
        metadata=clients["kemenperin"].metadata,
    )
    got = [(r.row, r.field, r.description) for r in answer.rejections]
    expected: list[tuple[int, str, str]] = []
    for row in rows:
        try:
            _device(row.device, 0)
        except InvalidArgument as error:
            first = error.violations[0]
            expected.append((row.row, first.field, first.description))
    expected += [
        (7, "device.imeis[0]", f"IMEI {good[:14]} is already registered"),
        (8, "device.imeis[0]", f"IMEI {imei(9)[:14]} is already registered"),
    ]
    assert got == sorted(expected)
    assert answer.rows_accepted == 3  # rows 1, 10 and 11
    record = clients["kemenperin"].call(
        stub.GetImeiRecord, registry_pb2.GetImeiRecordRequest(imei=imei(10))
    )
    assert record.registration.reference == "padded"


# --- migration 0006 ---------------------------------------------------------------------------

KEMENPERIN = Caller("kemenperin", OrgKind.KEMENPERIN)


def _config(url: str, connection: sqlalchemy.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def _migrate(url: str, revision: str) -> None:
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            command.upgrade(_config(url, connection), revision)
    finally:
        engine.dispose()


# What the register stores no more (migration 0007), as every version before
# stored it: the devices rows of one-slot registrations, and the device ids
# of their whitelist rows and of registrations (stored as '' now).
BEFORE_0007 = (
    "INSERT INTO devices (id, source, reference, valid_until_us, brand, model, "
    "registered_by, registered_at_us, imei_keys) SELECT 'D' || CAST(sequence AS TEXT), "
    "source, reference, valid_until_us, brand, model, actor, committed_at_us, "
    "CAST(imei_key AS TEXT) FROM changes WHERE kind = 1 AND device_imei_keys = '' "
    "AND device_id = ''",
    "UPDATE whitelist SET device_id = (SELECT 'D' || CAST(max(c.sequence) AS TEXT) "
    "FROM changes c WHERE c.imei_key = whitelist.imei_key AND c.kind = 1) "
    "WHERE device_id = ''",
    "UPDATE changes SET device_id = 'D' || CAST(sequence AS TEXT) "
    "WHERE kind = 1 AND device_id = ''",
)


def _write_as_0005(url: str) -> None:
    """Registrations, a two-slot device and a revocation, stored as 0005 stored them."""
    db = Database(url)
    try:
        register = Register(db)
        register.rates = RateWatch(counting=False)  # the 0005 schema has no account_rates
        device = DeviceRegistration((35209900000001,), RegistrationSource.TPP_IMPORT, "R", None)
        rows = tuple(
            ImportRow(
                n, dataclasses.replace(device, imei_keys=(35209900000001 + n,), model=f"M{n}")
            )
            for n in range(20)
        )
        register.execute(KEMENPERIN, ImportChunk(0, rows))
        two = DeviceRegistration(
            (35209900100001, 35209900100002), RegistrationSource.TPP_PRODUCTION
        )
        register.execute(KEMENPERIN, RegisterDevice(two))
        register.execute(KEMENPERIN, RevokeRegistration((35209900000003,), "wrong"))
        register.close()
        with db.write() as session:  # device rows and slot lists as 0005 wrote them
            for statement in BEFORE_0007:
                session.execute(sqlalchemy.text(statement))
            session.execute(
                sqlalchemy.text(
                    "UPDATE changes SET device_imei_keys = CAST(imei_key AS TEXT) "
                    "WHERE kind = 1 AND device_imei_keys = ''"
                )
            )
    finally:
        db.dispose()


_LEAVES = sqlalchemy.text("SELECT leaf_hash FROM changes ORDER BY sequence")


def _contents(url: str) -> tuple[list[tuple[Change, bytes]], dict[str, list[object]]]:
    db = Database(url)
    try:
        with db.read() as connection:
            changes = [
                (change, bytes(row.leaf_hash))
                for change, row in zip(
                    repo.changes_after(connection, 0, 1_000),
                    connection.execute(_LEAVES),
                    strict=True,
                )
            ]
            tables = {
                name: sorted(
                    tuple(row)
                    for row in connection.execute(sqlalchemy.text(f"SELECT * FROM {name}"))
                )
                for name in ("whitelist", "devices")
            }
    finally:
        db.dispose()
    return changes, tables  # type: ignore[return-value]


def test_migration_0006_keeps_every_change_leaf_and_list_row(db_url: str) -> None:
    _migrate(db_url, "0005")
    _write_as_0005(db_url)
    before = _contents(db_url)
    _migrate(db_url, "0006")
    after = _contents(db_url)
    assert after == before
    _migrate(db_url, "head")  # the audit below reads one-slot devices from their changes
    for change, stored in after[0]:
        assert leaf_hash(encode_change(change)) == stored
    db = Database(db_url)
    try:
        with db.read() as connection:
            assert not list(list_differences(connection, replay(connection)))
            keys = [key for key, _ in table_rows(connection, WHITELIST)]
            slots = connection.execute(
                sqlalchemy.text("SELECT DISTINCT device_imei_keys FROM changes WHERE kind = 1")
            ).scalars()
            assert set(slots) == {"", "35209900100001,35209900100002"}
    finally:
        db.dispose()
    assert len(keys) == 21  # 20 imported, 2 slots of one device, 1 revoked


def test_migration_0006_on_sqlite_stores_each_key_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ceir.db'}"
    Database(url).migrate()
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            indexes = connection.execute(
                sqlalchemy.text("SELECT name FROM sqlite_master WHERE type = 'index'")
            ).scalars()
            autoindexes = {name for name in indexes if name.startswith("sqlite_autoindex_")}
            ddl: dict[str, str] = dict(
                connection.execute(sqlalchemy.text("SELECT name, sql FROM sqlite_master")).all()
            )
    finally:
        engine.dispose()
    assert not autoindexes & {
        "sqlite_autoindex_changes_1",
        "sqlite_autoindex_whitelist_1",
        "sqlite_autoindex_devices_1",
    }
    assert "sequence INTEGER NOT NULL" in ddl["changes"]
    assert ddl["whitelist"].endswith("WITHOUT ROWID")
    assert ddl["devices"].endswith("WITHOUT ROWID")
    assert "ix_changes_imei_key" in ddl


def test_an_import_through_a_server_is_readable_back_change_by_change(
    clients: dict[str, Client], channel: grpc.Channel, db_url: str
) -> None:
    """On PostgreSQL the chunk's change rows go by COPY; on both, what is
    read back hashes to the stored leaves and projects to the list rows."""
    rows = [_row(n + 1, [imei(100 + n)], model=f"M{n}") for n in range(300)]
    stub = registry_pb2_grpc.RegistryServiceStub(channel)
    answer = stub.ImportRegistrations(
        iter([registry_pb2.ImportRegistrationsRequest(request_id="copy", rows=rows)]),
        metadata=clients["kemenperin"].metadata,
    )
    assert answer.rows_accepted == 300
    changes, tables = _contents(db_url)
    assert len(changes) == 300
    for change, stored in changes:
        assert leaf_hash(encode_change(change)) == stored
        assert change.device_imei_keys == (change.imei_key,)
    assert len(tables["whitelist"]) == 300
    assert tables["devices"] == []  # one slot each: their changes hold them (0007)
    db = Database(db_url)
    try:
        with db.read() as connection:
            assert not list(list_differences(connection, replay(connection)))
    finally:
        db.dispose()


# --- the collector's pause ---------------------------------------------------------------------


def test_the_collector_is_off_only_until_the_first_pause_ends() -> None:
    assert gc.isenabled()
    first, second = collection_paused(), collection_paused()
    first.__enter__()
    second.__enter__()  # begun while the first runs (another thread's chunk)
    assert not gc.isenabled()
    first.__exit__(None, None, None)
    assert gc.isenabled()  # not held off by the pause still running
    second.__exit__(None, None, None)
    assert gc.isenabled()

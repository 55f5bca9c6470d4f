"""Reading and writing the register's tables.

Functions here take the caller's session or connection and never open or
commit a transaction themselves: the service layer owns transactions. Bulk
paths use Core statements (one ``executemany`` per table), not ORM objects.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    Select,
    Table,
    and_,
    false,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from ceir.domain.model import (
    BlacklistCause,
    BlacklistEntry,
    Change,
    ChangeKind,
    ExceptionEntry,
    Notification,
    Phase,
    Policy,
    Registration,
    RegistrationSource,
)

from . import schema

Executor = Session | Connection


def _table(model: type[schema.Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


_changes = _table(schema.ChangeRecord)
_state = _table(schema.RegisterState)
_whitelist = _table(schema.WhitelistEntry)
_blacklist = _table(schema.BlacklistEntry)
_notifications = _table(schema.NotificationEntry)
_exceptions = _table(schema.ExceptionPair)
_devices = _table(schema.Device)
_idempotency = _table(schema.IdempotencyRecord)

# At least this many new rows go to PostgreSQL by COPY (fewer: one INSERT).
COPY_ROWS = 64
# Keeps IN (...) lists under SQLite's and PostgreSQL's parameter limits.
IN_CHUNK = 5_000


def chunks(values: Sequence[Any], size: int = IN_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def insert_rows(
    session: Session,
    model: type[schema.Base],
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    *,
    replace: bool = False,
) -> None:
    """Insert rows given as tuples of ``columns`` values; with ``replace``, a
    row whose primary key is taken replaces the row that has it.

    Where the driver takes positional parameters (SQLite), the tuples go
    straight to its ``executemany``: Core would build and process a
    parameter dict per row, which costs more than SQLite's own insert. The
    values must be what the driver takes as they are (integers, text,
    bytes, None): no type's bind processing runs. On PostgreSQL, new rows
    (``COPY_ROWS`` or more) go by ``COPY``; the others by Core's executemany
    (batched multi-row INSERTs).
    """
    if not rows:
        return
    connection = session.connection()
    if connection.dialect.name == "postgresql" and not replace and len(rows) >= COPY_ROWS:
        _copy_rows(connection, _table(model).name, columns, rows)
        return
    if not connection.dialect.positional:
        session.execute(
            _upsert(model, columns) if replace else insert(model),
            [dict(zip(columns, row, strict=True)) for row in rows],
        )
        return
    statement = insert(model).prefix_with("OR REPLACE") if replace else insert(model)
    compiled = statement.compile(dialect=connection.dialect, column_keys=list(columns))
    order = [columns.index(name) for name in compiled.positiontup or ()]
    if order != list(range(len(columns))):  # Core numbers parameters in table order
        rows = [tuple(row[i] for i in order) for row in rows]
    connection.exec_driver_sql(compiled.string, rows)


def _copy_rows(
    connection: Connection, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """PostgreSQL's ``COPY ... FROM STDIN`` of the rows, on the session's own
    connection (so inside its transaction): the bulk load path, several
    times faster than batched INSERTs."""
    driver = connection.connection.driver_connection
    assert driver is not None  # a checked-out connection has its driver's
    names = ", ".join(f'"{name}"' for name in columns)
    with driver.cursor() as cursor, cursor.copy(f'COPY "{table}" ({names}) FROM STDIN') as copy:
        for row in rows:
            copy.write_row(row)


def changes_table() -> Table:
    """The ``changes`` table (for statements that read it in bulk)."""
    return _changes


def insert_selected(
    session: Session, model: type[schema.Base], columns: Sequence[str], rows: Select[Any]
) -> None:
    """Insert the rows a SELECT gives (its columns in ``columns`` order); a row
    whose primary key is taken replaces the row that has it."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        table = _table(model)
        upsert = postgresql.insert(table)
        keys = [column.name for column in table.primary_key.columns]
        updated = {name: upsert.excluded[name] for name in columns if name not in keys}
        selected = upsert.from_select(list(columns), rows)
        session.execute(selected.on_conflict_do_update(index_elements=keys, set_=updated))
        return
    statement = insert(model).prefix_with("OR REPLACE").from_select(list(columns), rows)
    session.execute(statement)


def _upsert(model: type[schema.Base], columns: Sequence[str]) -> Any:
    """PostgreSQL's INSERT ... ON CONFLICT (primary key) DO UPDATE of ``columns``."""
    table = _table(model)
    statement = postgresql.insert(table)
    keys = [column.name for column in table.primary_key.columns]
    updated = {name: statement.excluded[name] for name in columns if name not in keys}
    if not updated:
        return statement.on_conflict_do_nothing(index_elements=keys)
    return statement.on_conflict_do_update(index_elements=keys, set_=updated)


# --- register state and change feed ---------------------------------------------------


def lock_state(session: Session) -> int:
    """Take the register's write lock (the state row) and return the last sequence."""
    statement = (
        update(_state)
        .where(_state.c.id == 1)
        .values(last_sequence=_state.c.last_sequence)
        .returning(_state.c.last_sequence)
    )
    return int(session.execute(statement).scalar_one())


def last_sequence(connection: Executor) -> int:
    return int(connection.execute(select(_state.c.last_sequence)).scalar_one())


def write_changes(
    session: Session, changes: Sequence[Change], leaf_hashes: Sequence[bytes] | None = None
) -> None:
    """Insert numbered changes and move the state's last sequence to the last one.

    ``leaf_hashes`` (one per change) are the changes' hashes in the Merkle log.
    """
    if not changes:
        return
    hashes = leaf_hashes if leaf_hashes is not None else [None] * len(changes)
    rows = [_change_values(c, h) for c, h in zip(changes, hashes, strict=True)]
    insert_rows(session, schema.ChangeRecord, _CHANGE_COLUMNS, rows)
    session.execute(
        update(_state).where(_state.c.id == 1).values(last_sequence=changes[-1].sequence)
    )


def changes_after(connection: Executor, after: int, limit: int) -> list[Change]:
    """Up to ``limit`` changes with a sequence greater than ``after``, in order."""
    rows = connection.execute(
        select(_changes)
        .where(_changes.c.sequence > after)
        .order_by(_changes.c.sequence)
        .limit(limit)
    )
    return [change_from_row(row) for row in rows]


def changes_of_imei(
    connection: Executor, key: int, limit: int = 1_000, after: int = 0
) -> list[Change]:
    """Up to ``limit`` changes of one IMEI with a sequence greater than ``after``, in order."""
    rows = connection.execute(
        select(_changes)
        .where(_changes.c.imei_key == key, _changes.c.sequence > after)
        .order_by(_changes.c.sequence)
        .limit(limit)
    )
    return [change_from_row(row) for row in rows]


def last_change_of(
    connection: Executor, key: int, kinds: Iterable[ChangeKind], imsi: str | None = None
) -> Change | None:
    """The latest change of one of ``kinds`` to an IMEI (and pair, given ``imsi``), if any."""
    query = select(_changes).where(
        _changes.c.imei_key == key, _changes.c.kind.in_([int(kind) for kind in kinds])
    )
    if imsi is not None:
        query = query.where(_changes.c.imsi == imsi)
    row = connection.execute(query.order_by(_changes.c.sequence.desc()).limit(1)).first()
    return None if row is None else change_from_row(row)


def last_change_of_device(connection: Executor, device_id: str) -> Change | None:
    """The latest change that names this device, if any."""
    names = _changes.c.device_id == device_id
    if device_id.startswith("D") and device_id[1:].isdigit():  # its first slot stores ''
        first = and_(
            _changes.c.sequence == int(device_id[1:]),
            _changes.c.kind == int(ChangeKind.WHITELIST_ADDED),
            _changes.c.leaf_version >= 2,
            _changes.c.device_id == OWN_DEVICE,
        )
        names = or_(names, first)
    row = connection.execute(
        select(_changes).where(names).order_by(_changes.c.sequence.desc()).limit(1)
    ).first()
    return None if row is None else change_from_row(row)


_CHANGE_COLUMNS = (
    "sequence",
    "kind",
    "imei_key",
    "imsi",
    "msisdn",
    "source",
    "valid_until_us",
    "device_id",
    "blacklist_cause",
    "block_date_us",
    "operator_mcc_mnc",
    "policy_json",
    "committed_at_us",
    "actor",
    "leaf_hash",
    "leaf_version",
    "reference",
    "brand",
    "model",
    "device_imei_keys",
    "police_report",
    "reason",
    "subscriber_salt",
)


def _change_values(change: Change, leaf_hash: bytes | None) -> tuple[Any, ...]:
    """A change's row, in ``_CHANGE_COLUMNS`` order (the table's, so that
    ``insert_rows`` hands the tuples to SQLite as they are)."""
    source, cause, policy = change.source, change.blacklist_cause, change.policy
    return (
        change.sequence,
        int(change.kind),
        change.imei_key,
        change.imsi,
        change.msisdn,
        None if source is None else int(source),
        change.valid_until_us,
        stored_device_id(change),
        None if cause is None else int(cause),
        change.block_date_us,
        change.operator_mcc_mnc,
        "" if policy is None else _policy_json(policy),
        change.committed_at_us,
        change.actor,
        leaf_hash,
        change.leaf_version,
        change.reference,
        change.brand,
        change.model,
        stored_slots(change),
        change.police_report,
        change.reason,
        change.subscriber_salt or None,
    )


# ``changes.device_imei_keys`` of a version 2 registration (migration 0006):
# '' when its slots are exactly its own IMEI (nearly every device), '-' when
# it has none; every other change stores its keys joined (or '' for none).
OWN_SLOT = ""
NO_SLOTS = "-"


def stored_slots(change: Change) -> str:
    """What ``changes.device_imei_keys`` stores for this change."""
    keys = change.device_imei_keys
    if change.kind is ChangeKind.WHITELIST_ADDED and change.leaf_version >= 2:
        if len(keys) == 1 and keys[0] == change.imei_key:
            return OWN_SLOT
        if not keys:
            return NO_SLOTS
    return join_keys(keys)


def slots_of(kind: int, leaf_version: int, imei_key: int | None, stored: str) -> tuple[int, ...]:
    """The slot keys of a change from what ``stored_slots`` stored."""
    if kind == ChangeKind.WHITELIST_ADDED and leaf_version >= 2:
        if stored == OWN_SLOT and imei_key is not None:
            return (imei_key,)
        if stored == NO_SLOTS:
            return ()
    return tuple(map(int, stored.split(","))) if stored else ()


# ``changes.device_id`` of a version 2 registration (migration 0007): '' when
# it is ``D<its own sequence>`` (the first slot of every device), '-' when it
# is empty (only hand-made changes); every other change stores it as it is.
OWN_DEVICE = ""
NO_DEVICE = "-"


def stored_device_id(change: Change) -> str:
    """What ``changes.device_id`` stores for this change."""
    if change.kind is ChangeKind.WHITELIST_ADDED and change.leaf_version >= 2:
        if change.device_id == device_id_of(change.sequence):
            return OWN_DEVICE
        if not change.device_id:
            return NO_DEVICE
    return change.device_id


def device_id_from(kind: int, leaf_version: int, sequence: int, stored: str) -> str:
    """The device id of a change from what ``stored_device_id`` stored."""
    if kind == ChangeKind.WHITELIST_ADDED and leaf_version >= 2:
        if stored == OWN_DEVICE:
            return device_id_of(sequence)
        if stored == NO_DEVICE:
            return ""
    return stored


def join_keys(keys: Sequence[int]) -> str:
    """IMEI keys as stored in a text column: comma separated, in order."""
    if len(keys) == 1:  # most devices have one slot; an import joins a key per row
        return str(keys[0])
    return ",".join(map(str, keys))


def split_keys(text: str) -> tuple[int, ...]:
    """The keys ``join_keys`` stored."""
    return tuple(int(key) for key in text.split(",")) if text else ()


# Enum members by number: a dict lookup instead of the Enum call, which
# costs more than the rest of building a change (the start-up proof builds
# one per change of the log).
_KINDS = {int(kind): kind for kind in ChangeKind}
_SOURCES = {int(source): source for source in RegistrationSource}
_CAUSES = {int(cause): cause for cause in BlacklistCause}


def change_from_row(row: Row[Any]) -> Change:
    """The change a ``changes`` row stores (any row with its column names)."""
    source, cause, keys, salt = (
        row.source,
        row.blacklist_cause,
        row.device_imei_keys,
        row.subscriber_salt,
    )
    kind = _KINDS.get(row.kind)
    if kind is None:
        raise ValueError(f"change {row.sequence} has kind {row.kind}, which is not a ChangeKind")
    fields = {
        "kind": kind,
        "imei_key": row.imei_key,
        "imsi": row.imsi,
        "msisdn": row.msisdn,
        "source": None if source is None else _SOURCES.get(source) or RegistrationSource(source),
        "valid_until_us": row.valid_until_us,
        "device_id": device_id_from(row.kind, row.leaf_version, row.sequence, row.device_id),
        "blacklist_cause": None if cause is None else _CAUSES.get(cause) or BlacklistCause(cause),
        "block_date_us": row.block_date_us,
        "operator_mcc_mnc": row.operator_mcc_mnc,
        "policy": _policy_from_json(row.policy_json) if row.policy_json else None,
        "sequence": row.sequence,
        "committed_at_us": row.committed_at_us,
        "actor": row.actor,
        "reference": row.reference,
        "brand": row.brand,
        "model": row.model,
        "device_imei_keys": slots_of(row.kind, row.leaf_version, row.imei_key, keys),
        "police_report": row.police_report,
        "reason": row.reason,
        "subscriber_salt": bytes(salt) if salt else b"",
        "leaf_version": row.leaf_version,
    }
    # The frozen dataclass's __init__ sets its 22 fields one object.__setattr__
    # at a time; the values are the stored ones, so set them at once.
    change = object.__new__(Change)
    object.__setattr__(change, "__dict__", fields)
    return change


def _policy_json(policy: Policy) -> str:
    return json.dumps(
        {
            "phase": int(policy.phase),
            "grace_days": policy.grace_days,
            "clone_threshold": policy.clone_threshold,
            "clone_window_seconds": policy.clone_window_seconds,
            "updated_at_us": policy.updated_at_us,
            "updated_by": policy.updated_by,
        },
        sort_keys=True,
    )


def _policy_from_json(text: str) -> Policy:
    data = json.loads(text)
    data["phase"] = Phase(data["phase"])
    return Policy(**data)


# --- policy ------------------------------------------------------------------------------


def load_policy(connection: Executor) -> Policy:
    row = connection.execute(select(_state)).one()
    return Policy(
        phase=Phase(row.phase),
        grace_days=row.grace_days,
        clone_threshold=row.clone_threshold,
        clone_window_seconds=row.clone_window_seconds,
        updated_at_us=row.policy_updated_at_us,
        updated_by=row.policy_updated_by,
    )


def save_policy(session: Session, policy: Policy) -> None:
    session.execute(
        update(_state)
        .where(_state.c.id == 1)
        .values(
            phase=int(policy.phase),
            grace_days=policy.grace_days,
            clone_threshold=policy.clone_threshold,
            clone_window_seconds=policy.clone_window_seconds,
            policy_updated_at_us=policy.updated_at_us,
            policy_updated_by=policy.updated_by,
        )
    )


# --- whitelist and devices ------------------------------------------------------------


def registration_of(connection: Executor, key: int) -> Registration | None:
    device_id = connection.execute(
        select(_whitelist.c.device_id).where(_whitelist.c.imei_key == key)
    ).scalar()
    if device_id is None:
        return None
    row = connection.execute(select(_devices).where(_devices.c.id == device_id)).first()
    if row is None and device_id == OWN_DEVICE:  # its latest registration holds it (0007)
        change = last_change_of(connection, key, (ChangeKind.WHITELIST_ADDED,))
        if change is None:
            raise LookupError(f"IMEI key {key} is whitelisted by no change")
        return registration_of_change(change)
    if row is None:
        raise LookupError(
            f"IMEI key {key} is whitelisted for device {device_id!r}, which has no row"
        )
    return Registration(
        device_id=row.id,
        imei_keys=tuple(int(k) for k in row.imei_keys.split(",")),
        source=RegistrationSource(row.source),
        reference=row.reference,
        valid_until_us=row.valid_until_us,
        brand=row.brand,
        model=row.model,
        registered_by=row.registered_by,
        registered_at_us=row.registered_at_us,
    )


def device_id_of(sequence: int) -> str:
    """The id of the device registered by change ``sequence`` (its first slot's)."""
    return f"D{sequence}"


def registration_of_change(change: Change) -> Registration:
    """The device a WHITELIST_ADDED change registered, as its device row would hold it."""
    if change.kind is not ChangeKind.WHITELIST_ADDED or change.source is None:
        raise ValueError(f"change {change.sequence} registers no device")
    return Registration(
        device_id=change.device_id,
        imei_keys=change.device_imei_keys,
        source=change.source,
        reference=change.reference,
        valid_until_us=change.valid_until_us,
        brand=change.brand,
        model=change.model,
        registered_by=change.actor,
        registered_at_us=change.committed_at_us,
    )


# --- blacklist ------------------------------------------------------------------------


def blacklist_entry(connection: Executor, key: int) -> BlacklistEntry | None:
    row = connection.execute(select(_blacklist).where(_blacklist.c.imei_key == key)).first()
    if row is None:
        return None
    return BlacklistEntry(
        row.imei_key,
        BlacklistCause(row.cause),
        row.police_report,
        row.blocked_by,
        row.blocked_at_us,
        row.subscriber_imsi,
    )


# --- notifications --------------------------------------------------------------------


def notifications_of_imei(
    connection: Executor,
    key: int,
    imsi_prefixes: Sequence[str] | None = None,
    limit: int | None = None,
) -> list[Notification]:
    """The first ``limit`` notifications of one IMEI by IMSI, only of IMSIs
    starting with one of ``imsi_prefixes`` (None: all)."""
    query = select(_notifications).where(_notifications.c.imei_key == key)
    if imsi_prefixes is not None:
        query = query.where(_starts_with_any(_notifications.c.imsi, imsi_prefixes))
    rows = connection.execute(query.order_by(_notifications.c.imsi).limit(limit))
    return [_notification(row) for row in rows]


def _starts_with_any(column: ColumnElement[str], prefixes: Sequence[str]) -> ColumnElement[bool]:
    """``column`` starts with one of the prefixes (false for none)."""
    return or_(false(), *(column.startswith(prefix, autoescape=True) for prefix in prefixes))


def notifications_page(
    connection: Executor,
    imsi_prefixes: Sequence[str] | None,
    after: tuple[int, str] | None,
    limit: int,
) -> list[Notification]:
    """Notifications ordered by (IMEI key, IMSI), after a position, only of
    IMSIs starting with one of ``imsi_prefixes`` (None: all)."""
    query = select(_notifications)
    if imsi_prefixes is not None:
        query = query.where(_starts_with_any(_notifications.c.imsi, imsi_prefixes))
    if after is not None:
        query = query.where(tuple_(_notifications.c.imei_key, _notifications.c.imsi) > after)
    query = query.order_by(_notifications.c.imei_key, _notifications.c.imsi).limit(limit)
    return [_notification(row) for row in connection.execute(query)]


def _notification(row: Row[Any]) -> Notification:
    return Notification(
        row.imei_key,
        row.imsi,
        row.msisdn,
        row.operator_mcc_mnc,
        row.first_seen_us,
        row.block_date_us,
    )


# --- exceptions -----------------------------------------------------------------------


def exceptions_of_imei(
    connection: Executor,
    key: int,
    imsi_prefixes: Sequence[str] | None = None,
    limit: int | None = None,
) -> list[ExceptionEntry]:
    """The first ``limit`` pairs of one IMEI by IMSI, only of IMSIs starting
    with one of ``imsi_prefixes`` (None: all)."""
    query = select(_exceptions).where(_exceptions.c.imei_key == key)
    if imsi_prefixes is not None:
        query = query.where(_starts_with_any(_exceptions.c.imsi, imsi_prefixes))
    rows = connection.execute(query.order_by(_exceptions.c.imsi).limit(limit))
    return [ExceptionEntry(r.imei_key, r.imsi, r.reason, r.added_by) for r in rows]


# --- idempotency (AIP-155) -------------------------------------------------------------


def stored_answer(
    session: Session, organisation: str, method: str, request_id: str
) -> tuple[str, bytes] | None:
    row = session.execute(
        select(_idempotency.c.fingerprint, _idempotency.c.response).where(
            _idempotency.c.organisation == organisation,
            _idempotency.c.method == method,
            _idempotency.c.request_id == request_id,
        )
    ).first()
    return None if row is None else (row.fingerprint, bytes(row.response))


def store_answer(
    session: Session,
    organisation: str,
    method: str,
    request_id: str,
    fingerprint: str,
    response: bytes,
    now_us: int,
) -> None:
    session.execute(
        insert(_idempotency).values(
            organisation=organisation,
            method=method,
            request_id=request_id,
            fingerprint=fingerprint,
            response=response,
            created_at_us=now_us,
        )
    )


# --- snapshots --------------------------------------------------------------------------


def iter_rows(
    connection: Connection, table_name: str, columns: Iterable[str], batch: int
) -> Iterator[list[Row[Any]]]:
    """Stream a list table ordered by its key, ``batch`` rows at a time."""
    table = schema.Base.metadata.tables[table_name]
    order = [column for column in table.primary_key.columns]
    result = connection.execution_options(stream_results=True, yield_per=batch).execute(
        select(*[table.c[name] for name in columns]).order_by(*order)
    )
    for part in result.partitions(batch):
        yield list(part)

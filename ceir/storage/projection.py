"""The list tables as a projection of the change log.

Every row of ``whitelist``, ``devices``, ``blacklist``, ``notifications`` and
``exceptions``, and the policy in ``register_state``, is what the changes
that touched it say, and nothing else: ``rows_of`` maps one change to the
rows it writes or deletes. Three readers share that one mapping, so they
cannot drift apart:

- the write path (``write_projection``) writes the rows of each committed
  unit's changes, batched per table;
- ``ProjectedRows`` applies changes to rows held in memory: the replay that
  ``ceir audit verify --db`` and the server's start-up compare the tables
  with (``ceir.service.list_audit``), and the in-memory records that handler
  tests run against;
- ``ProjectedRows`` and the tables answer the same reads
  (``registration_of``, ``blacklist_entry``), which the handlers' permission
  rules use.

Leaf version 1 changes (written before migration 0004) carry only the
columns the audit compared then (``ListTable.v1_values``); every other
column of a row they wrote is ``UNKNOWN`` in the replay and is not compared.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Connection, Text, case, cast, delete, literal, select, tuple_
from sqlalchemy.orm import Session

from ceir.domain.model import (
    BlacklistCause,
    BlacklistEntry,
    Change,
    ChangeKind,
    Policy,
    Registration,
    RegistrationSource,
)

from . import repository as repo
from . import schema

__all__ = [
    "BLACKLIST",
    "DEVICES",
    "EXCEPTIONS",
    "LIST_TABLES",
    "NOTIFICATIONS",
    "REGISTER_ACTOR",
    "UNKNOWN",
    "WHITELIST",
    "Key",
    "ListTable",
    "ProjectedRows",
    "RowWrite",
    "Values",
    "in_its_change",
    "rows_of",
    "write_projection",
]

# Who blocks an IMEI whose grace period ran out: the register itself (the
# change's actor is the organisation whose check found it).
REGISTER_ACTOR = "ceir"

Key = tuple[Any, ...]
Values = tuple[Any, ...]


class _Unknown:
    """A column value that the change which wrote the row does not carry."""

    _instance: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()


@dataclass(frozen=True)
class ListTable:
    """A projected table: its key, its other columns, the changes that write it,
    and the columns a leaf version 1 change determines."""

    name: str
    key: tuple[str, ...]
    values: tuple[str, ...]
    kinds: tuple[ChangeKind, ...]
    v1_values: tuple[str, ...]
    model: type[schema.Base]

    def v1_row(self, values: Values) -> Values:
        """The row as a version 1 change determines it: other columns UNKNOWN."""
        return tuple(
            value if column in self.v1_values else UNKNOWN
            for column, value in zip(self.values, values, strict=True)
        )


WHITELIST = ListTable(
    "whitelist",
    ("imei_key",),
    ("device_id", "valid_until_us"),
    (ChangeKind.WHITELIST_ADDED, ChangeKind.WHITELIST_REMOVED),
    ("device_id", "valid_until_us"),
    schema.WhitelistEntry,
)
DEVICES = ListTable(
    "devices",
    ("id",),
    (
        "source",
        "reference",
        "valid_until_us",
        "brand",
        "model",
        "registered_by",
        "registered_at_us",
        "imei_keys",
    ),
    (ChangeKind.WHITELIST_ADDED,),
    (),
    schema.Device,
)
BLACKLIST = ListTable(
    "blacklist",
    ("imei_key",),
    (
        "cause",
        "police_report",
        "blocked_by",
        "blocked_at_us",
        "block_date_us",
        "subscriber_imsi",
    ),
    (ChangeKind.BLACKLIST_BLOCKED, ChangeKind.BLACKLIST_UNBLOCKED),
    ("cause", "block_date_us"),
    schema.BlacklistEntry,
)
NOTIFICATIONS = ListTable(
    "notifications",
    ("imei_key", "imsi"),
    ("msisdn", "operator_mcc_mnc", "first_seen_us", "block_date_us", "subscriber_salt"),
    (
        ChangeKind.NOTIFICATION_NEW,
        ChangeKind.NOTIFICATION_RESOLVED,
        ChangeKind.NOTIFICATION_BLACKLISTED,
    ),
    ("msisdn", "operator_mcc_mnc", "block_date_us"),
    schema.NotificationEntry,
)
EXCEPTIONS = ListTable(
    "exceptions",
    ("imei_key", "imsi"),
    ("reason", "added_by", "added_at_us", "subscriber_salt"),
    (ChangeKind.EXCEPTION_ADDED, ChangeKind.EXCEPTION_REMOVED),
    (),
    schema.ExceptionPair,
)
LIST_TABLES = (WHITELIST, DEVICES, BLACKLIST, NOTIFICATIONS, EXCEPTIONS)


class RowWrite(NamedTuple):
    """One row a change writes (``values``) or deletes (``values`` is None).

    (A named tuple: an import makes two per IMEI.)"""

    table: ListTable
    key: Key
    values: Values | None


def rows_of(change: Change) -> list[RowWrite]:
    """The rows one change writes or deletes, in order (none for a policy or
    custody change)."""
    key = change.imei_key
    kind = change.kind
    if key is None or kind is ChangeKind.POLICY_CHANGED or kind is ChangeKind.CUSTODY_CHANGED:
        return []
    v1 = change.leaf_version < 2
    if kind is ChangeKind.WHITELIST_ADDED:
        device = (
            int(change.source) if change.source is not None else None,
            change.reference,
            change.valid_until_us,
            change.brand,
            change.model,
            change.actor,
            change.committed_at_us,
            repo.join_keys(change.device_imei_keys),
        )
        if in_its_change(change):  # no device row; '': the key's latest registration
            return [RowWrite(WHITELIST, (key,), (repo.OWN_DEVICE, change.valid_until_us))]
        listed = RowWrite(WHITELIST, (key,), (change.device_id, change.valid_until_us))
        return [
            listed,
            RowWrite(DEVICES, (change.device_id,), DEVICES.v1_row(device) if v1 else device),
        ]
    if kind is ChangeKind.BLACKLIST_BLOCKED:
        cause = change.blacklist_cause
        blocked = (
            None if cause is None else int(cause),
            change.police_report,
            REGISTER_ACTOR if cause is BlacklistCause.NOTIFICATION_EXPIRED else change.actor,
            change.committed_at_us,
            change.block_date_us,
            change.imsi,
        )
        return [RowWrite(BLACKLIST, (key,), BLACKLIST.v1_row(blocked) if v1 else blocked)]
    if kind is ChangeKind.NOTIFICATION_NEW:
        notified = (
            change.msisdn,
            change.operator_mcc_mnc,
            change.committed_at_us,
            change.block_date_us,
            change.subscriber_salt or None,
        )
        pair = (key, change.imsi)
        return [RowWrite(NOTIFICATIONS, pair, NOTIFICATIONS.v1_row(notified) if v1 else notified)]
    if kind is ChangeKind.EXCEPTION_ADDED:
        added = (
            change.reason,
            change.actor,
            change.committed_at_us,
            change.subscriber_salt or None,
        )
        pair = (key, change.imsi)
        return [RowWrite(EXCEPTIONS, pair, EXCEPTIONS.v1_row(added) if v1 else added)]
    if kind is ChangeKind.WHITELIST_REMOVED:
        return [RowWrite(WHITELIST, (key,), None)]
    if kind is ChangeKind.BLACKLIST_UNBLOCKED:
        return [RowWrite(BLACKLIST, (key,), None)]
    if kind in (ChangeKind.NOTIFICATION_RESOLVED, ChangeKind.NOTIFICATION_BLACKLISTED):
        return [RowWrite(NOTIFICATIONS, (key, change.imsi), None)]
    if kind is ChangeKind.EXCEPTION_REMOVED:
        return [RowWrite(EXCEPTIONS, (key, change.imsi), None)]
    raise ValueError(f"change {change.sequence}: no projection for {kind.name}")


def in_its_change(change: Change) -> bool:
    """Whether this registration's device has no ``devices`` row (migration
    0007): a version 2 registration of a one-slot device whose id is
    ``D<its sequence>``, so its change row holds every column of the device.
    Its whitelist row's device id is '' (``repo.OWN_DEVICE``): the device is
    the one the key's latest WHITELIST_ADDED change registered, which
    ``repo.registration_of`` reads."""
    return (
        change.leaf_version >= 2
        and change.device_id == repo.device_id_of(change.sequence)
        and change.device_imei_keys == (change.imei_key,)
    )


def last_policy(changes: Sequence[Change]) -> Policy | None:
    """The policy the last POLICY_CHANGED among the changes sets, if any."""
    for change in reversed(changes):
        if change.kind is ChangeKind.POLICY_CHANGED and change.policy is not None:
            return change.policy
    return None


# --- in memory ------------------------------------------------------------------------------


class ProjectedRows:
    """The projected tables held in memory, from changes applied in order."""

    def __init__(self, keep_registrations: bool = True) -> None:
        self.policy = Policy()
        self.rows: dict[str, dict[Key, Values]] = {table.name: {} for table in LIST_TABLES}
        # The registrations whose device has no row (``in_its_change``), by
        # IMEI key, for ``registration_of``; the audit's replay needs none.
        self.registrations: dict[int, Registration] | None = {} if keep_registrations else None

    def apply(self, change: Change) -> None:
        """Apply the next change."""
        if change.kind is ChangeKind.POLICY_CHANGED:
            if change.policy is not None:
                self.policy = change.policy
            return
        if (
            self.registrations is not None
            and change.kind is ChangeKind.WHITELIST_ADDED
            and change.imei_key is not None
            and in_its_change(change)
        ):
            self.registrations[change.imei_key] = repo.registration_of_change(change)
        for write in rows_of(change):
            rows = self.rows[write.table.name]
            if write.values is None:
                rows.pop(write.key, None)
            else:
                rows[write.key] = write.values

    def registration_of(self, key: int) -> Registration | None:
        """The registration the whitelist row of this IMEI points at."""
        listed = self.rows[WHITELIST.name].get((key,))
        if listed is None:
            return None
        device_id = listed[0]
        device = self.rows[DEVICES.name].get((device_id,))
        if device is None and device_id == repo.OWN_DEVICE:
            if self.registrations is None:
                raise LookupError("this replay keeps no registrations")
            return self.registrations[key]
        return registration_from_row(device_id, self.rows[DEVICES.name][(device_id,)])

    def blacklist_entry(self, key: int) -> BlacklistEntry | None:
        """The IMEI's blacklist row, if it has one."""
        row = self.rows[BLACKLIST.name].get((key,))
        if row is None:
            return None
        cause, police_report, blocked_by, blocked_at_us, _date, subscriber_imsi = row
        return BlacklistEntry(
            key, BlacklistCause(cause), police_report, blocked_by, blocked_at_us, subscriber_imsi
        )


def registration_from_row(device_id: str, values: Values) -> Registration:
    """A device row's values (``DEVICES.values`` order) as a registration."""
    source, reference, valid_until_us, brand, model, registered_by, registered_at_us, keys = values
    return Registration(
        device_id=device_id,
        imei_keys=repo.split_keys(keys),
        source=RegistrationSource(source),
        reference=reference,
        valid_until_us=valid_until_us,
        brand=brand,
        model=model,
        registered_by=registered_by,
        registered_at_us=registered_at_us,
    )


# --- in the database --------------------------------------------------------------------------


def write_projection(session: Session, changes: Sequence[Change]) -> None:
    """Write the rows of numbered changes (one unit's, in sequence order).

    Per table, only each row's last write in the batch counts: its deletes
    go in chunked ``DELETE ... IN`` statements and its rows in one batched
    upsert, so an import of 10,000 devices costs a handful of statements.
    """
    if _registrations_only(changes):
        _project_registrations(session, changes[0].sequence, changes[-1].sequence)
        return
    final: dict[str, dict[Key, Values | None]] = {table.name: {} for table in LIST_TABLES}
    for change in changes:
        if change.leaf_version < 2:  # its rows would hold UNKNOWN columns
            raise ValueError(f"change {change.sequence}: leaf version 1 changes are not written")
        for write in rows_of(change):
            final[write.table.name][write.key] = write.values
    for table in LIST_TABLES:
        rows = final[table.name]
        if not rows:
            continue
        _delete(session, table, [key for key, values in rows.items() if values is None])
        upserts = [(*key, *values) for key, values in rows.items() if values is not None]
        repo.insert_rows(session, table.model, table.key + table.values, upserts, replace=True)
    policy = last_policy(changes)
    if policy is not None:
        repo.save_policy(session, policy)


def _registrations_only(changes: Sequence[Change]) -> bool:
    """Whether the changes are version 2 registrations of one-slot devices
    with distinct IMEIs, numbered without a gap (what an import writes)."""
    added = ChangeKind.WHITELIST_ADDED
    if not changes or changes[-1].sequence - changes[0].sequence != len(changes) - 1:
        return False
    keys = set()
    for change in changes:
        key = change.imei_key
        if (
            change.kind is not added
            or change.leaf_version < 2
            or key is None
            or change.device_imei_keys != (key,)
        ):
            return False
        keys.add(key)
    return len(keys) == len(changes)


def _project_registrations(session: Session, first: int, last: int) -> None:
    """The whitelist rows of registrations ``first`` to ``last``, written by
    the database from the change rows just stored: the same rows as
    ``rows_of`` gives, without a Python tuple per IMEI. Their devices have no
    row unless an id is not ``D<sequence>`` (``in_its_change``)."""
    changes = repo.changes_table()
    numbered = changes.c.sequence.between(first, last)
    # Each change stores its device id as '' when it is D<its sequence> (0007).
    own = changes.c.device_id == repo.OWN_DEVICE
    device_id = case(
        (own, literal("D") + cast(changes.c.sequence, Text)),
        (changes.c.device_id == repo.NO_DEVICE, literal("")),
        else_=changes.c.device_id,
    )
    # The whitelist rows' device ids are '' for all of them (``in_its_change``).
    listed = case((changes.c.device_id == repo.NO_DEVICE, literal("")), else_=changes.c.device_id)
    whitelist = select(changes.c.imei_key, listed, changes.c.valid_until_us)
    columns = list(WHITELIST.key + WHITELIST.values)
    repo.insert_selected(session, WHITELIST.model, columns, whitelist.where(numbered))
    device = select(
        device_id,
        changes.c.source,
        changes.c.reference,
        changes.c.valid_until_us,
        changes.c.brand,
        changes.c.model,
        changes.c.actor,
        changes.c.committed_at_us,
        # A one-slot device's only key, which its change stores as OWN_SLOT.
        cast(changes.c.imei_key, Text),
    )
    columns = list(DEVICES.key + DEVICES.values)
    repo.insert_selected(session, DEVICES.model, columns, device.where(numbered, ~own))


def _delete(session: Session, table: ListTable, keys: list[Key]) -> None:
    if not keys:
        return
    sql_table = schema.Base.metadata.tables[table.name]
    if len(table.key) == 1:
        column = sql_table.c[table.key[0]]
        for part in repo.chunks([key[0] for key in keys]):
            session.execute(delete(sql_table).where(column.in_(part)))
        return
    columns = tuple_(*(sql_table.c[name] for name in table.key))
    for part in repo.chunks(keys, 1_000):
        session.execute(delete(sql_table).where(columns.in_(part)))


def table_rows(connection: Connection, table: ListTable) -> Iterator[tuple[Key, Values]]:
    """The rows a table holds, as (key, values) in ``table``'s column order."""
    width = len(table.key)
    for batch in repo.iter_rows(connection, table.name, table.key + table.values, 50_000):
        for row in batch:
            values = tuple(bytes(v) if isinstance(v, memoryview) else v for v in row[width:])
            yield tuple(row[:width]), values

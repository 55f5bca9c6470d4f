"""The list tables against the replay of the change log: presence, then values.

Replaying the changes gives, for each list table, the rows it must hold,
keyed by their primary key, with the columns the changes carry. A table row
with no replayed counterpart was inserted behind the log's back; a replayed
row missing from its table was deleted; a row on both sides whose columns
differ was altered. Presence is compared on the keys, never through a value
that could stand for "absent" (a whitelist entry without expiry has the
value ``None``).

Only the columns that the leaves determine are compared. The others (who
blocked, when, the police report, an exception's reason) and the ``devices``
table are not in leaf version 1, so the log cannot explain them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from ceir.domain.model import Change, ChangeKind, Policy
from ceir.storage import repository as repo
from ceir.storage.database import Database
from ceir.storage.streaming import driver_batches, select_sql

_REPLAY_BATCH = 10_000

__all__ = [
    "LIST_TABLES",
    "ListTable",
    "ListsNotFromLog",
    "ReplayedLists",
    "RowDifference",
    "describe",
    "list_differences",
    "policy_differs",
    "prove_lists",
    "replay",
    "row_differences",
]

Key = tuple[Any, ...]
Values = tuple[Any, ...]


@dataclass(frozen=True)
class ListTable:
    """A list table: its key, the columns the log determines, the changes that write it."""

    name: str
    key: tuple[str, ...]
    values: tuple[str, ...]
    adds: ChangeKind
    removes: tuple[ChangeKind, ...]

    @property
    def kinds(self) -> tuple[ChangeKind, ...]:
        return (self.adds, *self.removes)


WHITELIST = ListTable(
    "whitelist",
    ("imei_key",),
    ("device_id", "valid_until_us"),
    ChangeKind.WHITELIST_ADDED,
    (ChangeKind.WHITELIST_REMOVED,),
)
BLACKLIST = ListTable(
    "blacklist",
    ("imei_key",),
    ("cause", "block_date_us"),
    ChangeKind.BLACKLIST_BLOCKED,
    (ChangeKind.BLACKLIST_UNBLOCKED,),
)
NOTIFICATIONS = ListTable(
    "notifications",
    ("imei_key", "imsi"),
    ("msisdn", "operator_mcc_mnc", "block_date_us"),
    ChangeKind.NOTIFICATION_NEW,
    (ChangeKind.NOTIFICATION_RESOLVED, ChangeKind.NOTIFICATION_BLACKLISTED),
)
EXCEPTIONS = ListTable(
    "exceptions",
    ("imei_key", "imsi"),
    (),
    ChangeKind.EXCEPTION_ADDED,
    (ChangeKind.EXCEPTION_REMOVED,),
)
LIST_TABLES = (WHITELIST, BLACKLIST, NOTIFICATIONS, EXCEPTIONS)
_TABLE_OF = {kind: table for table in LIST_TABLES for kind in table.kinds}


def _row_of(table: ListTable, change: Change) -> tuple[Key, Values]:
    key: Key = (change.imei_key,) if len(table.key) == 1 else (change.imei_key, change.imsi)
    if table is WHITELIST:
        return key, (change.device_id, change.valid_until_us)
    if table is BLACKLIST:
        cause = None if change.blacklist_cause is None else int(change.blacklist_cause)
        return key, (cause, change.block_date_us)
    if table is NOTIFICATIONS:
        return key, (change.msisdn, change.operator_mcc_mnc, change.block_date_us)
    return key, ()


class ReplayedLists:
    """The rows each list table must hold, from the changes applied in order."""

    def __init__(self) -> None:
        self.policy = Policy()
        self.rows: dict[str, dict[Key, Values]] = {table.name: {} for table in LIST_TABLES}

    def apply(self, change: Change) -> None:
        """Apply the next change (a change without an IMEI key changes no list row)."""
        if change.kind is ChangeKind.POLICY_CHANGED:
            if change.policy is not None:
                self.policy = change.policy
            return
        table = _TABLE_OF.get(change.kind)
        if table is None or change.imei_key is None:
            return
        key, values = _row_of(table, change)
        if change.kind is table.adds:
            self.rows[table.name][key] = values
        else:
            self.rows[table.name].pop(key, None)


def _table_rows(connection: Connection, table: ListTable) -> dict[Key, Values]:
    width = len(table.key)
    rows: dict[Key, Values] = {}
    sql = select_sql(table.name, table.key + table.values, table.key)
    for batch in driver_batches(connection, sql, 50_000):
        rows.update((row[:width], row[width:]) for row in batch)
    return rows


@dataclass(frozen=True)
class RowDifference:
    """One list row the table holds otherwise than the replay gives it.

    ``expected`` is what the log gives (None: no row), ``actual`` what the
    table holds (None: no row).
    """

    table: ListTable
    key: Key
    expected: Values | None
    actual: Values | None

    @property
    def what(self) -> str:
        """``inserted``, ``deleted`` or ``altered`` (behind the log's back)."""
        if self.expected is None:
            return "inserted"
        return "deleted" if self.actual is None else "altered"


def row_differences(
    connection: Connection, replayed: ReplayedLists, table: ListTable
) -> list[RowDifference]:
    """Every row of one list table that differs from the replay, in key order.

    The table is streamed past the replay once, keeping only the rows that
    differ (a million-row table is not held twice); only when some replayed
    row was not met are the table's keys read again, to name the missing ones.
    """
    expected = replayed.rows[table.name]
    width, absent = len(table.key), object()
    actual: dict[Key, Values] = {}  # the table's rows that differ
    met = 0
    sql = select_sql(table.name, table.key + table.values, table.key)
    for batch in driver_batches(connection, sql, 50_000):
        for row in batch:
            key, values = row[:width], row[width:]
            want = expected.get(key, absent)
            if want is absent:
                actual[key] = values  # inserted
                continue
            met += 1
            if want != values:
                actual[key] = values  # altered
    differing = list(actual)
    if met != len(expected):  # deleted
        present = _table_rows(connection, table).keys()
        differing += [key for key in expected if key not in present]
    return [
        RowDifference(table, key, expected.get(key), actual.get(key)) for key in sorted(differing)
    ]


def list_differences(connection: Connection, replayed: ReplayedLists) -> Iterator[str]:
    """Per list table, the first row (in key order) that differs from the replay.

    Each message names the table, the IMEI key (and IMSI), how it differs,
    and the change that should explain it.
    """
    for table in LIST_TABLES:
        differing = row_differences(connection, replayed, table)
        if not differing:
            continue
        others = len(differing) - 1
        more = f" (and {others} more differing {table.name} rows)" if others else ""
        yield describe(connection, differing[0]) + more
    if policy_differs(connection, replayed):
        yield "register_state: the policy differs from the last POLICY_CHANGED change"


def policy_differs(connection: Connection, replayed: ReplayedLists) -> bool:
    """True when the stored policy is not the last POLICY_CHANGED change's."""
    return replayed.policy != repo.load_policy(connection)


def describe(connection: Connection, difference: RowDifference) -> str:
    """The difference in words, with the change that should explain it: the
    last change of that row (looked up only here, for the rows that differ)."""
    table, key = difference.table, difference.key
    imsi = key[1] if len(key) > 1 else None
    last = repo.last_change_of(connection, int(key[0]), table.kinds, imsi)
    change = "" if last is None else f"change {last.sequence} ({last.kind.name})"
    row = f"{table.name} row for {_row_name(key)}"
    if difference.expected is None:
        explained = (
            "no change explains it"
            if last is None
            else f"{change} removed it and no later change added it"
        )
        return (
            f"{row} inserted behind the log: the log gives no row, the table holds "
            f"{_show(table, difference.actual)}; {explained}"
        )
    if difference.actual is None:
        return (
            f"{row} deleted behind the log: the table holds no row, the log gives "
            f"{_show(table, difference.expected)}; {change or 'a change'} added it and no "
            "later change removed it"
        )
    values = "; ".join(
        f"{column} is {have!r} in the table, {change or 'the log'} set {want!r}"
        for column, want, have in zip(
            table.values, difference.expected, difference.actual, strict=True
        )
        if want != have
    )
    return f"{row} altered behind the log: {values}"


def _show(table: ListTable, values: Values | None) -> str:
    if not table.values:
        return "a row"
    assert values is not None
    pairs = ", ".join(
        f"{column}={value!r}" for column, value in zip(table.values, values, strict=True)
    )
    return f"({pairs})"


def _row_name(key: Key) -> str:
    name = f"IMEI key {int(key[0]):014d}"
    return f"{name}, IMSI {key[1]}" if len(key) > 1 else name


def replay(connection: Connection) -> ReplayedLists:
    """Every change of the log, in order, replayed into the rows the tables must hold."""
    replayed = ReplayedLists()
    after = 0
    while batch := repo.changes_after(connection, after, _REPLAY_BATCH):
        for change in batch:
            replayed.apply(change)
        after = batch[-1].sequence
    return replayed


class ListsNotFromLog(Exception):
    """The list tables hold rows that the change log does not explain."""

    def __init__(self, differences: list[str]) -> None:
        self.differences = differences
        super().__init__(
            "the list tables are not what the change log gives, so the register will not "
            "answer from them: " + "; ".join(differences) + ". Run `ceir audit verify --db` "
            "for the whole audit; restore the database from a copy the audit passes, or "
            "start with `ceir serve --repair` to rebuild the list tables from the log"
        )


def prove_lists(db: Database) -> None:
    """Raise ListsNotFromLog unless every list table equals the replay of the
    log (one consistent read: another server may be writing)."""
    with db.read_snapshot() as connection:
        differences = list(list_differences(connection, replay(connection)))
    if differences:
        raise ListsNotFromLog(differences)

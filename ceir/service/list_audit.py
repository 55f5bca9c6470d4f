"""The list tables against the replay of the change log: presence, then values.

Replaying the changes gives, for each list table (``whitelist``, ``devices``,
``blacklist``, ``notifications``, ``exceptions``), the rows it must hold,
keyed by their primary key, with every column; the policy in
``register_state`` is the last ``POLICY_CHANGED``'s. A table row with no
replayed counterpart was inserted behind the log's back; a replayed row
missing from its table was deleted; a row on both sides whose columns differ
was altered. Presence is compared on the keys, never through a value that
could stand for "absent" (a whitelist entry without expiry has the value
``None``).

The replay is the write path's own mapping (``ceir.storage.projection``):
the server writes each change's rows with ``rows_of``, and this audit
replays them with it, so the two cannot disagree about what a change means.

Changes of leaf version 1 (written before migration 0004) do not carry every
column: not who acted, the authority's reference, brand, model, slot keys,
police report, reason or subscriber salt. For a row whose last write was a
version 1 change, the replay holds ``UNKNOWN`` in each column that version
does not determine (``ListTable.v1_values`` lists the ones it does:
whitelist ``device_id`` and ``valid_until_us``; blacklist ``cause`` and
``block_date_us``; notifications ``msisdn``, ``operator_mcc_mnc`` and
``block_date_us``; no column of a device or an exception pair), and those
columns are not compared. Presence is compared for every row, whatever its
version: a version 1 change names the row it writes. A row rewritten by a
version 2 change is compared in full.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Connection, LargeBinary

from ceir.domain.model import Change
from ceir.storage import repository as repo
from ceir.storage import schema
from ceir.storage.database import Database
from ceir.storage.projection import (
    DEVICES,
    LIST_TABLES,
    UNKNOWN,
    Key,
    ListTable,
    ProjectedRows,
    Values,
)
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
    "without_cycle_collection",
]


class ReplayedLists(ProjectedRows):
    """The rows each list table must hold, from the changes applied in order
    (``apply`` each change; ``rows`` by table name, then by key)."""


@contextmanager
def without_cycle_collection() -> Iterator[None]:
    """No cyclic garbage collection inside (reference counting still frees).

    A replay of a million changes keeps millions of objects alive, none of
    them in a cycle; each full collection the allocations trigger walks them
    all (at a million changes the one-process pass took 48 s with them, 36 s
    without)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _binary_columns(table: ListTable) -> tuple[int, ...]:
    """Where ``table.values`` holds binary columns (PostgreSQL's driver may
    return them as ``memoryview``; the replay holds ``bytes``)."""
    columns = schema.Base.metadata.tables[table.name].c
    return tuple(
        index
        for index, name in enumerate(table.values)
        if isinstance(columns[name].type, LargeBinary)
    )


def _driver_rows(connection: Connection, table: ListTable) -> Iterator[tuple[Key, Values]]:
    """The rows a table holds as (key, values), in key order, straight from the
    driver's cursor (binary values as ``bytes``)."""
    width = len(table.key)
    binary = _binary_columns(table)
    sql = select_sql(table.name, table.key + table.values, table.key)
    for batch in driver_batches(connection, sql, 50_000):
        if not binary:
            for row in batch:
                yield tuple(row[:width]), tuple(row[width:])
            continue
        for row in batch:
            values = list(row[width:])
            for index in binary:
                if isinstance(values[index], memoryview):
                    values[index] = bytes(values[index])
            yield tuple(row[:width]), tuple(values)


def _same(expected: Values, actual: Values) -> bool:
    """Equal in every column the log determines (``UNKNOWN`` matches anything)."""
    return expected == actual or all(
        want is UNKNOWN or want == have for want, have in zip(expected, actual, strict=True)
    )


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
    actual: dict[Key, Values] = {}  # the table's rows that differ
    met = 0
    with without_cycle_collection():
        for key, values in _driver_rows(connection, table):
            want = expected.get(key)  # a replayed row is never None
            if want is None:
                actual[key] = values  # inserted
                continue
            met += 1
            if not _same(want, values):
                actual[key] = values  # altered
        differing = list(actual)
        if met != len(expected):  # deleted
            present = {key for key, _ in _driver_rows(connection, table)}
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
    last = _last_change(connection, table, key)
    change = "" if last is None else f"change {last.sequence} ({last.kind.name})"
    row = f"{table.name} row for {_row_name(table, key)}"
    if difference.expected is None:
        explained = (
            "no change explains it"
            if last is None
            else f"{change} is the last change of this row and leaves no such row"
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
        if want is not UNKNOWN and want != have
    )
    return f"{row} altered behind the log: {values}"


def _last_change(connection: Connection, table: ListTable, key: Key) -> Change | None:
    if table is DEVICES:
        return repo.last_change_of_device(connection, str(key[0]))
    imsi = key[1] if len(key) > 1 else None
    return repo.last_change_of(connection, int(key[0]), table.kinds, imsi)


def _show(table: ListTable, values: Values | None) -> str:
    if not table.values:
        return "a row"
    assert values is not None
    pairs = ", ".join(
        f"{column}={value!r}" for column, value in zip(table.values, values, strict=True)
    )
    return f"({pairs})"


def _row_name(table: ListTable, key: Key) -> str:
    if table is DEVICES:
        return f"device {key[0]}"
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

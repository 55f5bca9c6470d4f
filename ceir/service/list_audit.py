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

from collections.abc import Iterator

from sqlalchemy import Connection

from ceir.storage import repository as repo
from ceir.storage.database import Database
from ceir.storage.projection import (
    DEVICES,
    LIST_TABLES,
    UNKNOWN,
    Key,
    ListTable,
    ProjectedRows,
    Values,
    table_rows,
)

_REPLAY_BATCH = 10_000

__all__ = [
    "LIST_TABLES",
    "ListTable",
    "ListsNotFromLog",
    "ReplayedLists",
    "list_differences",
    "prove_lists",
    "replay",
]


class ReplayedLists(ProjectedRows):
    """The rows each list table must hold, from the changes applied in order
    (``apply`` each change; ``rows`` by table name, then by key)."""


def _table_rows(connection: Connection, table: ListTable) -> dict[Key, Values]:
    return dict(table_rows(connection, table))


def _same(expected: Values, actual: Values) -> bool:
    """Equal in every column the log determines (``UNKNOWN`` matches anything)."""
    return all(want is UNKNOWN or want == have for want, have in zip(expected, actual, strict=True))


def list_differences(connection: Connection, replayed: ReplayedLists) -> Iterator[str]:
    """Per list table, the first row (in key order) that differs from the replay.

    Each message names the table, the IMEI key (and IMSI), what differs, and
    the last change of that row, which should have explained it.
    """
    for table in LIST_TABLES:
        expected, actual = replayed.rows[table.name], _table_rows(connection, table)
        differing = list(expected.keys() ^ actual.keys())  # inserted or deleted
        both = expected.keys() & actual.keys()
        differing += [key for key in both if not _same(expected[key], actual[key])]  # altered
        if not differing:
            continue
        key = min(differing)
        what = _what_differs(table, expected.get(key), actual.get(key))
        others = len(differing) - 1
        more = f" (and {others} more differing {table.name} rows)" if others else ""
        yield (
            f"{table.name} row for {_row_name(table, key)} is not what the log says: {what}; "
            f"{_explanation(connection, table, key)}{more}"
        )
    if replayed.policy != repo.load_policy(connection):
        yield "register_state: the policy differs from the last POLICY_CHANGED change"


def _what_differs(table: ListTable, expected: Values | None, actual: Values | None) -> str:
    if expected is None:
        return f"the log gives no row, the table holds {_show(table, actual)}"
    if actual is None:
        return f"the log gives {_show(table, expected)}, the table holds no row"
    return "; ".join(
        f"{column}: the log gives {want!r}, the table holds {have!r}"
        for column, want, have in zip(table.values, expected, actual, strict=True)
        if want is not UNKNOWN and want != have
    )


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


def _explanation(connection: Connection, table: ListTable, key: Key) -> str:
    if table is DEVICES:
        last = repo.last_change_of_device(connection, str(key[0]))
    else:
        imsi = key[1] if len(key) > 1 else None
        last = repo.last_change_of(connection, int(key[0]), table.kinds, imsi)
    if last is None:
        return "no change explains it"
    return f"the last change of this row is {last.sequence} ({last.kind.name})"


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
            "for the whole audit; restore the database from a copy the audit passes"
        )


def prove_lists(db: Database) -> None:
    """Raise ListsNotFromLog unless every list table equals the replay of the
    log (one consistent read: another server may be writing)."""
    with db.read_snapshot() as connection:
        differences = list(list_differences(connection, replay(connection)))
    if differences:
        raise ListsNotFromLog(differences)

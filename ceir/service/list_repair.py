"""Rebuilding list rows from the replay of a verified change log (``ceir serve --repair``).

Only ever called once the log has verified itself (``startup_proof``): a
row that no change explains is deleted, a row the log gives is restored, a
column is set back to the value its change set, and each row changed is
reported with the change that explains it.

The rows written are the projection's (``ceir.storage.projection``), the
same mapping the write path writes with: a change of leaf version 2
determines every column of its rows. A row last written by a leaf version 1
change has ``UNKNOWN`` columns (the log does not carry them): an altered one
gets back the columns the log carries, but a deleted one cannot be restored
from the log, and the repair refuses it (``ListsNotRepairable``) rather than
make up its other columns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import and_, delete, insert, update
from sqlalchemy.orm import Session

from ceir.storage import repository as repo
from ceir.storage import schema
from ceir.storage.database import Database
from ceir.storage.projection import UNKNOWN

from .list_audit import (
    LIST_TABLES,
    ReplayedLists,
    RowDifference,
    describe,
    policy_differs,
    row_differences,
)

__all__ = ["ListsNotRepairable", "repair_lists"]

log = logging.getLogger("ceir.list_repair")


class ListsNotRepairable(Exception):
    """Deleted rows that the log cannot restore (leaf version 1 does not carry
    every column); nothing was repaired."""

    def __init__(self, rows: list[str]) -> None:
        self.rows = rows
        super().__init__(
            "the list tables are not what the change log gives, and --repair cannot rebuild "
            "them: " + "; ".join(rows) + ". Nothing was repaired: restore the database from "
            "a copy that `ceir audit verify --db` passes"
        )


def repair_lists(
    db: Database,
    replayed: ReplayedLists,
    sequence: int,
    report: Callable[[str], None] | None = None,
) -> list[str]:
    """Rewrite every list row (and the policy) that differs from ``replayed``,
    the replay of the verified log up to ``sequence``, in one transaction that
    holds the write lock; returns, and passes to ``report``, a line per row
    changed, naming the change that explains it."""
    repaired: list[str] = []
    with db.write() as session:
        head = repo.lock_state(session)
        if head != sequence:
            raise RuntimeError(
                f"another server wrote changes {sequence + 1} to {head} while this one "
                "proved the log: stop every server of this database, then repair"
            )
        connection = session.connection()
        unrepairable: list[str] = []
        for table in LIST_TABLES:
            for difference in row_differences(connection, replayed, table):
                if difference.actual is None and UNKNOWN in (difference.expected or ()):
                    unrepairable.append(
                        f"{describe(connection, difference)}, and leaf version 1 does not "
                        "carry its other columns"
                    )
                    continue
                repaired.append(f"{_action(difference)}: {describe(connection, difference)}")
                _rewrite(session, difference)
        if unrepairable:
            raise ListsNotRepairable(unrepairable)  # the transaction rolls back
        if policy_differs(connection, replayed):
            repo.save_policy(session, replayed.policy)
            line = "restored the policy of the last POLICY_CHANGED change in register_state"
            repaired.append(line)
    for line in repaired:  # once committed
        log.warning("repaired a list row from the log", extra={"repair": line})
        if report is not None:
            report(line)
    return repaired


def _action(difference: RowDifference) -> str:
    return {"inserted": "deleted", "deleted": "restored", "altered": "updated"}[difference.what]


def _rewrite(session: Session, difference: RowDifference) -> None:
    """Make the row what the projection gives (columns it does not determine
    are left as they are)."""
    spec = difference.table
    table = schema.Base.metadata.tables[spec.name]
    key = dict(zip(spec.key, difference.key, strict=True))
    where = and_(*(table.c[name] == value for name, value in key.items()))
    if difference.expected is None:
        session.execute(delete(table).where(where))
        return
    values = {
        name: value
        for name, value in zip(spec.values, difference.expected, strict=True)
        if value is not UNKNOWN
    }
    if difference.actual is None:
        session.execute(insert(table).values(key | values))
    elif values:
        session.execute(update(table).where(where).values(values))

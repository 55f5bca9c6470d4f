"""Rebuilding list rows from the replay of a verified change log (``ceir serve --repair``).

Only ever called once the log has verified itself (``startup_proof``): a
row that no change explains is deleted, a row the log gives is restored, a
column is set back to the value its change set, and each row changed is
reported with the change that explains it. A restored row takes the columns
the log does not carry (who blocked, when) from the change that added it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Table, and_, delete, insert, update
from sqlalchemy.orm import Session

from ceir.domain.model import Change
from ceir.storage import repository as repo
from ceir.storage import schema
from ceir.storage.database import Database

from .list_audit import (
    LIST_TABLES,
    ListTable,
    ReplayedLists,
    RowDifference,
    describe,
    policy_differs,
    row_differences,
)

__all__ = ["repair_lists"]

log = logging.getLogger("ceir.list_repair")


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
        for table in LIST_TABLES:
            for difference in row_differences(connection, replayed, table):
                line = f"{_action(difference)}: {describe(connection, difference)}"
                _rewrite(session, difference)
                repaired.append(line)
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
    table = schema.Base.metadata.tables[difference.table.name]
    spec = difference.table
    where = and_(
        *(table.c[name] == value for name, value in zip(spec.key, difference.key, strict=True))
    )
    if difference.expected is None:
        session.execute(delete(table).where(where))
        return
    values = dict(zip(spec.values, difference.expected, strict=True))
    if difference.actual is not None:
        session.execute(update(table).where(where).values(values))
        return
    row = dict(zip(spec.key, difference.key, strict=True)) | values
    session.execute(insert(table).values(_unlogged(session, table, spec, difference, row)))


# Columns of the list tables that leaf version 1 does not carry, taken from
# the change that added the row when one is restored.
_FROM_CHANGE: dict[str, Callable[[Change], Any]] = {
    "blocked_by": lambda change: change.actor,
    "blocked_at_us": lambda change: change.committed_at_us,
    "subscriber_imsi": lambda change: change.imsi,
    "first_seen_us": lambda change: change.committed_at_us,
    "added_by": lambda change: change.actor,
    "added_at_us": lambda change: change.committed_at_us,
}


def _unlogged(
    session: Session, table: Table, spec: ListTable, difference: RowDifference, row: dict[str, Any]
) -> dict[str, Any]:
    missing = [c for c in table.columns if c.name not in row]
    if not missing:
        return row
    imsi = difference.key[1] if len(difference.key) > 1 else None
    change = repo.last_change_of(session, int(difference.key[0]), (spec.adds,), imsi)
    assert change is not None  # the replay holds the row, so a change added it
    for column in missing:
        if column.name in _FROM_CHANGE:
            row[column.name] = _FROM_CHANGE[column.name](change)
        elif hasattr(change, column.name):
            row[column.name] = getattr(change, column.name)
    return row

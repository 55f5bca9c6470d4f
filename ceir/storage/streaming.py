"""Reading many rows fast: the driver's own cursor, inside the caller's transaction.

SQLAlchemy builds a ``Row`` per row, which costs more than the rest of a
start-up proof's work on it. These rows come straight from the DB-API
cursor (a server-side cursor on PostgreSQL, so they stream), as the driver
returns them: no type's result processing runs, so use them only for
columns whose driver values are already what the caller needs (integers,
text, bytes, None).

Like ``repository``, functions take the caller's connection and never open
or commit a transaction.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Connection

__all__ = ["driver_batches", "select_sql"]

_cursors = itertools.count()


def select_sql(table: str, columns: Sequence[str], order_by: Sequence[str]) -> str:
    """``SELECT columns FROM table ORDER BY ...`` with every name quoted
    (names come from the schema, never from input)."""
    names = ", ".join(f'"{name}"' for name in columns)
    order = ", ".join(f'"{name}"' for name in order_by)
    return f'SELECT {names} FROM "{table}" ORDER BY {order}'


def driver_batches(
    connection: Connection, sql: str, batch: int = 20_000
) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of ``sql``, ``batch`` at a time, from the driver's cursor."""
    driver = connection.connection.driver_connection
    assert driver is not None
    if connection.dialect.name == "postgresql":
        cursor = driver.cursor(name=f"ceir_stream_{next(_cursors)}")  # server-side: streams
    else:
        cursor = driver.cursor()
    try:
        cursor.execute(sql)
        while rows := cursor.fetchmany(batch):
            yield rows
    finally:
        cursor.close()

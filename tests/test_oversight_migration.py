"""Migration 0010 on SQLite and PostgreSQL: the downgrade drops the account
tables, and the upgrade builds the hourly counts from the change log there
is, equal to what the write path kept."""

from __future__ import annotations

from typing import Any

import grpc
import sqlalchemy
from sqlalchemy.pool import NullPool

from ceir.service.clock import ManualClock

from .oversight_helpers import INSIDER, Caller, insider_token, start_server
from .test_bulk_import import _migrate
from .test_devices_in_changes import _downgrade

__all__ = ["insider_token"]  # a fixture


def _table(url: str, query: str) -> list[tuple[Any, ...]]:
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.exec_driver_sql(query)]
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    try:
        return set(sqlalchemy.inspect(engine).get_table_names())
    finally:
        engine.dispose()


RATES = (
    "SELECT organisation, hour_us, registrations, first_sequence, last_sequence "
    "FROM account_rates ORDER BY organisation, hour_us"
)


def test_the_upgrade_counts_the_log_as_the_write_path_does(
    db_url: str, tokens: dict[str, str], insider_token: str, clock: ManualClock
) -> None:
    running = start_server(db_url, clock)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            insider = Caller(channel, insider_token)
            customs = Caller(channel, tokens["customs"])
            for hour in range(3):
                insider.import_keys(range(hour * 20, hour * 20 + 15), chunk=4)
                customs.import_keys([500 + hour], source=3)
                insider.register(f"{35_111_000_000_000 + hour:014d}")
                clock.advance(3_600)
    finally:
        running.stop(grace=1)
    kept = _table(db_url, RATES)
    assert [(org, count) for org, _h, count, _f, _l in kept] == [
        ("customs", 1),
        ("customs", 1),
        ("customs", 1),
        (INSIDER, 16),
        (INSIDER, 16),
        (INSIDER, 16),
    ]
    alerts = _table(db_url, "SELECT organisation FROM account_alerts")
    assert alerts == [(INSIDER,)] * 3  # 16 > 10, each hour
    _downgrade(db_url, "0009")
    assert not {"account_rates", "account_alerts"} & _tables(db_url)
    _migrate(db_url, "head")
    assert _table(db_url, RATES) == kept
    assert _table(db_url, "SELECT count(*) FROM account_alerts") == [(0,)]

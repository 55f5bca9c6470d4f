"""``ceir audit verify --db`` against list tables changed behind the log's back.

A matrix: each table the projection covers (whitelist, devices, blacklist,
notifications, exceptions) × a row inserted, a row deleted, a field altered,
on SQLite and PostgreSQL. Every cell must fail verification and name the
row, and a server must refuse to start on it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from ceir.api.server import RunningServer, ServerConfig, create_server
from ceir.service.list_audit import LIST_TABLES, ListsNotFromLog
from ceir.service.log_audit import AuditReport, audit_database
from ceir.storage.database import Database

from ..helpers import INDOSAT_IMSI, TELKOMSEL_IMSI, Client, imei
from ..test_transparency import alter, cli, populate


def _key(serial: int) -> str:
    return imei(serial)[:14]


# The row each cell tampers with, as the failure must name it, and the SQL.
_NOW = 1_600_000_000_000_000
TAMPERING: dict[tuple[str, str], tuple[str, str]] = {
    # A device never registered, whitelisted without expiry (the issue 8 attack).
    ("whitelist", "inserted"): (
        f"whitelist row for IMEI key {_key(900)}",
        f"INSERT INTO whitelist (imei_key, device_id, valid_until_us) "
        f"VALUES ({_key(900)}, 'D1', NULL)",
    ),
    ("whitelist", "deleted"): (
        f"whitelist row for IMEI key {_key(0)}",
        f"DELETE FROM whitelist WHERE imei_key = {_key(0)}",
    ),
    ("whitelist", "altered"): (
        f"whitelist row for IMEI key {_key(4)}",
        f"UPDATE whitelist SET valid_until_us = {_NOW} WHERE imei_key = {_key(4)}",
    ),
    # Device ids are "D" and the sequence of the change that registered it:
    # IMEI 0 is change 1, IMEI 4 change 5. Only the two-slot device (IMEIs 6
    # and 7, changes 11 and 12) has a devices row: a one-slot device is read
    # from its change (migration 0007; tests/test_devices_in_changes.py).
    ("devices", "inserted"): (
        "devices row for device D900",
        "INSERT INTO devices (id, source, reference, valid_until_us, brand, model, "
        f"registered_by, registered_at_us, imei_keys) VALUES ('D900', 1, 'TPP-9', NULL, "
        f"'Brand', 'Model', 'kemenperin', {_NOW}, '{_key(900)}')",
    ),
    ("devices", "deleted"): (
        "devices row for device D11",
        "DELETE FROM devices WHERE id = 'D11'",
    ),
    ("devices", "altered"): (
        "devices row for device D11",
        "UPDATE devices SET brand = 'Other' WHERE id = 'D11'",
    ),
    ("blacklist", "inserted"): (
        f"blacklist row for IMEI key {_key(901)}",
        "INSERT INTO blacklist (imei_key, cause, police_report, blocked_by, blocked_at_us, "
        f"block_date_us, subscriber_imsi) VALUES ({_key(901)}, 1, 'P-9', 'polri', {_NOW}, "
        "NULL, '')",
    ),
    ("blacklist", "deleted"): (
        f"blacklist row for IMEI key {_key(1)}",
        f"DELETE FROM blacklist WHERE imei_key = {_key(1)}",
    ),
    ("blacklist", "altered"): (
        f"blacklist row for IMEI key {_key(2)}",
        f"UPDATE blacklist SET cause = 2 WHERE imei_key = {_key(2)}",
    ),
    ("notifications", "inserted"): (
        f"notifications row for IMEI key {_key(902)}, IMSI {TELKOMSEL_IMSI}",
        "INSERT INTO notifications (imei_key, imsi, msisdn, operator_mcc_mnc, first_seen_us, "
        f"block_date_us) VALUES ({_key(902)}, '{TELKOMSEL_IMSI}', '628111', '510-10', {_NOW}, "
        f"{_NOW})",
    ),
    ("notifications", "deleted"): (
        f"notifications row for IMEI key {_key(500)}, IMSI {TELKOMSEL_IMSI}",
        f"DELETE FROM notifications WHERE imei_key = {_key(500)}",
    ),
    ("notifications", "altered"): (
        f"notifications row for IMEI key {_key(500)}, IMSI {TELKOMSEL_IMSI}",
        f"UPDATE notifications SET msisdn = '628999' WHERE imei_key = {_key(500)}",
    ),
    ("exceptions", "inserted"): (
        f"exceptions row for IMEI key {_key(903)}, IMSI {TELKOMSEL_IMSI}",
        "INSERT INTO exceptions (imei_key, imsi, reason, added_by, added_at_us) "
        f"VALUES ({_key(903)}, '{TELKOMSEL_IMSI}', 'x', 'telkomsel', {_NOW})",
    ),
    ("exceptions", "deleted"): (
        f"exceptions row for IMEI key {_key(3)}, IMSI {TELKOMSEL_IMSI}",
        f"DELETE FROM exceptions WHERE imei_key = {_key(3)}",
    ),
    ("exceptions", "altered"): (
        # The pair the log gave is gone: the first row in key order that differs.
        f"exceptions row for IMEI key {_key(3)}, IMSI {INDOSAT_IMSI}",
        f"UPDATE exceptions SET imsi = '{INDOSAT_IMSI}' WHERE imei_key = {_key(3)}",
    ),
}
TABLES = sorted({table for table, _ in TAMPERING})
assert sorted(table.name for table in LIST_TABLES) == TABLES  # every projected table


@pytest.fixture
def register(clients: dict[str, Client], server: RunningServer, db_url: str) -> str:
    """A small register built through the API; its database URL."""
    populate(clients)
    assert _audit(db_url).ok
    return db_url


def _audit(db_url: str) -> AuditReport:
    db = Database(db_url)
    try:
        return audit_database(db, [])
    finally:
        db.dispose()


@pytest.mark.parametrize("tamper", ["inserted", "deleted", "altered"])
@pytest.mark.parametrize("table", TABLES)
def test_a_list_row_changed_behind_the_log_fails_verification_naming_it(
    register: str, table: str, tamper: str
) -> None:
    named, statement = TAMPERING[(table, tamper)]
    alter(register, statement)
    report = _audit(register)
    assert not report.ok
    assert any(problem.startswith(named) for problem in report.problems), report.problems


@pytest.mark.parametrize("tamper", ["inserted", "deleted", "altered"])
@pytest.mark.parametrize("table", TABLES)
def test_a_server_refuses_to_start_on_lists_the_log_does_not_explain(
    register: str, table: str, tamper: str
) -> None:
    named, statement = TAMPERING[(table, tamper)]
    alter(register, statement)
    with pytest.raises(ListsNotFromLog) as refused:
        create_server(ServerConfig(db=register, address="127.0.0.1:0", insecure=True))
    assert any(d.startswith(named) for d in refused.value.differences), refused.value


def test_a_server_starts_on_lists_the_log_explains(register: str) -> None:
    running = create_server(ServerConfig(db=register, address="127.0.0.1:0", insecure=True))
    running.stop(grace=0)


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Give back the root logger as it was: `ceir serve` points it at the
    CLI runner's stderr, which is closed once the command returns."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("root_logging")
def test_ceir_serve_refuses_a_whitelist_row_that_no_change_explains(register: str) -> None:
    alter(register, TAMPERING[("whitelist", "inserted")][1])
    result = cli("serve", "--db", register, "--insecure", "--listen", "127.0.0.1:0")
    assert result.exit_code == 1, result.output
    assert f"whitelist row for IMEI key {_key(900)}" in result.output
    assert "will not answer" in result.output


def test_the_cli_refuses_a_whitelist_row_that_no_change_explains(register: str) -> None:
    alter(register, TAMPERING[("whitelist", "inserted")][1])
    result = cli("audit", "verify", "--db", register)
    assert result.exit_code == 1, result.output
    assert f"whitelist row for IMEI key {_key(900)}" in result.output
    assert "no change explains it" in result.output


def test_the_regulators_page_lists_the_columns_the_audit_compares() -> None:
    page = (Path(__file__).parents[2] / "docs" / "regulators.md").read_text(encoding="utf-8")
    section = page[page.index("### What `ceir audit verify` compares") :]
    for table in LIST_TABLES:
        columns = ", ".join(f"`{column}`" for column in table.values) or "(the key only)"
        assert f"| `{table.name}` | " in section
        assert f" | {columns} |" in section.split(f"| `{table.name}` | ", 1)[1].split("\n")[0]

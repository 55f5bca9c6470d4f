"""Stolen reports follow the subscriber.

A report names the subscriber whose device it is. An operator files it only
for its own subscribers, Kominfo (for the police) for any. It may be lifted
by whoever filed it, by the subscriber's operator, and by Kemenperin; a
report stored before the subscriber was (migration 0003) only by its
reporter and Kemenperin.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
import sqlalchemy
from alembic import command
from alembic.config import Config
from sqlalchemy.pool import NullPool

from ceir.storage.database import MIGRATIONS
from ceir.v1 import registry_pb2, types_pb2

from .helpers import INDOSAT_IMSI, TELKOMSEL_IMSI, Client, error_reason, imei, violations

INDOSAT_21_IMSI = "510211234567890"  # Indosat's second MCC-MNC, 510-21
TAC = 35_222_000


def device(serial: int) -> str:
    return imei(serial, tac=TAC)


def report(
    client: Client, serial: int, subscriber_imsi: str, police_report: str = "LP/1/2020"
) -> registry_pb2.ReportStolenResponse:
    return client.call(
        client.registry.ReportStolen,
        registry_pb2.ReportStolenRequest(
            imeis=[device(serial)], police_report=police_report, subscriber_imsi=subscriber_imsi
        ),
    )


def recover(client: Client, serial: int) -> registry_pb2.ReportRecoveredResponse:
    return client.call(
        client.registry.ReportRecovered,
        registry_pb2.ReportRecoveredRequest(imeis=[device(serial)], police_report="LP/1/2020-R"),
    )


def refused(call: object, *args: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(*args)  # type: ignore[operator]
    return caught.value


def stolen(client: Client, serial: int) -> bool:
    answer = client.check_imei(device(serial))
    return list(answer.reasons) == [types_pb2.REASON_STOLEN]


@pytest.fixture
def engine(db_url: str) -> Iterator[sqlalchemy.Engine]:
    engine = sqlalchemy.create_engine(db_url, poolclass=NullPool)
    yield engine
    engine.dispose()


# --- filing ---------------------------------------------------------------------------------


def test_a_stolen_report_must_name_the_subscriber(clients: dict[str, Client]) -> None:
    telkomsel = clients["telkomsel"]
    error = refused(report, telkomsel, 1, "")
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert [field for field, _ in violations(error)] == ["subscriber_imsi"]
    assert not stolen(telkomsel, 1)


def test_a_malformed_subscriber_imsi_is_named(clients: dict[str, Client]) -> None:
    error = refused(report, clients["telkomsel"], 2, "5101x")
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert [field for field, _ in violations(error)] == ["subscriber_imsi"]


def test_an_operator_may_not_report_another_operators_subscriber(
    clients: dict[str, Client],
) -> None:
    telkomsel = clients["telkomsel"]
    error = refused(report, telkomsel, 3, INDOSAT_IMSI)
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(error) == "FOREIGN_SUBSCRIBER"
    assert not stolen(telkomsel, 3)


def test_an_operator_reports_for_any_of_its_mcc_mncs(clients: dict[str, Client]) -> None:
    indosat = clients["indosat"]
    report(indosat, 4, INDOSAT_IMSI)
    report(indosat, 5, INDOSAT_21_IMSI)
    assert stolen(indosat, 4) and stolen(indosat, 5)


def test_kominfo_reports_for_the_police_for_any_subscriber(clients: dict[str, Client]) -> None:
    kominfo = clients["kominfo"]
    report(kominfo, 6, INDOSAT_IMSI, "LP/B/77/Polda")
    report(kominfo, 7, TELKOMSEL_IMSI, "LP/B/78/Polda")
    assert stolen(kominfo, 6) and stolen(kominfo, 7)


@pytest.mark.parametrize("kind", ["kemenperin", "customs", "kemlu"])
def test_other_kinds_do_not_file_stolen_reports(clients: dict[str, Client], kind: str) -> None:
    error = refused(report, clients[kind], 8, TELKOMSEL_IMSI)
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(error) == "ACTION_NOT_ALLOWED"


# --- lifting --------------------------------------------------------------------------------


def test_the_reporter_lifts_its_report(clients: dict[str, Client]) -> None:
    telkomsel = clients["telkomsel"]
    report(telkomsel, 10, TELKOMSEL_IMSI)
    recover(telkomsel, 10)
    assert not stolen(telkomsel, 10)


def test_the_subscribers_operator_lifts_a_report_kominfo_filed(
    clients: dict[str, Client],
) -> None:
    kominfo, telkomsel, indosat = clients["kominfo"], clients["telkomsel"], clients["indosat"]
    report(kominfo, 11, INDOSAT_21_IMSI, "LP/B/79/Polda")
    error = refused(recover, telkomsel, 11)
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(error) == "NOT_REPORTER"
    assert stolen(telkomsel, 11)
    recover(indosat, 11)
    assert not stolen(telkomsel, 11)


def test_kominfo_lifts_only_reports_it_filed(clients: dict[str, Client]) -> None:
    kominfo, telkomsel = clients["kominfo"], clients["telkomsel"]
    report(kominfo, 12, TELKOMSEL_IMSI, "LP/B/80/Polda")
    recover(kominfo, 12)
    assert not stolen(kominfo, 12)
    report(telkomsel, 13, TELKOMSEL_IMSI)
    error = refused(recover, kominfo, 13)
    assert error_reason(error) == "NOT_REPORTER"
    assert stolen(kominfo, 13)


def test_kemenperin_lifts_any_stolen_report(clients: dict[str, Client]) -> None:
    kemenperin = clients["kemenperin"]
    report(clients["telkomsel"], 14, TELKOMSEL_IMSI)
    report(clients["kominfo"], 15, INDOSAT_IMSI, "LP/B/81/Polda")
    recover(kemenperin, 14)
    recover(kemenperin, 15)
    assert not stolen(kemenperin, 14) and not stolen(kemenperin, 15)


def test_another_operator_may_not_lift_a_report(clients: dict[str, Client]) -> None:
    telkomsel, xl = clients["telkomsel"], clients["xl"]
    report(telkomsel, 16, TELKOMSEL_IMSI)
    error = refused(recover, xl, 16)
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(error) == "NOT_REPORTER"
    assert stolen(xl, 16)


def test_a_refused_lift_of_one_imei_lifts_none(clients: dict[str, Client]) -> None:
    telkomsel, indosat = clients["telkomsel"], clients["indosat"]
    report(telkomsel, 17, TELKOMSEL_IMSI)
    report(indosat, 18, INDOSAT_IMSI)
    request = registry_pb2.ReportRecoveredRequest(
        imeis=[device(17), device(18)], police_report="LP/1/2020-R"
    )
    error = refused(telkomsel.call, telkomsel.registry.ReportRecovered, request)
    assert error_reason(error) == "NOT_REPORTER"
    assert stolen(telkomsel, 17) and stolen(telkomsel, 18)


# --- reports stored before migration 0003 -----------------------------------------------------


def forget_subscriber(engine: sqlalchemy.Engine, serial: int) -> None:
    """Make a report look like one stored before migration 0003."""
    with engine.begin() as connection:
        connection.execute(
            sqlalchemy.text("UPDATE blacklist SET subscriber_imsi = '' WHERE imei_key = :key"),
            {"key": int(device(serial)[:14])},
        )


def test_a_report_without_a_subscriber_is_lifted_by_its_reporter_or_kemenperin(
    clients: dict[str, Client], engine: sqlalchemy.Engine
) -> None:
    kominfo, telkomsel = clients["kominfo"], clients["telkomsel"]
    report(kominfo, 20, TELKOMSEL_IMSI, "LP/B/82/Polda")
    report(kominfo, 21, TELKOMSEL_IMSI, "LP/B/83/Polda")
    report(telkomsel, 22, TELKOMSEL_IMSI)
    for serial in (20, 21, 22):
        forget_subscriber(engine, serial)
    # The subscriber's operator could lift it; without a stored subscriber, not.
    error = refused(recover, telkomsel, 20)
    assert error_reason(error) == "NOT_REPORTER"
    recover(clients["kemenperin"], 20)
    recover(kominfo, 21)
    recover(telkomsel, 22)
    assert not any(stolen(telkomsel, serial) for serial in (20, 21, 22))


def test_migration_0003_leaves_existing_reports_without_a_subscriber(db_url: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", db_url.replace("%", "%%"))
    engine = sqlalchemy.create_engine(db_url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0002")
            connection.execute(
                sqlalchemy.text(
                    "INSERT INTO blacklist (imei_key, cause, police_report, blocked_by,"
                    " blocked_at_us, block_date_us)"
                    " VALUES (35222000000001, 1, 'LP/9', 'xl', 1, NULL)"
                )
            )
            command.upgrade(config, "head")
            row = connection.execute(
                sqlalchemy.text("SELECT blocked_by, subscriber_imsi FROM blacklist")
            ).one()
    finally:
        engine.dispose()
    assert tuple(row) == ("xl", "")

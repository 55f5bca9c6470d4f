"""The account alert and the query of an organisation's registrations,
through a real server on SQLite and PostgreSQL.

The server runs with factor 5 and floor 2 (``oversight_helpers``): a new
account alerts above 10 registrations in an hour.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import grpc
import pytest

from ceir.api.server import RunningServer
from ceir.domain.oversight import HISTORY_HOURS, WINDOW_US, AlertRule
from ceir.service.clock import ManualClock
from ceir.v1 import oversight_pb2, registry_pb2, types_pb2

from .helpers import error_reason, imei, violations
from .oversight_helpers import (
    FACTOR,
    FLOOR,
    INSIDER,
    Caller,
    alerts_counted,
    insider_token,
    stamp,
    start_of_next_hour,
    start_server,
    watched,
)

__all__ = ["insider_token", "watched"]  # fixtures


@pytest.fixture
def callers(
    watched: RunningServer, tokens: dict[str, str], insider_token: str
) -> Iterator[dict[str, Caller]]:
    with grpc.insecure_channel(f"127.0.0.1:{watched.port}") as channel:
        found = {name: Caller(channel, token) for name, token in tokens.items()}
        found[INSIDER] = Caller(channel, insider_token)
        yield found


def _alert_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == "ceir.oversight" and r.levelno == logging.WARNING
    ]


# --- the rule ------------------------------------------------------------------------------


def test_the_baseline_is_the_mean_of_the_week_before_and_the_floor_holds_new_accounts() -> None:
    rule = AlertRule(factor=10, floor=50)
    assert rule.baseline(168 * 20) == 20.0
    assert rule.threshold(rule.baseline(168 * 20)) == 500.0  # the floor, not 200
    assert rule.threshold(rule.baseline(168 * 80)) == 800.0
    assert not rule.exceeded(500, 0.0) and rule.exceeded(501, 0.0)
    with pytest.raises(ValueError):
        AlertRule(factor=0.5)
    with pytest.raises(ValueError):
        AlertRule(floor=-1)


# --- alerts -------------------------------------------------------------------------------


def test_a_burst_over_the_baseline_raises_exactly_one_alert(
    watched: RunningServer,
    callers: dict[str, Caller],
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="ceir.oversight")
    hour = start_of_next_hour(clock)
    insider = callers[INSIDER]
    insider.import_keys(range(0, 10))  # 10: at the threshold, not over it
    assert callers["kominfo"].alerts() == []
    insider.import_keys(range(10, 20))  # 20 > 10: the alert
    after_alert = callers["kominfo"].alerts()
    insider.import_keys(range(20, 30))  # the same hour: no second alert
    insider.import_keys(range(30, 31))
    alerts = callers["kominfo"].alerts()
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert.organisation == INSIDER
    assert alert.window_start_time.ToMicroseconds() == hour
    assert alert.window_end_time.ToMicroseconds() == hour + WINDOW_US
    assert alert.registrations_at_alert == 20 and alert.registrations == 31
    assert alert.baseline == 0.0 and alert.threshold == FACTOR * FLOOR and alert.factor == FACTOR
    assert alert.sequence == after_alert[0].sequence
    assert alerts_counted(watched, INSIDER) == 1
    assert len(_alert_lines(caplog)) == 1
    assert INSIDER in _alert_lines(caplog)[0].getMessage()
    ratio = watched.metrics.registry.get_sample_value(
        "ceir_account_registration_ratio", {"organisation": INSIDER}
    )
    assert ratio == 31 / FLOOR
    settings = (
        callers["kemenperin"]
        .call(
            callers["kemenperin"].oversight.ListAccountAlerts,
            oversight_pb2.ListAccountAlertsRequest(),
        )
        .settings
    )
    assert (settings.factor, settings.floor) == (FACTOR, FLOOR)
    assert (settings.history_hours, settings.window_seconds) == (HISTORY_HOURS, 3_600)


def test_normal_rates_raise_no_alert(
    watched: RunningServer,
    callers: dict[str, Caller],
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="ceir.oversight")
    start_of_next_hour(clock)
    customs = callers["customs"]
    for hour in range(3):  # 8 an hour, for three hours: under 10
        customs.import_keys(range(hour * 8, hour * 8 + 8), types_pb2.REGISTRATION_SOURCE_CUSTOMS)
        clock.advance(3_600)
    for serial in range(5):  # single registrations, each its own write
        callers["kemenperin"].register(imei(serial, 35_888_000))
    assert callers["kominfo"].alerts() == []
    assert alerts_counted(watched, "customs") == 0
    assert _alert_lines(caplog) == []


def test_the_baseline_is_the_accounts_own_week_and_survives_a_restart(
    db_url: str,
    watched: RunningServer,
    callers: dict[str, Caller],
    insider_token: str,
    clock: ManualClock,
) -> None:
    first = start_of_next_hour(clock)
    # 840 in one hour: an alert (new account), and a baseline of 840 / 168 =
    # 5 an hour for the week after: a threshold of 25 instead of 10.
    callers[INSIDER].import_keys(range(840))
    watched.stop(grace=1)
    clock.advance(3_600)
    restarted = start_server(db_url, clock)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{restarted.port}") as channel:
            insider = Caller(channel, insider_token)
            kominfo = Caller(channel, callers["kominfo"].token)
            insider.import_keys(range(1_000, 1_025))  # 25: not over 25
            assert [a.window_start_time.ToMicroseconds() for a in kominfo.alerts()] == [first]
            insider.import_keys(range(1_025, 1_026))  # 26 > 25
            alerts = kominfo.alerts()
        assert [a.window_start_time.ToMicroseconds() for a in alerts] == [
            first + WINDOW_US,
            first,
        ]  # newest first
        assert alerts[0].baseline == 5.0 and alerts[0].threshold == 25.0
        assert alerts_counted(restarted, INSIDER) == 1  # this process's
    finally:
        restarted.stop(grace=1)


def test_alerts_page_newest_first(
    watched: RunningServer, callers: dict[str, Caller], clock: ManualClock
) -> None:
    start_of_next_hour(clock)
    for org, source in (
        (INSIDER, types_pb2.REGISTRATION_SOURCE_TPP_IMPORT),
        ("customs", types_pb2.REGISTRATION_SOURCE_CUSTOMS),
        ("kemlu", types_pb2.REGISTRATION_SOURCE_DIPLOMAT),
    ):
        callers[org].import_keys(range(11), source, tac=35_000_000 + len(org))
    kominfo = callers["kominfo"]
    seen: list[str] = []
    token = ""
    while True:
        page = kominfo.call(
            kominfo.oversight.ListAccountAlerts,
            oversight_pb2.ListAccountAlertsRequest(page_size=2, page_token=token),
        )
        seen.extend(a.organisation for a in page.alerts)
        token = page.next_page_token
        if not token:
            break
    assert seen == ["kemlu", "customs", INSIDER]


# --- the window query ---------------------------------------------------------------------


def test_the_window_query_returns_exactly_that_organisations_registrations(
    callers: dict[str, Caller], clock: ManualClock
) -> None:
    insider, customs, kemenperin = callers[INSIDER], callers["customs"], callers["kemenperin"]
    insider.import_keys(range(0, 5))  # before the window
    clock.advance(7_200)
    start = clock.now_us()
    insider.import_keys(range(100, 104))
    customs.import_keys(range(200, 203), types_pb2.REGISTRATION_SOURCE_CUSTOMS)
    insider.import_keys(range(104, 107))
    kemenperin.register(imei(300, 35_777_000))
    clock.advance(3 * 3_600)
    insider.import_keys(range(107, 110))
    end = clock.now_us() + 1
    clock.advance(60)
    insider.import_keys(range(400, 403))  # after the window
    expected = [f"{35_777_000_000_000 + s:014d}" for s in range(100, 110)]
    for size in (0, 1, 3, 10):
        rows = insider.registrations_by(INSIDER, start, end, page_size=size)
        assert [r.imei_key for r in rows] == expected, size
    rows = kemenperin.registrations_by(INSIDER, start, end)
    assert all(r.on_whitelist for r in rows)
    assert all(r.source == types_pb2.REGISTRATION_SOURCE_TPP_IMPORT for r in rows)
    assert all(r.reference == "TPP-X" and r.device_id.startswith("D") for r in rows)
    assert [r.sequence for r in rows] == sorted(r.sequence for r in rows)
    assert all(start <= r.register_time.ToMicroseconds() < end for r in rows)
    # No end: up to now.
    open_ended = kemenperin.registrations_by(INSIDER, start)
    assert [r.imei_key for r in open_ended][-3:] == [
        f"{35_777_000_000_000 + s:014d}" for s in range(400, 403)
    ]


def test_the_query_pages_a_fixed_set_and_follows_the_whitelist(
    callers: dict[str, Caller], clock: ManualClock
) -> None:
    insider, kemenperin = callers[INSIDER], callers["kemenperin"]
    start = clock.now_us()
    insider.import_keys(range(10))
    first = kemenperin.call(
        kemenperin.oversight.ListRegistrationsBy,
        oversight_pb2.ListRegistrationsByRequest(
            organisation=INSIDER, start_time=stamp(start), page_size=4
        ),
    )
    # Written after the first page: neither listed nor moving the pages.
    insider.import_keys(range(10, 15))
    kemenperin.call(
        kemenperin.registry.RevokeRegistration,
        registry_pb2.RevokeRegistrationRequest(imeis=[imei(6, 35_777_000)], reason="test"),
    )
    rows = list(first.registrations)
    token = first.next_page_token
    while token:
        page = kemenperin.call(
            kemenperin.oversight.ListRegistrationsBy,
            oversight_pb2.ListRegistrationsByRequest(
                organisation=INSIDER, start_time=stamp(start), page_size=4, page_token=token
            ),
        )
        assert page.set_sequence == first.set_sequence
        rows.extend(page.registrations)
        token = page.next_page_token
    assert [r.imei_key for r in rows] == [f"{35_777_000_000_000 + s:014d}" for s in range(10)]
    assert [r.on_whitelist for r in rows] == [s != 6 for s in range(10)]


# --- bad input and permissions ------------------------------------------------------------


def _refusal(caller: Caller, method: str, request: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        caller.call(getattr(caller.oversight, method), request)
    return caught.value


def test_bad_queries_are_refused_with_field_details(
    callers: dict[str, Caller], clock: ManualClock
) -> None:
    kominfo = callers["kominfo"]
    now = clock.now_us()
    request = oversight_pb2.ListRegistrationsByRequest
    cases = [
        (request(organisation="nobody", start_time=stamp(now)), "organisation"),
        (request(organisation="", start_time=stamp(now)), "organisation"),
        (request(organisation=INSIDER), "start_time"),
        (
            request(organisation=INSIDER, start_time=stamp(now), end_time=stamp(now - 1)),
            "end_time",
        ),
        (request(organisation=INSIDER, start_time=stamp(now), page_size=-1), "page_size"),
        (request(organisation=INSIDER, start_time=stamp(now), page_token="garbage"), "page_token"),
    ]
    for bad, field in cases:
        error = _refusal(kominfo, "ListRegistrationsBy", bad)
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, (bad, error.details())
        assert field in [f for f, _ in violations(error)], (bad, violations(error))
    # A token of another window is refused, not silently applied.
    callers[INSIDER].import_keys(range(3))
    page = kominfo.call(
        kominfo.oversight.ListRegistrationsBy,
        request(organisation=INSIDER, start_time=stamp(0), page_size=1),
    )
    error = _refusal(
        kominfo,
        "ListRegistrationsBy",
        request(organisation=INSIDER, start_time=stamp(1), page_token=page.next_page_token),
    )
    assert error_reason(error) == "BAD_PAGE_TOKEN"
    error = _refusal(
        kominfo, "ListAccountAlerts", oversight_pb2.ListAccountAlertsRequest(page_token="x")
    )
    assert error_reason(error) == "BAD_PAGE_TOKEN"


@pytest.mark.parametrize("who", ["telkomsel", "customs", "kemlu"])
def test_only_regulators_read_alerts_and_registrations(
    callers: dict[str, Caller], who: str
) -> None:
    caller = callers[who]
    for method, request in (
        ("ListAccountAlerts", oversight_pb2.ListAccountAlertsRequest()),
        (
            "ListRegistrationsBy",
            oversight_pb2.ListRegistrationsByRequest(organisation=INSIDER, start_time=stamp(0)),
        ),
    ):
        error = _refusal(caller, method, request)
        assert error.code() is grpc.StatusCode.PERMISSION_DENIED, method


def test_copied_changes_are_counted_by_organisation_and_hour() -> None:
    """A standby's batch mixes writes of several organisations and hours."""
    import dataclasses

    from ceir.domain.model import Change, ChangeKind
    from ceir.service.oversight_watch import _by_hour, _one_write

    plan = [  # (actor, time, kind)
        ("a", 10, ChangeKind.WHITELIST_ADDED),
        ("a", 10, ChangeKind.WHITELIST_ADDED),
        ("b", 10, ChangeKind.WHITELIST_ADDED),
        ("b", 10, ChangeKind.WHITELIST_REMOVED),
        ("a", 20, ChangeKind.WHITELIST_ADDED),
        ("a", WINDOW_US + 5, ChangeKind.WHITELIST_ADDED),
        ("b", 30, ChangeKind.BLACKLIST_BLOCKED),
    ]
    changes = [
        dataclasses.replace(
            Change(kind, 35_000_000_000_000 + n), sequence=n + 1, actor=actor, committed_at_us=t
        )
        for n, (actor, t, kind) in enumerate(plan)
    ]
    assert _by_hour(changes) == {
        ("a", 0): [3, 1, 5],
        ("b", 0): [1, 3, 3],
        ("a", WINDOW_US): [1, 6, 6],
    }
    assert _one_write(changes[:2]) == {("a", 0): [2, 1, 2]}
    assert _one_write(changes[3:4]) == {}

"""Stolen-phone cases through the real server, on SQLite and PostgreSQL.

PENDING -> BLOCKED -> RECOVERED (or PENDING -> RECOVERED); BLOCKED ->
PENDING and steps out of RECOVERED are refused. A block and its lifting are
the register's own ReportStolen / ReportRecovered, so they reach every
operator through the feed; the case's step is written in the same
transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
import sqlalchemy
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from ceir.api.server import RunningServer
from ceir.domain.commands import Command
from ceir.domain.errors import WritesRefused
from ceir.storage.database import MIGRATIONS, Database
from ceir.storage.schema import Base
from ceir.v1 import list_sync_pb2, stolen_pb2, stolen_pb2_grpc, types_pb2

from .helpers import INDOSAT_IMSI, TELKOMSEL_IMSI, Client, error_reason, imei, violations

TAC = 35_333_000
PENDING = stolen_pb2.STOLEN_CASE_STATE_PENDING
BLOCKED = stolen_pb2.STOLEN_CASE_STATE_BLOCKED
RECOVERED = stolen_pb2.STOLEN_CASE_STATE_RECOVERED


def device(serial: int) -> str:
    return imei(serial, tac=TAC)


def key(serial: int) -> str:
    return device(serial)[:14]


def cases(client: Client) -> stolen_pb2_grpc.StolenCaseServiceStub:
    return stolen_pb2_grpc.StolenCaseServiceStub(client.channel)


def file_case(
    client: Client,
    *serials: int,
    imsi: str = TELKOMSEL_IMSI,
    police_report: str = "LP/B/1/2020/Polda",
    request_id: str = "",
    msisdn: str = "+628111000001",
) -> stolen_pb2.StolenCase:
    request = stolen_pb2.FileStolenCaseRequest(
        request_id=request_id,
        imeis=[device(s) for s in serials],
        imsi=imsi,
        msisdn=msisdn,
        police_report=police_report,
    )
    return client.call(cases(client).FileStolenCase, request).stolen_case


def update(
    client: Client, case_id: str, state: Any, note: str = "", request_id: str = ""
) -> stolen_pb2.UpdateStolenCaseResponse:
    request = stolen_pb2.UpdateStolenCaseRequest(
        request_id=request_id, case_id=case_id, state=state, note=note
    )
    return client.call(cases(client).UpdateStolenCase, request)


def get(client: Client, case_id: str) -> stolen_pb2.StolenCase:
    request = stolen_pb2.GetStolenCaseRequest(case_id=case_id)
    return client.call(cases(client).GetStolenCase, request).stolen_case


def listed(client: Client, page_size: int = 0) -> list[str]:
    found: list[str] = []
    token = ""
    while True:
        answer = client.call(
            cases(client).ListStolenCases,
            stolen_pb2.ListStolenCasesRequest(page_size=page_size, page_token=token),
        )
        found.extend(c.case_id for c in answer.stolen_cases)
        token = answer.next_page_token
        if not token:
            return found


def refused(call: Any, *args: Any, **kwargs: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, **kwargs)
    return caught.value


def stolen(client: Client, serial: int) -> bool:
    # Without an IMSI: the check records no notification, so it writes nothing.
    answer = client.check_imei(device(serial), imsi="")
    return list(answer.reasons) == [types_pb2.REASON_STOLEN]


def head(server: RunningServer) -> int:
    return server.register.state.sequence


# --- filing ---------------------------------------------------------------------------------


def test_a_filed_case_is_pending_with_an_id_and_blocks_nothing(
    clients: dict[str, Client], server: RunningServer
) -> None:
    telkomsel = clients["telkomsel"]
    before = head(server)
    case = file_case(telkomsel, 1, 2)
    assert case.case_id.startswith("SC-")
    assert case.state == PENDING
    assert list(case.imei_keys) == [key(1), key(2)]
    assert (case.imsi, case.msisdn, case.reporter) == (TELKOMSEL_IMSI, "628111000001", "telkomsel")
    assert [(s.state, s.actor, s.sequence) for s in case.history] == [(PENDING, "telkomsel", 0)]
    assert not stolen(telkomsel, 1)
    assert head(server) == before  # no list change
    assert get(telkomsel, case.case_id) == case


def test_a_case_without_a_police_report_is_refused_and_nothing_is_written(
    clients: dict[str, Client],
) -> None:
    telkomsel = clients["telkomsel"]
    error = refused(file_case, telkomsel, 3, police_report="")
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert [field for field, _ in violations(error)] == ["police_report"]
    assert listed(telkomsel) == []


def test_malformed_fields_are_named(clients: dict[str, Client]) -> None:
    telkomsel = clients["telkomsel"]
    request = stolen_pb2.FileStolenCaseRequest(
        imeis=["12345"], imsi="51010x", msisdn="12", police_report="LP/1"
    )
    error = refused(telkomsel.call, cases(telkomsel).FileStolenCase, request)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert [field for field, _ in violations(error)] == ["imeis[0]", "imsi", "msisdn"]
    assert listed(telkomsel) == []


def test_an_operator_files_only_for_its_own_subscriber(clients: dict[str, Client]) -> None:
    telkomsel = clients["telkomsel"]
    error = refused(file_case, telkomsel, 4, imsi=INDOSAT_IMSI)
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(error) == "FOREIGN_SUBSCRIBER"
    assert listed(telkomsel) == []


def test_kominfo_files_for_the_police_for_any_subscriber(clients: dict[str, Client]) -> None:
    kominfo = clients["kominfo"]
    case = file_case(kominfo, 5, imsi=INDOSAT_IMSI)
    assert (case.state, case.reporter) == (PENDING, "kominfo")


@pytest.mark.parametrize("kind", ["kemenperin", "customs", "kemlu"])
def test_other_kinds_do_not_file_cases(clients: dict[str, Client], kind: str) -> None:
    error = refused(file_case, clients[kind], 6)
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED


def test_a_second_open_case_on_an_imei_names_the_first(clients: dict[str, Client]) -> None:
    telkomsel, kominfo = clients["telkomsel"], clients["kominfo"]
    first = file_case(telkomsel, 7, 8)
    error = refused(file_case, kominfo, 9, 8)  # shares IMEI 8
    assert error.code() is grpc.StatusCode.ALREADY_EXISTS
    assert error_reason(error) == "STOLEN_CASE_ALREADY_OPEN"
    assert first.case_id in (error.details() or "")
    update(telkomsel, first.case_id, BLOCKED)
    assert refused(file_case, kominfo, 8).code() is grpc.StatusCode.ALREADY_EXISTS
    update(telkomsel, first.case_id, RECOVERED)
    assert file_case(kominfo, 8).state == PENDING  # a recovered case holds no IMEI


# --- steps ----------------------------------------------------------------------------------


def test_block_and_recover_reach_another_operator_through_the_feed(
    clients: dict[str, Client], server: RunningServer
) -> None:
    telkomsel, indosat = clients["telkomsel"], clients["indosat"]
    case = file_case(telkomsel, 10)
    after = head(server)
    blocked = update(telkomsel, case.case_id, BLOCKED, "verified at the outlet")
    assert blocked.stolen_case.state == BLOCKED
    assert blocked.sequence == head(server) > after
    assert blocked.stolen_case.history[-1].sequence == blocked.sequence
    assert stolen(indosat, 10)
    recovered = update(telkomsel, case.case_id, RECOVERED, "owner has it back")
    assert not stolen(indosat, 10)
    changes = watch(indosat, after, 2)
    assert [(c.kind, c.imei_key, c.sequence) for c in changes] == [
        (types_pb2.CHANGE_KIND_BLACKLIST_BLOCKED, key(10), blocked.sequence),
        (types_pb2.CHANGE_KIND_BLACKLIST_UNBLOCKED, key(10), recovered.sequence),
    ]
    assert changes[0].imsi == ""  # another operator's subscriber stays hidden
    history = get(telkomsel, case.case_id).history
    assert [(s.state, s.actor, s.note, s.sequence) for s in history] == [
        (PENDING, "telkomsel", "filed", 0),
        (BLOCKED, "telkomsel", "verified at the outlet", blocked.sequence),
        (RECOVERED, "telkomsel", "owner has it back", recovered.sequence),
    ]


def watch(client: Client, after: int, count: int) -> list[types_pb2.ListChange]:
    stream = client.sync.WatchChanges(
        list_sync_pb2.WatchChangesRequest(after_sequence=after),
        metadata=client.metadata,
        timeout=30,
    )
    changes: list[types_pb2.ListChange] = []
    for response in stream:
        changes.extend(response.changes)
        if len(changes) >= count:
            stream.cancel()  # type: ignore[no-untyped-call]
            break
    return changes[:count]


def test_pending_to_recovered_changes_no_list(
    clients: dict[str, Client], server: RunningServer
) -> None:
    telkomsel = clients["telkomsel"]
    case = file_case(telkomsel, 11)
    before = head(server)
    answer = update(telkomsel, case.case_id, RECOVERED, "found before the block")
    assert (answer.stolen_case.state, answer.sequence) == (RECOVERED, 0)
    assert head(server) == before


@pytest.mark.parametrize(
    ("path", "target", "reason"),
    [
        ([BLOCKED], PENDING, "STOLEN_CASE_BLOCKED_TO_PENDING"),
        ([], PENDING, "STOLEN_CASE_TRANSITION_REFUSED"),
        ([BLOCKED], BLOCKED, "STOLEN_CASE_TRANSITION_REFUSED"),
        ([RECOVERED], BLOCKED, "STOLEN_CASE_TRANSITION_REFUSED"),
        ([RECOVERED], PENDING, "STOLEN_CASE_TRANSITION_REFUSED"),
        ([BLOCKED, RECOVERED], BLOCKED, "STOLEN_CASE_TRANSITION_REFUSED"),
        ([BLOCKED, RECOVERED], RECOVERED, "STOLEN_CASE_TRANSITION_REFUSED"),
    ],
)
def test_refused_transitions_change_nothing(
    clients: dict[str, Client], server: RunningServer, path: list[Any], target: Any, reason: str
) -> None:
    telkomsel = clients["telkomsel"]
    case = file_case(telkomsel, 12)
    for state in path:
        update(telkomsel, case.case_id, state)
    before, kept = head(server), get(telkomsel, case.case_id)
    error = refused(update, telkomsel, case.case_id, target)
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(error) == reason
    assert get(telkomsel, case.case_id) == kept
    assert head(server) == before


def test_an_unspecified_state_and_an_unknown_case(clients: dict[str, Client]) -> None:
    telkomsel = clients["telkomsel"]
    case = file_case(telkomsel, 13)
    error = refused(update, telkomsel, case.case_id, stolen_pb2.STOLEN_CASE_STATE_UNSPECIFIED)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert [field for field, _ in violations(error)] == ["state"]
    assert refused(update, telkomsel, "SC-NOPE", BLOCKED).code() is grpc.StatusCode.NOT_FOUND
    assert refused(get, telkomsel, "SC-NOPE").code() is grpc.StatusCode.NOT_FOUND


def test_only_the_reporter_or_kominfo_take_a_cases_steps(
    clients: dict[str, Client], server: RunningServer
) -> None:
    telkomsel, indosat, kominfo = clients["telkomsel"], clients["indosat"], clients["kominfo"]
    kemenperin = clients["kemenperin"]
    case = file_case(telkomsel, 14)
    for other in (indosat, kemenperin):
        error = refused(update, other, case.case_id, BLOCKED)
        assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    update(telkomsel, case.case_id, BLOCKED)
    before = head(server)
    for other in (indosat, kemenperin):
        error = refused(update, other, case.case_id, RECOVERED)
        assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert head(server) == before and stolen(telkomsel, 14)
    # The police, via Kominfo, clear a case an operator filed and blocked.
    update(kominfo, case.case_id, RECOVERED, "police: returned to owner")
    assert not stolen(telkomsel, 14)
    assert get(telkomsel, case.case_id).history[-1].actor == "kominfo"


def test_kominfo_blocks_a_case_an_operator_filed_and_the_operator_clears_it(
    clients: dict[str, Client],
) -> None:
    telkomsel, kominfo = clients["telkomsel"], clients["kominfo"]
    case = file_case(telkomsel, 15)
    update(kominfo, case.case_id, BLOCKED, "police order")
    assert stolen(telkomsel, 15)
    update(telkomsel, case.case_id, RECOVERED)
    assert not stolen(telkomsel, 15)


def test_a_block_refused_by_the_register_leaves_the_case_pending(
    clients: dict[str, Client], server: RunningServer
) -> None:
    telkomsel = clients["telkomsel"]
    case = file_case(telkomsel, 16)
    # The IMEI is blocked meanwhile through the direct RPC: the case's block fails whole.
    from ceir.v1 import registry_pb2

    telkomsel.call(
        telkomsel.registry.ReportStolen,
        registry_pb2.ReportStolenRequest(
            imeis=[device(16)], police_report="LP/2", subscriber_imsi=TELKOMSEL_IMSI
        ),
    )
    before = head(server)
    error = refused(update, telkomsel, case.case_id, BLOCKED)
    assert error.code() is grpc.StatusCode.ALREADY_EXISTS
    assert get(telkomsel, case.case_id).state == PENDING
    assert len(get(telkomsel, case.case_id).history) == 1
    assert head(server) == before


# --- idempotency ------------------------------------------------------------------------------


def test_a_retried_filing_returns_the_same_case(clients: dict[str, Client]) -> None:
    telkomsel = clients["telkomsel"]
    first = file_case(telkomsel, 17, request_id="file-17")
    again = file_case(telkomsel, 17, request_id="file-17")
    assert again == first
    assert listed(telkomsel) == [first.case_id]
    error = refused(file_case, telkomsel, 18, request_id="file-17")
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(error) == "REQUEST_ID_REUSED"


def test_a_retried_step_is_answered_the_same_and_changes_nothing(
    clients: dict[str, Client], server: RunningServer
) -> None:
    telkomsel = clients["telkomsel"]
    case = file_case(telkomsel, 19)
    first = update(telkomsel, case.case_id, BLOCKED, "ok", request_id="block-19")
    sequence = head(server)
    again = update(telkomsel, case.case_id, BLOCKED, "ok", request_id="block-19")
    assert again == first
    assert head(server) == sequence
    assert len(get(telkomsel, case.case_id).history) == 2
    closing = update(telkomsel, case.case_id, RECOVERED, request_id="recover-19")
    assert update(telkomsel, case.case_id, RECOVERED, request_id="recover-19") == closing
    error = refused(update, telkomsel, case.case_id, RECOVERED, "other", request_id="block-19")
    assert error_reason(error) == "REQUEST_ID_REUSED"


# --- reading ----------------------------------------------------------------------------------


def test_operators_read_their_own_cases_regulators_every_case(clients: dict[str, Client]) -> None:
    telkomsel, indosat = clients["telkomsel"], clients["indosat"]
    kemenperin, kominfo = clients["kemenperin"], clients["kominfo"]
    mine = [file_case(telkomsel, 20 + n).case_id for n in range(3)]
    theirs = file_case(indosat, 30, imsi=INDOSAT_IMSI).case_id
    assert listed(telkomsel, page_size=2) == mine
    assert listed(indosat) == [theirs]
    assert listed(kemenperin, page_size=1) == [*mine, theirs]
    assert listed(kominfo) == [*mine, theirs]
    assert refused(get, indosat, mine[0]).code() is grpc.StatusCode.NOT_FOUND
    assert get(kemenperin, theirs).reporter == "indosat"
    token_error = refused(
        telkomsel.call,
        cases(telkomsel).ListStolenCases,
        stolen_pb2.ListStolenCasesRequest(page_token="garbage"),
    )
    assert [field for field, _ in violations(token_error)] == ["page_token"]


# --- the migration ----------------------------------------------------------------------------

STOLEN_TABLES = {"stolen_cases", "stolen_case_imeis", "stolen_case_steps", "theft_alerts"}


def _alembic(url: str, step: Callable[[Config], None]) -> None:
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = connection
            step(config)
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return set(sqlalchemy.inspect(connection).get_table_names())
    finally:
        engine.dispose()


def test_migration_0009_upgrades_downgrades_and_matches_the_models(db_url: str) -> None:
    db = Database(db_url)
    try:
        db.migrate()
    finally:
        db.dispose()
    assert _tables(db_url) >= STOLEN_TABLES
    engine = sqlalchemy.create_engine(db_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection)
            differences = [d for d in compare_metadata(context, Base.metadata) if _about_stolen(d)]
    finally:
        engine.dispose()
    assert differences == []
    _alembic(db_url, lambda config: command.downgrade(config, "0008"))
    assert not STOLEN_TABLES & _tables(db_url)
    _alembic(db_url, lambda config: command.upgrade(config, "head"))
    assert _tables(db_url) >= STOLEN_TABLES


def _about_stolen(difference: Any) -> bool:
    """Whether an autogenerate difference touches one of the stolen-case tables."""
    text = repr(difference)
    return any(table in text for table in STOLEN_TABLES)


def test_a_register_that_takes_no_writes_files_and_closes_no_case(
    clients: dict[str, Client], server: RunningServer
) -> None:
    telkomsel = clients["telkomsel"]
    case = file_case(telkomsel, 40)

    def frozen(session: Session, command: Command[Any]) -> None:
        raise WritesRefused("frozen for a handover", reason="REGISTER_FROZEN")

    server.register.write_gate = frozen
    try:
        for attempt in (
            lambda: file_case(telkomsel, 41),
            lambda: update(telkomsel, case.case_id, RECOVERED),
            lambda: update(telkomsel, case.case_id, BLOCKED),
        ):
            error = refused(attempt)
            assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
            assert error_reason(error) == "REGISTER_FROZEN"
    finally:
        server.register.write_gate = None
    assert listed(telkomsel) == [case.case_id]
    assert get(telkomsel, case.case_id).state == PENDING

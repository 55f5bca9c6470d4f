"""Reading and writing stolen-phone cases and theft alerts.

Like ``repository``, functions take the caller's session or connection and
never commit: ``ceir.service.stolen_cases`` owns the transactions.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Table, func, insert, select, update

from ceir.domain.stolen import CaseState, Step, StolenCase, TheftAlert

from . import stolen_tables as tables
from .repository import Executor, chunks


def _table(model: type[tables.Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


_cases = _table(tables.StolenCaseRecord)
_imeis = _table(tables.StolenCaseImeiRecord)
_steps = _table(tables.StolenCaseStepRecord)
_alerts = _table(tables.TheftAlertRecord)


def insert_case(connection: Executor, case: StolenCase) -> None:
    """Store a new case, its IMEIs and its history."""
    connection.execute(
        insert(_cases).values(
            case_id=case.case_id,
            state=int(case.state),
            imsi=case.imsi,
            msisdn=case.msisdn,
            police_report=case.police_report,
            reporter=case.reporter,
            filed_at_us=case.filed_at_us,
            updated_at_us=case.updated_at_us,
        )
    )
    connection.execute(
        insert(_imeis),
        [
            {"case_id": case.case_id, "slot": slot, "imei_key": key, "open": 1}
            for slot, key in enumerate(case.imei_keys)
        ],
    )
    for index, step in enumerate(case.history):
        add_step(connection, case.case_id, index, step)


def add_step(connection: Executor, case_id: str, index: int, step: Step) -> None:
    connection.execute(
        insert(_steps).values(
            case_id=case_id,
            step=index,
            state=int(step.state),
            actor=step.actor,
            note=step.note,
            sequence=step.sequence,
            at_us=step.at_us,
        )
    )


def move_case(connection: Executor, case: StolenCase, step: Step) -> None:
    """Put a case in the step's state and append the step to its history."""
    connection.execute(
        update(_cases)
        .where(_cases.c.case_id == case.case_id)
        .values(state=int(step.state), updated_at_us=step.at_us)
    )
    if not step.state.open:
        connection.execute(update(_imeis).where(_imeis.c.case_id == case.case_id).values(open=0))
    add_step(connection, case.case_id, len(case.history), step)


def open_cases_on(connection: Executor, keys: Sequence[int]) -> list[tuple[str, int]]:
    """(case id, IMEI key) of every open case holding one of ``keys``."""
    found: list[tuple[str, int]] = []
    for part in chunks(list(keys)):
        rows = connection.execute(
            select(_imeis.c.case_id, _imeis.c.imei_key)
            .where(_imeis.c.imei_key.in_(part), _imeis.c.open == 1)
            .order_by(_imeis.c.case_id, _imeis.c.slot)
        )
        found.extend((row.case_id, int(row.imei_key)) for row in rows)
    return found


def case_of(connection: Executor, case_id: str) -> StolenCase | None:
    """The case with its IMEIs and history, or None."""
    row = connection.execute(select(_cases).where(_cases.c.case_id == case_id)).first()
    if row is None:
        return None
    keys = connection.execute(
        select(_imeis.c.imei_key).where(_imeis.c.case_id == case_id).order_by(_imeis.c.slot)
    ).scalars()
    steps = connection.execute(
        select(_steps).where(_steps.c.case_id == case_id).order_by(_steps.c.step)
    )
    return StolenCase(
        case_id=row.case_id,
        state=CaseState(row.state),
        imei_keys=tuple(int(k) for k in keys),
        imsi=row.imsi,
        msisdn=row.msisdn,
        police_report=row.police_report,
        reporter=row.reporter,
        filed_at_us=row.filed_at_us,
        updated_at_us=row.updated_at_us,
        history=tuple(
            Step(CaseState(s.state), s.actor, s.note, int(s.sequence), s.at_us) for s in steps
        ),
    )


def case_page(
    connection: Executor, reporter: str | None, after: int, limit: int
) -> list[tuple[int, str]]:
    """(number, case id) of up to ``limit`` cases numbered after ``after``
    (of ``reporter``; None: every case), in filing order."""
    statement = select(_cases.c.number, _cases.c.case_id).where(_cases.c.number > after)
    if reporter is not None:
        statement = statement.where(_cases.c.reporter == reporter)
    rows = connection.execute(statement.order_by(_cases.c.number).limit(limit))
    return [(int(row.number), row.case_id) for row in rows]


def blocked_imeis(connection: Executor) -> list[tuple[int, str, str]]:
    """(IMEI key, case id, reporter) of every IMEI of a BLOCKED case."""
    rows = connection.execute(
        select(_imeis.c.imei_key, _cases.c.case_id, _cases.c.reporter)
        .join(_cases, _cases.c.case_id == _imeis.c.case_id)
        .where(_cases.c.state == int(CaseState.BLOCKED))
    )
    return [(int(row.imei_key), row.case_id, row.reporter) for row in rows]


def insert_alerts(connection: Executor, alerts: Sequence[TheftAlert]) -> None:
    """Store alerts (their ids are given by the database)."""
    if alerts:
        connection.execute(
            insert(_alerts),
            [
                {
                    "reporter": a.reporter,
                    "case_id": a.case_id,
                    "imei_key": a.imei_key,
                    "imsi": a.imsi,
                    "msisdn": a.msisdn,
                    "seen_by": a.seen_by,
                    "seen_at_us": a.seen_at_us,
                }
                for a in alerts
            ],
        )


def alert_page(connection: Executor, reporter: str, after: int, limit: int) -> list[TheftAlert]:
    """Up to ``limit`` alerts of ``reporter`` with ids after ``after``, in id order."""
    rows = connection.execute(
        select(_alerts)
        .where(_alerts.c.reporter == reporter, _alerts.c.id > after)
        .order_by(_alerts.c.id)
        .limit(limit)
    )
    return [
        TheftAlert(
            int(r.id),
            r.case_id,
            r.reporter,
            int(r.imei_key),
            r.imsi,
            r.msisdn,
            r.seen_by,
            r.seen_at_us,
        )
        for r in rows
    ]


def alert_count(connection: Executor) -> int:
    return int(connection.execute(select(func.count()).select_from(_alerts)).scalar_one())

"""Reading and writing complaints and their steps (``complaint_tables``).

No transaction is opened here: the complaints service opens one per
operation (``ceir.service.complaints``), inside the register's write lock
for every write.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, or_, select, text, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from ceir.domain.complaints import (
    OPEN_STATES,
    Category,
    Complaint,
    ComplaintStep,
    State,
    StepKind,
)

from .complaint_tables import ComplaintRow, ComplaintStepRow

Executor = Connection | Session

_C = ComplaintRow.__table__.c
_S = ComplaintStepRow.__table__.c
_OPEN = [int(s) for s in OPEN_STATES]

__all__ = [
    "add_step",
    "complaint",
    "count",
    "count_missed",
    "insert_complaint",
    "overdue",
    "page",
    "replace_all",
    "set_fields",
    "strays",
]


def insert_complaint(session: Session, values: dict[str, Any]) -> int:
    """Store a new complaint's row; its id (the tracking number)."""
    result = session.execute(insert(ComplaintRow).values(**values).returning(_C.id))
    return int(result.scalar_one())


def add_step(session: Session, complaint_id: int, step: ComplaintStep) -> None:
    session.execute(
        insert(ComplaintStepRow).values(
            complaint_id=complaint_id,
            number=step.number,
            kind=int(step.kind),
            at_us=step.at_us,
            actor=step.actor,
            from_state=0 if step.from_state is None else int(step.from_state),
            to_state=int(step.to_state),
            note=step.note,
            action=step.action,
            change_sequences=",".join(str(s) for s in step.change_sequences),
        )
    )


def set_fields(session: Session, complaint_id: int, **values: Any) -> None:
    session.execute(update(ComplaintRow).where(_C.id == complaint_id).values(**values))


def complaint(connection: Executor, complaint_id: int) -> Complaint | None:
    """The complaint with its history, or None."""
    row = connection.execute(select(ComplaintRow.__table__).where(_C.id == complaint_id)).first()
    if row is None:
        return None
    return _with_steps(connection, [row])[0]


def visible_to(name: str | None) -> ColumnElement[bool]:
    """The complaints an organisation reads: those it owns, filed or was
    escalated to (None: every complaint, for the regulators)."""
    if name is None:
        return _C.id.is_not(None)
    return or_(_C.owner == name, _C.filed_by == name, _C.escalated_to == name)


def page(
    connection: Executor, reader: str | None, state: State | None, after: int, limit: int
) -> list[Complaint]:
    """Up to ``limit`` complaints ``reader`` reads, after id ``after``, oldest first."""
    condition = and_(visible_to(reader), _C.id > after)
    if state is not None:
        condition = and_(condition, _C.state == int(state))
    rows = connection.execute(
        select(ComplaintRow.__table__).where(condition).order_by(_C.id).limit(limit)
    ).all()
    return _with_steps(connection, rows)


def count(connection: Executor, reader: str | None, state: State | None) -> int:
    """How many complaints ``reader`` reads (in ``state``, if given)."""
    condition = visible_to(reader)
    if state is not None:
        condition = and_(condition, _C.state == int(state))
    query = select(func.count()).select_from(ComplaintRow.__table__).where(condition)
    return int(connection.execute(query).scalar_one())


def count_missed(connection: Executor, reader: str | None) -> int:
    """How many complaints ``reader`` reads missed their deadline."""
    query = select(func.count()).where(visible_to(reader), _C.deadline_missed == 1)
    return int(connection.execute(query.select_from(ComplaintRow.__table__)).scalar_one())


def strays(connection: Executor, owner: str, limit: int | None = None) -> list[Complaint]:
    """The open complaints someone other than ``owner`` owns (a desk move's)."""
    condition = and_(_C.state.in_(_OPEN), _C.owner != owner)
    return _selected(connection, condition, limit)


def overdue(connection: Executor, now_us: int, limit: int | None = None) -> list[Complaint]:
    """Open complaints past their deadline not yet counted as missed."""
    condition = and_(_C.state.in_(_OPEN), _C.deadline_us <= now_us, _C.deadline_missed == 0)
    return _selected(connection, condition, limit)


def _selected(
    connection: Executor, condition: ColumnElement[bool], limit: int | None
) -> list[Complaint]:
    query = select(ComplaintRow.__table__).where(condition).order_by(_C.id)
    if limit is not None:
        query = query.limit(limit)
    return _with_steps(connection, connection.execute(query).all())


def _with_steps(connection: Executor, rows: Sequence[Any]) -> list[Complaint]:
    """Complaints from their rows, with every step, in one query for the steps."""
    if not rows:
        return []
    ids = [row.id for row in rows]
    steps: dict[int, list[ComplaintStep]] = {i: [] for i in ids}
    for step in connection.execute(
        select(ComplaintStepRow.__table__)
        .where(_S.complaint_id.in_(ids))
        .order_by(_S.complaint_id, _S.number)
    ):
        steps[step.complaint_id].append(
            ComplaintStep(
                number=step.number,
                kind=StepKind(step.kind),
                at_us=step.at_us,
                actor=step.actor,
                from_state=State(step.from_state) if step.from_state else None,
                to_state=State(step.to_state),
                note=step.note,
                action=step.action,
                change_sequences=tuple(int(s) for s in step.change_sequences.split(",") if s),
            )
        )
    return [
        Complaint(
            id=row.id,
            category=Category(row.category),
            state=State(row.state),
            imei_keys=tuple(int(k) for k in row.imei_keys.split(",") if k),
            imsi=row.imsi,
            msisdn=row.msisdn,
            description=row.description,
            filed_by=row.filed_by,
            owner=row.owner,
            filed_at_us=row.filed_at_us,
            deadline_us=row.deadline_us,
            deadline_missed=bool(row.deadline_missed),
            escalated_to=row.escalated_to,
            closed_at_us=row.closed_at_us,
            history=tuple(steps[row.id]),
        )
        for row in rows
    ]


def replace_all(session: Session, complaints: Sequence[Complaint]) -> None:
    """Make the tables hold exactly ``complaints`` (a handover's copy of the
    outgoing register's), with their own tracking numbers; the number the
    next filing gets continues after the highest ever held here."""
    session.execute(delete(ComplaintStepRow))
    session.execute(delete(ComplaintRow))
    rows = [
        {
            "id": c.id,
            "category": int(c.category),
            "state": int(c.state),
            "imei_keys": ",".join(str(k) for k in c.imei_keys),
            "imsi": c.imsi,
            "msisdn": c.msisdn,
            "description": c.description,
            "filed_by": c.filed_by,
            "owner": c.owner,
            "filed_at_us": c.filed_at_us,
            "deadline_us": c.deadline_us,
            "deadline_missed": int(c.deadline_missed),
            "escalated_to": c.escalated_to,
            "closed_at_us": c.closed_at_us,
            # Every step sets it to its own time (filing included).
            "updated_at_us": c.history[-1].at_us if c.history else c.filed_at_us,
        }
        for c in complaints
    ]
    steps = [
        {
            "complaint_id": c.id,
            "number": s.number,
            "kind": int(s.kind),
            "at_us": s.at_us,
            "actor": s.actor,
            "from_state": 0 if s.from_state is None else int(s.from_state),
            "to_state": int(s.to_state),
            "note": s.note,
            "action": s.action,
            "change_sequences": ",".join(str(n) for n in s.change_sequences),
        }
        for c in complaints
        for s in c.history
    ]
    if rows:
        session.execute(insert(ComplaintRow), rows)
    if steps:
        session.execute(insert(ComplaintStepRow), steps)
    if rows and session.get_bind().dialect.name == "postgresql":
        _continue_sequence(session, max(c.id for c in complaints))
    # SQLite: AUTOINCREMENT's sqlite_sequence already holds the highest id
    # ever inserted, explicit ones included, and never goes down.


def _continue_sequence(session: Session, highest: int) -> None:
    """PostgreSQL: the id sequence gives ``highest`` + 1 next, unless it is
    already beyond (it never goes back: a number is never given twice)."""
    name = session.execute(text("SELECT pg_get_serial_sequence('complaints', 'id')")).scalar_one()
    assert name is not None, "complaints.id has a sequence (migration 0008)"
    last, called = session.execute(text(f"SELECT last_value, is_called FROM {name}")).one()
    held = int(last) if called else int(last) - 1
    if highest > held:
        session.execute(
            text("SELECT setval(:name, :value, true)"), {"name": name, "value": highest}
        )

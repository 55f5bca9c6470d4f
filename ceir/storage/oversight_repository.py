"""Reading and writing the account-oversight tables (``oversight_tables``),
and the reads of the change log an abused account's query needs.

As in ``repository``: functions take the caller's session or connection and
never open or commit a transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Table, and_, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ceir.domain.model import ChangeKind
from ceir.domain.oversight import HISTORY_HOURS, WINDOW_US, AccountAlert, RegistrationRow

from . import schema
from .oversight_tables import AccountAlertRecord, AccountRate
from .repository import IN_CHUNK, Executor, chunks, device_id_from

__all__ = [
    "add_registrations",
    "alerts_page",
    "history_total",
    "insert_alert",
    "latest_registrations",
    "organisation_known",
    "registrations_page",
    "whitelisted_keys",
]


def _table(model: type[schema.Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


_rates = _table(AccountRate)
_alerts = _table(AccountAlertRecord)
_changes = _table(schema.ChangeRecord)
_whitelist = _table(schema.WhitelistEntry)
_orgs = _table(schema.Organisation)
_ADDED = int(ChangeKind.WHITELIST_ADDED)


def _insert(session: Session, table: Table) -> Any:
    """The dialect's INSERT, which has ON CONFLICT (SQLite and PostgreSQL alike)."""
    if session.connection().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


# --- rates (in the write transaction) ---------------------------------------------------


def add_registrations(
    session: Session, organisation: str, hour_us: int, count: int, first: int, last: int
) -> int:
    """Add ``count`` registrations (changes ``first`` to ``last``) to the
    organisation's hour; the hour's count after."""
    statement = _insert(session, _rates).values(
        organisation=organisation,
        hour_us=hour_us,
        registrations=count,
        first_sequence=first,
        last_sequence=last,
    )
    # Writes are serialised and sequences only grow: the stored first stays.
    statement = statement.on_conflict_do_update(
        index_elements=["organisation", "hour_us"],
        set_={
            "registrations": _rates.c.registrations + statement.excluded.registrations,
            "last_sequence": statement.excluded.last_sequence,
        },
    ).returning(_rates.c.registrations)
    return int(session.execute(statement).scalar_one())


def history_total(connection: Executor, organisation: str, hour_us: int) -> int:
    """The organisation's registrations in the ``HISTORY_HOURS`` before ``hour_us``."""
    total = connection.execute(
        select(func.coalesce(func.sum(_rates.c.registrations), 0)).where(
            _rates.c.organisation == organisation,
            _rates.c.hour_us >= hour_us - HISTORY_HOURS * WINDOW_US,
            _rates.c.hour_us < hour_us,
        )
    ).scalar_one()
    return int(total)


def insert_alert(
    session: Session,
    organisation: str,
    window_start_us: int,
    registrations: int,
    baseline: float,
    threshold: float,
    factor: float,
    raised_at_us: int,
    sequence: int,
) -> int | None:
    """Store the window's alert; its id, or None if the window has one already."""
    statement = (
        _insert(session, _alerts)
        .values(
            organisation=organisation,
            window_start_us=window_start_us,
            registrations=registrations,
            baseline=baseline,
            threshold=threshold,
            factor=factor,
            raised_at_us=raised_at_us,
            sequence=sequence,
        )
        .on_conflict_do_nothing(index_elements=["organisation", "window_start_us"])
        .returning(_alerts.c.id)
    )
    found = session.execute(statement).scalar()
    return None if found is None else int(found)


# --- reads -------------------------------------------------------------------------------


def alerts_page(connection: Executor, before_id: int | None, limit: int) -> list[AccountAlert]:
    """Alerts with an id below ``before_id`` (None: all), newest first, with
    their window's count now."""
    query = (
        select(_alerts, _rates.c.registrations.label("now"))
        .select_from(
            _alerts.outerjoin(
                _rates,
                and_(
                    _rates.c.organisation == _alerts.c.organisation,
                    _rates.c.hour_us == _alerts.c.window_start_us,
                ),
            )
        )
        .order_by(_alerts.c.id.desc())
        .limit(limit)
    )
    if before_id is not None:
        query = query.where(_alerts.c.id < before_id)
    return [
        AccountAlert(
            alert_id=row.id,
            organisation=row.organisation,
            window_start_us=row.window_start_us,
            registrations=int(row.now if row.now is not None else row.registrations),
            registrations_at_alert=row.registrations,
            baseline=row.baseline,
            threshold=row.threshold,
            factor=row.factor,
            raised_at_us=row.raised_at_us,
            sequence=row.sequence,
        )
        for row in connection.execute(query)
    ]


def organisation_known(connection: Executor, name: str) -> bool:
    """True if the register has (or had: revoked ones stay) an organisation of
    this name, or holds registrations by it (a log taken over from another
    custodian)."""
    if connection.execute(select(_orgs.c.id).where(_orgs.c.name == name)).first() is not None:
        return True
    found = connection.execute(
        select(_rates.c.hour_us).where(_rates.c.organisation == name).limit(1)
    ).first()
    return found is not None


def _spans(
    connection: Executor, organisation: str, start_us: int, end_us: int | None, after: int
) -> list[tuple[int, int]]:
    """The stretches of the log (first, last sequence) where the organisation
    registered in hours overlapping the window, after ``after``, merged and
    in order."""
    query = select(_rates.c.first_sequence, _rates.c.last_sequence).where(
        _rates.c.organisation == organisation,
        _rates.c.hour_us > start_us - WINDOW_US,
        _rates.c.last_sequence > after,
    )
    if end_us is not None:
        query = query.where(_rates.c.hour_us < end_us)
    spans: list[tuple[int, int]] = []
    # A clock set back could make two hours' stretches overlap: merge them.
    for first, last in sorted((int(r[0]), int(r[1])) for r in connection.execute(query)):
        if spans and first <= spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], max(spans[-1][1], last))
        else:
            spans.append((first, last))
    return spans


def registrations_page(
    connection: Executor,
    organisation: str,
    start_us: int,
    end_us: int | None,
    after: int,
    upper: int,
    limit: int,
) -> list[RegistrationRow]:
    """Up to ``limit`` WHITELIST_ADDED changes by the organisation made in
    [start_us, end_us), with a sequence in (after, upper], in order
    (``on_whitelist`` left False: see ``whitelisted_keys``)."""
    rows: list[RegistrationRow] = []
    for first, last in _spans(connection, organisation, start_us, end_us, after):
        low, high = max(first, after + 1), min(last, upper)
        if low > high:
            continue
        query = (
            select(
                _changes.c.sequence,
                _changes.c.imei_key,
                _changes.c.device_id,
                _changes.c.leaf_version,
                _changes.c.source,
                _changes.c.reference,
                _changes.c.committed_at_us,
            )
            .where(
                _changes.c.sequence >= low,
                _changes.c.sequence <= high,
                _changes.c.kind == _ADDED,
                _changes.c.actor == organisation,
                _changes.c.committed_at_us >= start_us,
            )
            .order_by(_changes.c.sequence)
            .limit(limit - len(rows))
        )
        if end_us is not None:
            query = query.where(_changes.c.committed_at_us < end_us)
        for row in connection.execute(query):
            rows.append(
                RegistrationRow(
                    imei_key=row.imei_key,
                    device_id=device_id_from(_ADDED, row.leaf_version, row.sequence, row.device_id),
                    source=row.source or 0,
                    reference=row.reference,
                    registered_at_us=row.committed_at_us,
                    sequence=row.sequence,
                )
            )
        if len(rows) >= limit or high >= upper:
            break
    return rows


def latest_registrations(connection: Executor, keys: Iterable[int]) -> dict[int, tuple[int, str]]:
    """Each key's latest registration: (sequence, organisation)."""
    latest: dict[int, tuple[int, str]] = {}
    for part in chunks(sorted(set(keys)), IN_CHUNK):
        rows = connection.execute(
            select(_changes.c.imei_key, _changes.c.sequence, _changes.c.actor).where(
                _changes.c.imei_key.in_(part), _changes.c.kind == _ADDED
            )
        )
        for key, sequence, actor in rows:
            if key not in latest or sequence > latest[key][0]:
                latest[key] = (sequence, actor)
    return latest


def whitelisted_keys(connection: Executor, keys: Sequence[int]) -> set[int]:
    """Those of ``keys`` with a whitelist row."""
    found: set[int] = set()
    for part in chunks(sorted(set(keys)), IN_CHUNK):
        found.update(
            connection.execute(
                select(_whitelist.c.imei_key).where(_whitelist.c.imei_key.in_(part))
            ).scalars()
        )
    return found

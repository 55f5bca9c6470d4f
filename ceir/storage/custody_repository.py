"""The custody ceremony's tables: the policy chain, the ceremony row, readiness.

Like ``repository``, functions take the caller's session or connection and
never open or commit a transaction.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import delete, insert, select, update

from ceir.domain.custody import Ceremony, CustodyState, PendingKind

from . import schema
from .repository import Executor, _table

__all__ = [
    "add_policy",
    "clear_readiness",
    "drop_policies_after",
    "load_ceremony",
    "operator_names",
    "policy_notes",
    "readiness",
    "record_readiness",
    "save_ceremony",
]

_policies = _table(schema.CustodyPolicyRecord)
_ceremony = _table(schema.CustodyCeremonyRecord)
_readiness = _table(schema.CustodyReadiness)
_ROW_ID = 1
_FIELDS = tuple(field.name for field in dataclasses.fields(Ceremony))


def load_ceremony(connection: Executor) -> Ceremony | None:
    """The stored ceremony, or None on a register never configured for custody."""
    row = connection.execute(select(_ceremony).where(_ceremony.c.id == _ROW_ID)).first()
    if row is None:
        return None
    values: dict[str, Any] = {name: getattr(row, name) for name in _FIELDS}
    values["state"] = CustodyState(values["state"])
    values["pending_kind"] = PendingKind(values["pending_kind"])
    values["writable"] = bool(values["writable"])
    return Ceremony(**values)


def save_ceremony(connection: Executor, ceremony: Ceremony) -> None:
    """Store the ceremony row (insert the first time, update after)."""
    values: dict[str, Any] = {name: getattr(ceremony, name) for name in _FIELDS}
    values["state"] = int(ceremony.state)
    values["pending_kind"] = ceremony.pending_kind.value
    values["writable"] = int(ceremony.writable)
    result = connection.execute(update(_ceremony).where(_ceremony.c.id == _ROW_ID).values(values))
    if result.rowcount == 0:  # type: ignore[attr-defined]
        connection.execute(insert(_ceremony).values(id=_ROW_ID, **values))


def policy_notes(connection: Executor) -> list[str]:
    """The signed notes of the stored policies, version 0 first."""
    rows = connection.execute(select(_policies.c.note).order_by(_policies.c.version))
    return [note for (note,) in rows]


def add_policy(
    connection: Executor, version: int, note: str, text_sha256: str, now_us: int
) -> None:
    connection.execute(
        insert(_policies).values(
            version=version, note=note, text_sha256=text_sha256, stored_at_us=now_us
        )
    )


def drop_policies_after(connection: Executor, version: int) -> None:
    """Forget the policies after ``version`` (an announcement called off)."""
    connection.execute(delete(_policies).where(_policies.c.version > version))


def readiness(connection: Executor, version: int) -> dict[str, str]:
    """The organisations that reported readiness for ``version``, and the SHA-256 they sent."""
    rows = connection.execute(
        select(_readiness.c.organisation, _readiness.c.text_sha256).where(
            _readiness.c.version == version
        )
    )
    return {organisation: digest for organisation, digest in rows}


def record_readiness(
    connection: Executor, organisation: str, version: int, text_sha256: str, now_us: int
) -> None:
    connection.execute(
        insert(_readiness).values(
            organisation=organisation,
            version=version,
            text_sha256=text_sha256,
            reported_at_us=now_us,
        )
    )


def clear_readiness(connection: Executor, version: int) -> None:
    """Forget the reports for ``version`` (its announcement was called off)."""
    connection.execute(delete(_readiness).where(_readiness.c.version == version))


def operator_names(connection: Executor) -> list[str]:
    """The organisations of kind operator that are not revoked, by name."""
    organisations = _table(schema.Organisation)
    rows = connection.execute(
        select(organisations.c.name)
        .where(organisations.c.kind == "operator", organisations.c.revoked_at_us.is_(None))
        .order_by(organisations.c.name)
    )
    return [name for (name,) in rows]

"""The bulk revocation of an abused account's registrations: one page, one write.

The handler of ``RevokeRegistrationsBy`` (``ceir.service.handlers``), run
by ``Register.execute`` like every write: under the write lock, in one
transaction, it reads the page of the set from the log (``after`` to
``upper``; the first page fixes ``upper`` at the head), decides each row
(``ceir.domain.oversight.outcome``) against the exact lists, and emits a
``WHITELIST_REMOVED`` change with the reason for each row it revokes: the
same change kind ``RevokeRegistration`` makes, so the leaf encoding, the
feed and ``GetImeiRecord``'s history show it as any revocation. The
pipeline stores the page's answer under ``request_id#page`` (AIP-155).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from sqlalchemy.orm import Session

from ceir.domain.commands import RevokeRegistrationsBy
from ceir.domain.errors import InvalidArgument, PermissionDenied
from ceir.domain.model import Caller, Change, ChangeKind
from ceir.domain.oversight import Outcome, RevocationPage, RevocationRow, outcome
from ceir.domain.permissions import revokes_any
from ceir.storage import oversight_repository as oversight

from .unit import WriteUnit

__all__ = ["authorize_revoke_by", "revoke_by"]


@runtime_checkable
class _TableRecords(Protocol):
    """Records read from the tables in the write transaction (``register.TableRecords``)."""

    session: Session


def authorize_revoke_by(caller: Caller, command: RevokeRegistrationsBy) -> None:
    """Only an organisation that revokes any registration (Kemenperin)."""
    if not revokes_any(caller):
        raise PermissionDenied(
            f"{caller.name} ({caller.kind.value}) may not revoke another organisation's "
            "registrations; only kemenperin may",
            reason="ACTION_NOT_ALLOWED",
        )


def revoke_by(command: RevokeRegistrationsBy, unit: WriteUnit) -> RevocationPage:
    records = unit.records
    if not isinstance(records, _TableRecords):
        raise TypeError("the bulk revocation reads the change log: it needs the tables")
    session = records.session
    organisation = command.organisation
    if not oversight.organisation_known(session, organisation):
        raise InvalidArgument.field(
            "organisation",
            f"no organisation named {organisation!r} is or was known to the register",
            reason="UNKNOWN_ORGANISATION",
        )
    upper = unit.next_sequence - 1 if command.upper is None else command.upper
    found = oversight.registrations_page(
        session,
        organisation,
        command.start_us,
        command.end_us,
        command.after,
        upper,
        command.page_size + 1,
    )
    more = len(found) > command.page_size
    found = found[: command.page_size]
    latest = oversight.latest_registrations(session, [row.imei_key for row in found])
    state = unit.state
    rows: list[RevocationRow] = []
    for row in found:
        key = row.imei_key
        decided = outcome(organisation, row.sequence, state.is_whitelisted(key), latest.get(key))
        revoked = 0
        if decided is Outcome.REVOKED:
            change = unit.add(Change(ChangeKind.WHITELIST_REMOVED, key, reason=command.reason))
            revoked = change.sequence
        rows.append(RevocationRow(key, row.sequence, decided, revoked))
    after = found[-1].sequence if found else command.after
    return RevocationPage(
        tuple(rows), organisation, command.start_us, command.end_us, upper, after, more
    )

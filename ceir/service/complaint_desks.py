"""Which desk owns a complaint: the desk in force, and whether an operator
has ever seen an IMEI.

The desk in force comes from the custody policy in force (its
``complaints`` line; its custodian is the register's own desk), read from
the database so that every server sharing it agrees; without a custody
policy, from ``ceir serve --complaints-desk`` (both the named desk and the
register's own desk).

"Seen by an operator" is what the register can honestly tell, and no more:

- a change in the log about the IMEI made by an operator (a grandfathered
  dump or a tourist registration, a stolen report, a pairing), or a
  notification (only an operator's check of its own subscriber records
  one), or an exception pair;
- a check of the IMEI while registered, since this server started
  (``Register.seen``: in memory, per process);
- a sighting with an IMSI in the clone tracker (recent checks, in memory).

Limits: checks an operator answers from its own synchronized lists never
reach the register, and the in-memory records are lost at a restart; a
registered IMEI an operator checked only in synchronize mode, or before
the last restart, counts as unseen.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from ceir.domain.complaints import Desk
from ceir.domain.model import Caller, ChangeKind, OrgKind, RegistrationSource
from ceir.storage import custody_repository as custody_repo
from ceir.storage import repository as repo
from ceir.storage.schema import ChangeRecord, Organisation

from .custody import parse_policy_note
from .register import Register

Executor = Connection | Session

__all__ = ["Organisations", "customs_registered_at", "desk_in_force", "seen_by_operator"]


class Organisations:
    """The organisations the database knows: kinds and MCC-MNCs by name."""

    def __init__(self, connection: Executor) -> None:
        self.kinds: dict[str, OrgKind] = {}
        self.codes: dict[str, tuple[str, ...]] = {}
        for row in connection.execute(
            select(Organisation.name, Organisation.kind, Organisation.mcc_mncs).order_by(
                Organisation.id
            )
        ):
            self.kinds[row.name] = OrgKind(row.kind)
            self.codes[row.name] = tuple(c for c in row.mcc_mncs.split(",") if c)

    def operators(self) -> list[str]:
        return [name for name, kind in self.kinds.items() if kind is OrgKind.OPERATOR]

    def first_of(self, kind: OrgKind) -> str:
        """The first organisation of a kind (its kind's name if there is none)."""
        return next((n for n, k in self.kinds.items() if k is kind), kind.value)

    def operator_of(self, imsi: str) -> str | None:
        """The operator whose MCC-MNC the IMSI has, if any."""
        for name in self.operators():
            caller = Caller(name, OrgKind.OPERATOR, self.codes[name])
            if imsi and caller.owns_imsi(imsi):
                return name
        return None


_PARSED: dict[str, tuple[int, str, str]] = {}


def desk_in_force(connection: Executor, default_desk: str, orgs: Organisations) -> Desk:
    """The desk under the custody policy in force (or the default without one)."""
    ceremony = custody_repo.load_ceremony(connection)
    if ceremony is None:
        named, custodian, version = default_desk, default_desk, None
    else:
        note = custody_repo.policy_notes(connection)[ceremony.version]
        parsed = _PARSED.get(note)
        if parsed is None:
            policy = parse_policy_note(note)
            parsed = _PARSED.setdefault(note, (policy.version, policy.complaints, policy.custodian))
        version, named, custodian = parsed
    # A desk named for an organisation this register does not know (yet) is
    # not a desk anyone could work: moving every complaint to it would strand
    # them, so the operators keep their own desks until it exists.
    operators = orgs.kinds.get(named, OrgKind.OPERATOR) is OrgKind.OPERATOR
    return Desk(named, operators, custodian, version)


_SEEN_KINDS = (int(ChangeKind.NOTIFICATION_NEW), int(ChangeKind.EXCEPTION_ADDED))


def seen_by_operator(
    register: Register, connection: Executor, keys: Sequence[int], operators: Sequence[str]
) -> bool:
    """True if an operator has been seen with any of ``keys`` (module docstring)."""
    if not keys:
        return False
    if register.seen.seen(np.array(keys, dtype=np.uint64)).any():
        return True
    clones = register.state.clones
    if any(clones.imsis_of(key) for key in keys):
        return True
    table = ChangeRecord.__table__.c
    found = connection.execute(
        select(table.sequence)
        .where(
            table.imei_key.in_(list(keys)),
            table.kind.in_(_SEEN_KINDS) | table.actor.in_(list(operators)),
        )
        .limit(1)
    ).first()
    return found is not None


def customs_registered_at(connection: Executor, keys: Sequence[int]) -> int | None:
    """When customs registered one of ``keys`` (the latest, None: none did)."""
    times = [
        record.registered_at_us
        for record in (repo.registration_of(connection, key) for key in keys)
        if record is not None and record.source is RegistrationSource.CUSTOMS
    ]
    return max(times) if times else None

"""The complaints desk: filing, reading, moving along the lifecycle,
resolving through the register's audited operations, deadlines and the
move of the desk.

Every write runs in a transaction that holds the register's write lock
(``Register.transaction``, or ``Register.execute`` for a resolution), so
complaint steps are serialised with each other and with list changes,
across every server sharing a PostgreSQL database: a desk move or an
escalation noticed by two servers at once happens once (the second finds
nothing left to do).

Before each operation the desk ``refresh``es: open complaints another desk
holds move to the desk in force (when the custody policy names one desk
for every complaint), and open complaints past their deadline are
escalated and counted. A background sweep does the same every
``sweep_interval`` seconds (``start_sweeping``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, cast

from sqlalchemy.orm import Session

from ceir.domain.commands import Command, ResolveComplaint
from ceir.domain.complaint_digest import ComplaintDigest
from ceir.domain.complaints import (
    DEFAULT_SERVICE_LEVELS,
    REGISTER_ACTOR,
    Category,
    Complaint,
    ComplaintStep,
    Desk,
    ResolutionAction,
    ServiceLevels,
    State,
    StepKind,
    escalation_kind,
    format_tracking_id,
    require_action_allowed,
    require_transition,
)
from ceir.domain.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    WritesRefused,
)
from ceir.domain.model import Caller, OrgKind
from ceir.domain.permissions import (
    SEES_EVERY_SUBSCRIBER,
    Action,
    require,
    require_own_imsi,
    sees_subscriber,
)
from ceir.domain.validation import check_request_id
from ceir.storage import complaint_repository as complaints_repo
from ceir.storage import repository as repo

from .complaint_desks import Organisations, customs_registered_at, desk_in_force, seen_by_operator
from .register import Committed, Register, Replayed

log = logging.getLogger("ceir.complaints")

MAX_PAGE = 1_000
DEFAULT_PAGE = 100
DEFAULT_DESK = "telkomsel"  # the epoch-0 custodian (for ATSI), without a custody policy
SWEEP_SECONDS = 30.0

Render = Callable[[Complaint], bytes]

__all__ = ["ComplaintDesk", "Filing", "Resolution", "require_digest_allowed"]


@dataclass(frozen=True)
class Filing:
    """A validated complaint to file (``ceir.api.complaint_requests``)."""

    imei_keys: tuple[int, ...]
    imsi: str
    msisdn: str
    category: Category
    description: str


@dataclass(frozen=True)
class Resolution:
    """A validated resolution: the action and the command carrying it out
    (None for NO_ACTION)."""

    tracking_number: int
    note: str
    action: ResolutionAction
    command: Command[Any] | None


class ComplaintDesk:
    """The complaints desk of one register."""

    def __init__(
        self,
        register: Register,
        levels: ServiceLevels = DEFAULT_SERVICE_LEVELS,
        default_desk: str = DEFAULT_DESK,
        on_missed: Callable[[Category], None] | None = None,
    ) -> None:
        """``default_desk``: the desk without a custody policy
        (``ceir serve --complaints-desk``); ``on_missed(category)``: called
        once per deadline missed, after its escalation committed (a metric)."""
        self.register = register
        self.levels = levels
        self.default_desk = default_desk
        self.on_missed = on_missed
        self._sweeper: threading.Thread | None = None

    # --- filing ----------------------------------------------------------------------------

    def file(
        self, caller: Caller, filing: Filing, request_id: str, fingerprint: str, render: Render
    ) -> Complaint | Replayed:
        require(caller, Action.FILE_COMPLAINTS)
        if filing.imsi:
            require_own_imsi(caller, filing.imsi, "imsi")
        check_request_id(request_id)
        now = self.register.clock.now_us()
        with self._transaction(caller, "FileComplaint", request_id, fingerprint) as tx:
            if tx.replayed is not None:
                return tx.replayed
            session = tx.session
            orgs = Organisations(session)
            desk = desk_in_force(session, self.default_desk, orgs)
            owner, why = self._owner(caller, filing, desk, orgs, session)
            customs_at = customs_registered_at(session, filing.imei_keys)
            number = complaints_repo.insert_complaint(
                session,
                {
                    "category": int(filing.category),
                    "state": int(State.SUBMITTED),
                    "imei_keys": ",".join(str(k) for k in filing.imei_keys),
                    "imsi": filing.imsi,
                    "msisdn": filing.msisdn,
                    "description": filing.description,
                    "filed_by": caller.name,
                    "owner": owner,
                    "filed_at_us": now,
                    "deadline_us": self.levels.deadline_us(filing.category, now, customs_at),
                    "deadline_missed": 0,
                    "escalated_to": "",
                    "closed_at_us": None,
                    "updated_at_us": now,
                },
            )
            note = f"filed by {caller.name}; owned by {owner}: {why}"
            step = ComplaintStep(1, StepKind.FILED, now, caller.name, None, State.SUBMITTED, note)
            complaints_repo.add_step(session, number, step)
            filed = _must(complaints_repo.complaint(session, number))
            tx.store(render(filed))
            return filed

    def _owner(
        self, caller: Caller, filing: Filing, desk: Desk, orgs: Organisations, session: Session
    ) -> tuple[str, str]:
        """The desk that owns a new complaint, and why (for its first step)."""
        if not desk.operators:
            return desk.named, f"the desk under {desk.why()}"
        if not seen_by_operator(self.register, session, filing.imei_keys, orgs.operators()):
            # As the operators' association asked in 2020.
            return desk.register_desk, "the register's own desk: no operator has seen these IMEIs"
        if caller.kind is OrgKind.OPERATOR:
            return caller.name, "the desk it was filed at"
        # Kemenperin files while the operators hold the desk: the subscriber's operator.
        operator = orgs.operator_of(filing.imsi)
        if operator is not None:
            return operator, "the subscriber's operator's desk"
        return desk.register_desk, "the register's own desk: no operator owns the IMSI"

    # --- reading ---------------------------------------------------------------------------

    def get(self, caller: Caller, number: int) -> Complaint:
        require(caller, Action.READ_COMPLAINTS)
        self.refresh_if_due()
        with self.register.db.read() as connection:
            found = complaints_repo.complaint(connection, number)
        if found is None or not _reads(caller, found):
            raise NotFound(f"no complaint {format_tracking_id(number)}", reason="NO_COMPLAINT")
        return as_seen(caller, found)

    def list(
        self, caller: Caller, state: State | None, page_size: int, page_token: str
    ) -> tuple[list[Complaint], str, int]:
        """One page of complaints the caller reads, the next page's token and
        how many of the complaints it reads missed their deadline."""
        require(caller, Action.READ_COMPLAINTS)
        if page_size < 0:
            raise InvalidArgument.field("page_size", "must not be negative")
        size = min(page_size or DEFAULT_PAGE, MAX_PAGE)
        after = _decode_token(page_token)
        self.refresh_if_due()
        reader = None if caller.kind in SEES_EVERY_SUBSCRIBER else caller.name
        with self.register.db.read() as connection:
            rows = complaints_repo.page(connection, reader, state, after, size + 1)
            missed = complaints_repo.count_missed(connection, reader)
        token = ""
        if len(rows) > size:
            rows = rows[:size]
            token = _encode_token(rows[-1].id)
        return [as_seen(caller, c) for c in rows], token, missed

    def summary(self, caller: Caller, state: State | None) -> tuple[int, str]:
        """(count, digest) of every complaint the caller reads in ``state``, now
        (``ceir.domain.complaint_digest``): what an incoming register checks its
        copy against at a handover. Only for those who read every complaint."""
        require_digest_allowed(caller)
        digest = ComplaintDigest()
        after = 0
        with self.register.db.read() as connection:  # one snapshot for every batch
            while True:
                batch = complaints_repo.page(connection, None, state, after, MAX_PAGE)
                for complaint in batch:
                    digest.add(complaint)
                if len(batch) < MAX_PAGE:
                    break
                after = batch[-1].id
        return digest.count, digest.hexdigest()

    # --- working ---------------------------------------------------------------------------

    def update(
        self,
        caller: Caller,
        number: int,
        target: State,
        note: str,
        request_id: str,
        fingerprint: str,
        render: Render,
    ) -> Complaint | Replayed:
        require(caller, Action.WORK_COMPLAINTS)
        check_request_id(request_id)
        self.refresh_if_due()
        now = self.register.clock.now_us()
        with self._transaction(caller, "UpdateComplaint", request_id, fingerprint) as tx:
            if tx.replayed is not None:
                return tx.replayed
            session = tx.session
            found = self._owned(caller, session, number)
            require_transition(found, target, note)
            kind = StepKind.STATE_CHANGED
            self._step(session, found, kind, now, caller.name, target, note)
            updated = _must(complaints_repo.complaint(session, number))
            tx.store(render(updated))
            return updated

    def resolve(
        self,
        caller: Caller,
        resolution: Resolution,
        request_id: str,
        fingerprint: str,
        render: Callable[[Complaint, int], bytes],
    ) -> tuple[Complaint, int] | Replayed:
        """Resolve through the register's write path: the action's changes
        and the complaint's RESOLVED step (naming them) in one transaction."""
        require(caller, Action.WORK_COMPLAINTS)
        check_request_id(request_id)
        self.refresh_if_due()
        number = resolution.tracking_number
        if not self._answered(caller, request_id):
            # The complaint's own rules first, so that the answer names them
            # rather than the action's; checked again in the transaction.
            with self.register.db.read() as connection:
                self._check_resolvable(caller, connection, number, resolution)
        tracking_id = format_tracking_id(number)
        command = ResolveComplaint(tracking_id, resolution.command)
        done: dict[str, Complaint] = {}

        def within(session: Session, _note: str) -> None:
            found = self._check_resolvable(caller, session, number, resolution)
            now = self.register.clock.now_us()
            self._step(
                session,
                found,
                StepKind.RESOLVED,
                now,
                caller.name,
                State.RESOLVED,
                resolution.note,
                action=resolution.action.value,
                sequences=tuple(command.caused),
            )
            done["complaint"] = _must(complaints_repo.complaint(session, number))

        outcome = self.register.execute(
            caller,
            command,
            request_id,
            fingerprint,
            lambda committed: render(as_seen(caller, done["complaint"]), committed.sequence),
            within,
        )
        if isinstance(outcome, Replayed):
            return outcome
        assert isinstance(outcome, Committed)
        return as_seen(caller, done["complaint"]), outcome.sequence

    def _answered(self, caller: Caller, request_id: str) -> bool:
        if not request_id:
            return False
        with self.register.db.read() as connection:
            # stored_answer only selects: a connection serves as well as a session.
            session = cast(Session, connection)
            stored = repo.stored_answer(session, caller.name, "ResolveComplaint", request_id)
        return stored is not None

    def _check_resolvable(
        self, caller: Caller, connection: Any, number: int, resolution: Resolution
    ) -> Complaint:
        found = self._owned(caller, connection, number)
        require_transition(found, State.RESOLVED, resolution.note)
        require_action_allowed(found.category, resolution.action)
        return found

    def _owned(self, caller: Caller, connection: Any, number: int) -> Complaint:
        """The complaint, if the caller's desk owns it (FAILED_PRECONDITION
        NOT_DESK_OWNER naming the owner if another desk does).

        A desk that may not read the complaint is told which desk owns it all
        the same: a desk it moved away from (the register's own desk, filed
        at by another operator) must hear who has it now, and the owner's
        name is not the subscriber's data."""
        found = complaints_repo.complaint(connection, number)
        if found is None:
            raise NotFound(f"no complaint {format_tracking_id(number)}", reason="NO_COMPLAINT")
        if found.owner != caller.name:
            raise FailedPrecondition(
                f"{found.tracking_id} is owned by {found.owner}'s desk, not {caller.name}'s",
                reason="NOT_DESK_OWNER",
                metadata={"owner": found.owner},
            )
        return found

    def _step(
        self,
        session: Session,
        complaint: Complaint,
        kind: StepKind,
        now: int,
        actor: str,
        target: State,
        note: str,
        *,
        action: str = "",
        sequences: tuple[int, ...] = (),
        **fields: Any,
    ) -> None:
        """Append a step to the complaint's history and update its row."""
        step = ComplaintStep(
            len(complaint.history) + 1,
            kind,
            now,
            actor,
            complaint.state,
            target,
            note,
            action,
            sequences,
        )
        complaints_repo.add_step(session, complaint.id, step)
        if target in (State.RESOLVED, State.REJECTED) and complaint.open:
            fields["closed_at_us"] = now
        complaints_repo.set_fields(
            session, complaint.id, state=int(target), updated_at_us=now, **fields
        )

    # --- moves and deadlines ---------------------------------------------------------------

    def refresh_if_due(self) -> None:
        """``refresh`` if a complaint must move or is past its deadline (a
        read decides; only then is the write lock taken)."""
        now = self.register.clock.now_us()
        with self.register.db.read() as connection:
            desk = desk_in_force(connection, self.default_desk, Organisations(connection))
            due = bool(complaints_repo.overdue(connection, now, limit=1)) or (
                not desk.operators and bool(complaints_repo.strays(connection, desk.named, 1))
            )
        if due:
            try:
                self.refresh()
            except WritesRefused:
                # Frozen for a handover, moved or a standby: reads go on;
                # the register that takes writes moves and escalates.
                log.debug("complaints refresh deferred: the register takes no writes now")

    def refresh(self) -> tuple[int, int]:
        """Move open complaints to the desk in force and escalate those past
        their deadline, in one transaction; (moved, escalated)."""
        missed: list[Category] = []
        with self.register.transaction() as session:
            _gate(self.register, session)
            now = self.register.clock.now_us()
            orgs = Organisations(session)
            desk = desk_in_force(session, self.default_desk, orgs)
            moved = 0
            if not desk.operators:
                for complaint in complaints_repo.strays(session, desk.named):
                    note = f"moved from {complaint.owner} to {desk.named} ({desk.why()})"
                    self._step(
                        session,
                        complaint,
                        StepKind.MOVED,
                        now,
                        REGISTER_ACTOR,
                        complaint.state,
                        note,
                        owner=desk.named,
                    )
                    moved += 1
            for complaint in complaints_repo.overdue(session, now):
                target = orgs.first_of(escalation_kind(orgs.kinds.get(complaint.owner)))
                note = (
                    f"deadline passed ({self.levels.hours[complaint.category]} h for "
                    f"{complaint.category.name}); escalated from {complaint.owner} to {target}"
                )
                self._step(
                    session,
                    complaint,
                    StepKind.ESCALATED,
                    now,
                    REGISTER_ACTOR,
                    complaint.state,
                    note,
                    deadline_missed=1,
                    escalated_to=target,
                )
                missed.append(complaint.category)
        if moved:
            log.info("complaints moved", extra={"moved": moved, "desk": desk.named})
        for category in missed:
            log.warning("complaint deadline missed", extra={"category": category.name})
            if self.on_missed is not None:
                self.on_missed(category)
        return moved, len(missed)

    def start_sweeping(self, interval: float = SWEEP_SECONDS) -> None:
        """Refresh every ``interval`` seconds until the register closes."""
        if self._sweeper is None:
            self._sweeper = threading.Thread(
                target=self._sweep, args=(interval,), name="ceir-complaints", daemon=True
            )
            self._sweeper.start()

    def _sweep(self, interval: float) -> None:
        while not self.register.wait_closed(interval):
            try:
                self.refresh_if_due()
            except Exception:  # the database may be restarting: next time
                if not self.register.closed:
                    log.exception("the complaints sweep failed")

    # --- transactions with stored answers ----------------------------------------------------

    def _transaction(
        self, caller: Caller, operation: str, request_id: str, fingerprint: str
    ) -> _Transaction:
        return _Transaction(self.register, caller.name, operation, request_id, fingerprint)


def require_digest_allowed(caller: Caller) -> None:
    """PermissionDenied DIGEST_NOT_ALLOWED unless the caller reads every complaint."""
    require(caller, Action.READ_COMPLAINTS)
    if caller.kind not in SEES_EVERY_SUBSCRIBER:
        raise PermissionDenied(
            f"{caller.name} ({caller.kind.value}) may not ask for the complaints' "
            "digest: only organisations that read every complaint may",
            reason="DIGEST_NOT_ALLOWED",
        )


def _gate(register: Register, session: Session) -> None:
    """The register's write gate (custody: frozen, moved, standby) for a
    complaint write, as for any write: a desk on a register that takes no
    writes now is refused with the same error and RetryInfo."""
    if register.write_gate is not None:
        register.write_gate(session, ResolveComplaint("", None))


class _Transaction:
    """A write transaction under the register's lock with the AIP-155 answer
    of ``request_id``: ``replayed`` if one is stored, else ``store`` it."""

    def __init__(
        self, register: Register, org: str, operation: str, request_id: str, fingerprint: str
    ) -> None:
        self.register = register
        self.org, self.operation = org, operation
        self.request_id, self.fingerprint = request_id, fingerprint
        self.replayed: Replayed | None = None
        self._context: Any = None

    def __enter__(self) -> _Transaction:
        self._context = self.register.transaction()
        self.session: Session = self._context.__enter__()
        if self.request_id:
            stored = repo.stored_answer(self.session, self.org, self.operation, self.request_id)
            if stored is not None:
                if stored[0] != self.fingerprint:
                    error = InvalidArgument.field(
                        "request_id",
                        f"{self.request_id!r} was already used for a different request",
                        reason="REQUEST_ID_REUSED",
                    )
                    self._context.__exit__(type(error), error, None)
                    raise error
                self.replayed = Replayed(stored[1])
                return self
        try:
            _gate(self.register, self.session)
        except BaseException as error:
            self._context.__exit__(type(error), error, None)
            raise
        return self

    def store(self, response: bytes) -> None:
        if self.request_id:
            repo.store_answer(
                self.session,
                self.org,
                self.operation,
                self.request_id,
                self.fingerprint,
                response,
                self.register.clock.now_us(),
            )

    def __exit__(self, *exc: Any) -> bool | None:
        result: bool | None = self._context.__exit__(*exc)
        return result


def _reads(caller: Caller, complaint: Complaint) -> bool:
    """Regulators read every complaint; a desk those it owns, filed or was escalated to."""
    if caller.kind in SEES_EVERY_SUBSCRIBER:
        return True
    return caller.name in (complaint.owner, complaint.filed_by, complaint.escalated_to)


def as_seen(caller: Caller, complaint: Complaint) -> Complaint:
    """The complaint with the subscriber's IMSI and MSISDN blanked unless
    the caller may read them: regulators, the desk that filed it (it wrote
    them down), the desk that owns it (it must reach the subscriber), and
    the operator the IMSI belongs to."""
    if (
        caller.kind in SEES_EVERY_SUBSCRIBER
        or caller.name in (complaint.filed_by, complaint.owner)
        or (complaint.imsi and sees_subscriber(caller, complaint.imsi))
    ):
        return complaint
    return replace(complaint, imsi="", msisdn="")


def _must(complaint: Complaint | None) -> Complaint:
    assert complaint is not None, "a complaint written in this transaction"
    return complaint


def _encode_token(after: int) -> str:
    return f"c1:{after}"


def _decode_token(token: str) -> int:
    if not token:
        return 0
    version, _, after = token.partition(":")
    if version != "c1" or not (after.isascii() and after.isdigit()) or len(after) > 18:
        raise InvalidArgument.field(
            "page_token", "not a token this server gave", reason="BAD_PAGE_TOKEN"
        )
    return int(after)

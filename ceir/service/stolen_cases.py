"""Stolen-phone cases: filing, the steps of their state machine, reading.

A step that changes the lists runs the register's own audited command
(``ReportStolen`` to block, ``ReportRecovered`` to unblock) through
``Register.execute``, and writes the case's new state and history step in
the same transaction (``within``): the case and the lists never disagree,
and a refused command leaves the case as it was. Steps that change no list
(filing, PENDING -> RECOVERED) run in ``Register.transaction``, serialised
with every write.

Steps that change no list are held to the register's write gate all the
same: a register frozen for a custody handover, handed over, or a standby
refuses them as it refuses list writes (``WritesRefused``).

Idempotency (AIP-155): the answer to a request id is stored in the
register's idempotency table under the case RPC's name, in the step's
transaction, and replayed for a retry with the same request; a different
request under the same id is REQUEST_ID_REUSED.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from ceir.domain.commands import ReportRecovered, ReportStolen
from ceir.domain.errors import AlreadyExists, CeirError, InvalidArgument, NotFound
from ceir.domain.identifiers import format_imei_key
from ceir.domain.model import Caller
from ceir.domain.permissions import Action, require, require_own_imsi
from ceir.domain.stolen import (
    CaseState,
    Step,
    StolenCase,
    may_read,
    require_may_step,
    require_transition,
)
from ceir.domain.validation import check_request_id
from ceir.storage import repository as repo
from ceir.storage import stolen_repository as stolen_repo

from .register import Committed, Register, Replayed
from .theft_alerts import TheftWatch

DEFAULT_PAGE = 100
MAX_PAGE = 1_000
FILE = "FileStolenCase"
UPDATE = "UpdateStolenCase"
# The answer to store for a request id: the case and the step's sequence, serialised.
Render = Callable[[StolenCase, int], bytes]


@dataclass(frozen=True)
class CaseFiling:
    """A validated FileStolenCase request."""

    imei_keys: tuple[int, ...]
    imsi: str
    msisdn: str
    police_report: str


@dataclass(frozen=True)
class Idempotency:
    """A request's AIP-155 id, its fingerprint, and how to serialise its answer."""

    request_id: str
    fingerprint: str
    render: Render


class _Answered(Exception):
    """Rolls a step back: a retry with the same request id committed first."""


class StolenCaseService:
    def __init__(self, register: Register, watch: TheftWatch | None = None) -> None:
        self.register = register
        self.watch = watch

    # --- filing -----------------------------------------------------------------------

    def file(self, caller: Caller, filing: CaseFiling, ask: Idempotency) -> StolenCase | Replayed:
        """Open a case in PENDING."""
        require(caller, Action.STOLEN_CASES)
        require_own_imsi(caller, filing.imsi, "imsi")
        check_request_id(ask.request_id)
        with self.register.transaction() as session:
            stored = _stored(session, caller, FILE, ask)
            if stored is not None:
                return stored
            self._gate(session, ReportStolen(filing.imei_keys, filing.police_report, filing.imsi))
            clash = stolen_repo.open_cases_on(session, filing.imei_keys)
            if clash:
                case_id = clash[0][0]
                keys = ", ".join(format_imei_key(k) for _, k in clash)
                raise AlreadyExists(
                    f"IMEI {keys} is already in open case {case_id}",
                    reason="STOLEN_CASE_ALREADY_OPEN",
                    metadata={"case_id": case_id},
                )
            now = self.register.clock.now_us()
            case = StolenCase(
                case_id=new_case_id(),
                state=CaseState.PENDING,
                imei_keys=filing.imei_keys,
                imsi=filing.imsi,
                msisdn=filing.msisdn,
                police_report=filing.police_report,
                reporter=caller.name,
                filed_at_us=now,
                updated_at_us=now,
                history=(Step(CaseState.PENDING, caller.name, "filed", 0, now),),
            )
            stolen_repo.insert_case(session, case)
            _store(session, caller, FILE, ask, case, 0, now)
        return case

    # --- steps ------------------------------------------------------------------------

    def update(
        self, caller: Caller, case_id: str, target: CaseState, note: str, ask: Idempotency
    ) -> Committed[StolenCase] | Replayed:
        """Move a case to ``target``; the sequence is the list change's (0 for none)."""
        require(caller, Action.STOLEN_CASES)
        check_request_id(ask.request_id)
        if ask.request_id:
            with self.register.db.read() as connection:  # a retry: its answer, before anything
                stored = _stored(connection, caller, UPDATE, ask)
            if stored is not None:
                return stored
        case = self._case(case_id)
        require_may_step(caller, case)
        step = require_transition(case_id, case.state, target)
        try:
            if step == "close":
                return self._close(caller, case_id, target, note, ask)
            return self._move_lists(caller, case, target, note, ask, step)
        except (CeirError, _Answered):
            if ask.request_id:  # a retry committed meanwhile: its answer
                with self.register.db.read() as connection:
                    stored = _stored(connection, caller, UPDATE, ask)
                if stored is not None:
                    return stored
            raise

    def _close(
        self, caller: Caller, case_id: str, target: CaseState, note: str, ask: Idempotency
    ) -> Committed[StolenCase]:
        with self.register.transaction() as session:
            self._gate(session, ReportRecovered((), "", case_id=case_id))
            moved = _step(session, caller, case_id, target, note, 0, self.register, ask)
        return Committed(moved, 0)

    def _gate(self, session: Session, command: ReportStolen | ReportRecovered) -> None:
        """Refuse a case write the register would refuse as a list write (a
        register frozen for a custody handover, handed over, or a standby)."""
        if self.register.write_gate is not None:
            self.register.write_gate(session, command)

    def _move_lists(
        self,
        caller: Caller,
        case: StolenCase,
        target: CaseState,
        note: str,
        ask: Idempotency,
        step: str,
    ) -> Committed[StolenCase]:
        command: ReportStolen | ReportRecovered
        if step == "block":
            command = ReportStolen(case.imei_keys, case.police_report, case.imsi)
        else:
            command = ReportRecovered(case.imei_keys, case.police_report, case_id=case.case_id)
        moved: list[StolenCase] = []

        def within(session: Session, _note: str) -> None:
            sequence = repo.last_sequence(session)
            moved.append(
                _step(session, caller, case.case_id, target, note, sequence, self.register, ask)
            )

        done = self.register.execute(caller, command, within=within)
        assert isinstance(done, Committed)  # no request id given to execute: nothing replayed
        if self.watch is not None:
            if step == "block":
                self.watch.block(case.imei_keys, case.case_id, case.reporter)
            else:
                self.watch.unblock(case.imei_keys)
        return Committed(moved[0], done.sequence)

    # --- reading ----------------------------------------------------------------------

    def get(self, caller: Caller, case_id: str) -> StolenCase:
        require(caller, Action.READ_STOLEN_CASES)
        case = self._case(case_id)
        if not may_read(caller, case):
            raise NotFound(f"no stolen case {case_id!r}", reason="STOLEN_CASE_NOT_FOUND")
        return case

    def page(self, caller: Caller, page_size: int, page_token: str) -> tuple[list[StolenCase], str]:
        """The caller's cases (regulators: every case), in filing order."""
        require(caller, Action.READ_STOLEN_CASES)
        size, after = page_size_of(page_size), decode_token(page_token, "c1")
        reporter = None if may_read_all(caller) else caller.name
        with self.register.db.read() as connection:
            rows = stolen_repo.case_page(connection, reporter, after, size + 1)
            cases = [stolen_repo.case_of(connection, case_id) for _, case_id in rows[:size]]
        token = encode_token("c1", rows[size - 1][0]) if len(rows) > size else ""
        return [c for c in cases if c is not None], token

    def _case(self, case_id: str) -> StolenCase:
        if not case_id:
            raise InvalidArgument.field("case_id", "is required")
        with self.register.db.read() as connection:
            case = stolen_repo.case_of(connection, case_id[:64])
        if case is None:
            raise NotFound(f"no stolen case {case_id[:64]!r}", reason="STOLEN_CASE_NOT_FOUND")
        return case


def may_read_all(caller: Caller) -> bool:
    return may_read(caller, _NOBODYS)


_NOBODYS = StolenCase("", CaseState.PENDING, (), "", "", "", "", 0, 0)


def _step(
    session: Session,
    caller: Caller,
    case_id: str,
    target: CaseState,
    note: str,
    sequence: int,
    register: Register,
    ask: Idempotency,
) -> StolenCase:
    """Write one step in the step's transaction, the case re-read under the
    write lock (another server may have moved it since it was read)."""
    if _stored(session, caller, UPDATE, ask) is not None:
        raise _Answered
    case = stolen_repo.case_of(session, case_id)
    assert case is not None  # cases are never deleted
    require_transition(case_id, case.state, target)
    now = register.clock.now_us()
    step = Step(target, caller.name, note, sequence, now)
    stolen_repo.move_case(session, case, step)
    moved = replace(case, state=target, updated_at_us=now, history=(*case.history, step))
    _store(session, caller, UPDATE, ask, moved, sequence, now)
    return moved


def _stored(
    session: Session | Connection, caller: Caller, method: str, ask: Idempotency
) -> Replayed | None:
    if not ask.request_id:
        return None
    # stored_answer only runs a SELECT: a read connection will do.
    stored = repo.stored_answer(session, caller.name, method, ask.request_id)  # type: ignore[arg-type]
    if stored is None:
        return None
    if stored[0] != ask.fingerprint:
        raise InvalidArgument.field(
            "request_id",
            f"{ask.request_id!r} was already used for a different request",
            reason="REQUEST_ID_REUSED",
        )
    return Replayed(stored[1])


def _store(
    session: Session,
    caller: Caller,
    method: str,
    ask: Idempotency,
    case: StolenCase,
    sequence: int,
    now: int,
) -> None:
    if ask.request_id:
        response = ask.render(case, sequence)
        repo.store_answer(
            session, caller.name, method, ask.request_id, ask.fingerprint, response, now
        )


def new_case_id() -> str:
    """A case id nobody can guess from another (random, 48 bits)."""
    return f"SC-{secrets.token_hex(6).upper()}"


def page_size_of(page_size: int) -> int:
    """AIP-158: 0 means the default; more than the maximum means the maximum."""
    if page_size < 0:
        raise InvalidArgument.field("page_size", "must not be negative")
    return min(page_size or DEFAULT_PAGE, MAX_PAGE)


def encode_token(kind: str, after: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{after}".encode()).decode()


def decode_token(token: str, kind: str) -> int:
    """The position a page starts after (0 for the first page)."""
    if not token:
        return 0
    try:
        found, after = base64.urlsafe_b64decode(token.encode()).decode().split(":")
        if found != kind or not (after.isascii() and after.isdigit()) or len(after) > 18:
            raise ValueError(token)
    except (ValueError, UnicodeError, binascii.Error):
        raise InvalidArgument.field(
            "page_token", "not a token this server gave", reason="BAD_PAGE_TOKEN"
        ) from None
    return int(after)

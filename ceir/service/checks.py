"""Equipment checks: decided from the in-memory lists, with the notification
list written when a check finds an unregistered device.

A check decides without the write lock, so by the time it writes its effect
(a notification, a block for an expired grace) the IMEI may have been
registered, paired or blocked, by this process or another one sharing the
database. The write (a ``RecordCheckEffects`` command, handled in
``handlers``) therefore decides each such check again against the lists as
committed, and records only what that decision still calls for.

While the register takes no writes (frozen for a custody handover, moved,
a standby: ``WritesRefused``) checks are still answered, from the lists as
they are, and their effects are not recorded: a first sight is answered as
one (the block date it would get now) and is recorded by the first check of
that device once writes resume, whose grace period then starts; a grace
period over is answered BLACKLISTED and blocked at that same next check.
Nothing is appended while frozen, so the final checkpoint stays the last.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from ceir.domain.commands import RecordCheckEffects
from ceir.domain.errors import FieldViolation, InvalidArgument, WritesRefused
from ceir.domain.identifiers import is_imsi, msisdn_digits, validate_imsi, validate_msisdn
from ceir.domain.model import Caller, Decision
from ceir.domain.permissions import Action, require

from .handlers import may_record
from .register import Committed, Register

MAX_BATCH = 1_000
Fields = tuple[str, str, str]  # IMEI, IMSI, MSISDN: a CheckQuery's fields in order
Column = Sequence[str]
Columns = tuple[Column, Column, Column]  # the IMEIs, the IMSIs, the MSISDNs of a batch
# The lengths ``is_imsi`` and ``msisdn_digits`` accept, for whole columns.
IMSI_DIGITS = (6, 15)
MSISDN_DIGITS = (8, 15)


class CheckQuery(NamedTuple):
    """One check's fields as received. A batch may pass plain
    (IMEI, IMSI, MSISDN) tuples (``Fields``) instead of building a thousand."""

    imei: str
    imsi: str = ""
    msisdn: str = ""


def validate_query(query: CheckQuery, prefix: str, violations: list[FieldViolation]) -> CheckQuery:
    """Check a query's fields: an empty IMEI, a bad IMSI or MSISDN is an error
    (a malformed IMEI is not: it is answered BLACKLISTED)."""
    if not query.imei:
        violations.append(FieldViolation(f"{prefix}imei", "an IMEI is required"))
    elif len(query.imei) > 64:
        violations.append(FieldViolation(f"{prefix}imei", "at most 64 characters"))
    msisdn = query.msisdn
    try:
        if query.imsi:
            validate_imsi(query.imsi, f"{prefix}imsi")
        if msisdn:
            msisdn = validate_msisdn(msisdn, f"{prefix}msisdn")
    except InvalidArgument as error:
        violations.extend(error.violations)
    return CheckQuery(query.imei, query.imsi, msisdn)


def _checked_fields(query: CheckQuery) -> tuple[str, str, str] | None:
    """(IMEI, IMSI, MSISDN digits) of a query whose fields are all right, or
    None: then ``validate_query`` names what is wrong. The common case of a
    batch, without building field names or a new query."""
    imei, imsi, msisdn = query.imei, query.imsi, query.msisdn
    if not imei or len(imei) > 64 or (imsi and not is_imsi(imsi)):
        return None
    if msisdn:
        digits = msisdn_digits(msisdn)
        return None if digits is None else (imei, imsi, digits)
    return imei, imsi, msisdn


@dataclass(frozen=True)
class Decided:
    """A batch decided against the lists without writing: its checked
    fields (as columns), its decisions, and the indexes whose effects are
    to be recorded."""

    columns: Columns
    decisions: list[Decision]
    pending: list[int]

    def fields(self, index: int) -> Fields:
        """The checked fields of one query."""
        imeis, imsis, msisdns = self.columns
        return imeis[index], imsis[index], msisdns[index]


class Sightings(Protocol):
    """Where checks tell what they saw (``ceir.service.theft_alerts.TheftWatch``):
    called on the check path, so it must never block."""

    def saw(self, caller: Caller, key: int | None, imsi: str, msisdn: str) -> None: ...

    def saw_decisions(
        self, caller: Caller, decisions: Sequence[Decision], imsis: Column, msisdns: Column
    ) -> None: ...


class CheckService:
    def __init__(self, register: Register, sightings: Sightings | None = None) -> None:
        self.register = register
        # Theft alerts: every check reaching the register, whatever it decides.
        self.sightings = sightings

    def authorize(self, caller: Caller) -> None:
        """Refuse a caller that may not check at all (before a stream starts)."""
        require(caller, Action.CHECK)

    def check(self, caller: Caller, query: CheckQuery) -> Decision:
        """Decide one query: a network's real-time check."""
        decision = self.decide_at_once(caller, query)
        if decision is not None:
            return decision
        # A wrong field, or a first sight to record: the general path (deciding
        # an unregistered device changes nothing, so deciding again is safe).
        return self.check_many(caller, [query], batch=False)[0]

    def decide_at_once(self, caller: Caller, query: CheckQuery) -> Decision | None:
        """The decision if it writes nothing (the common case), else None.

        Touches no database and takes no lock, so the server's event loop
        may call it; None sends the query to ``check``, in a worker thread.
        """
        require(caller, Action.CHECK)
        fields = _checked_fields(query)
        if fields is None:
            return None
        decision, effect = self.register.state.decide(*fields, self.register.clock.now_us())
        self.register.seen.note(decision)  # for the range finder: this IMEI is in use
        if effect is None or not may_record(caller, effect):
            if self.sightings is not None:
                self.sightings.saw(caller, decision.imei_key, fields[1], fields[2])
            return decision
        return None  # check_many decides again, and tells the sightings

    def check_many(
        self, caller: Caller, queries: Sequence[Fields], *, batch: bool = True
    ) -> list[Decision]:
        """Decide up to MAX_BATCH queries, in order."""
        return self.record(caller, self._decide_many(caller, queries, batch))

    def decide_many_at_once(self, caller: Caller, queries: Sequence[Fields]) -> Decided:
        """A batch decided without writing (as ``decide_at_once``; wrong
        fields raise, as in ``check_many``); ``record`` writes what it calls for."""
        return self._decide_many(caller, queries, batch=True)

    def record(self, caller: Caller, decided: Decided) -> list[Decision]:
        """Write what a decided batch calls for (nothing if ``decided.pending``
        is empty); the final decisions."""
        decisions, pending = decided.decisions, decided.pending
        if pending:
            due = [decided.fields(index) for index in pending]
            try:
                done = self.register.execute(caller, RecordCheckEffects(tuple(due)))
            except WritesRefused:
                return decisions  # answered, not recorded (see the module docstring)
            assert isinstance(done, Committed)  # no request id: nothing to replay
            now_us = done.value
            # Decide again against the lists that now hold the effects, at the
            # time they were decided at: the answers then carry the new
            # sequence and the block date stored.
            state = self.register.state
            for index in pending:
                decisions[index] = state.decide(*decided.fields(index), now_us)[0]
        return decisions

    def _decide_many(self, caller: Caller, queries: Sequence[Fields], batch: bool) -> Decided:
        """The checked fields, the decisions, and which of them have an effect to record."""
        require(caller, Action.CHECK)
        if batch and not 1 <= len(queries) <= MAX_BATCH:
            raise InvalidArgument.field("checks", f"1 to {MAX_BATCH} checks, got {len(queries)}")
        columns = _checked_columns(queries)
        if columns is None:  # something is wrong: name every wrong field
            columns = _columns(_validated(queries, batch))
        # Every field is checked before the first decision: a refused batch
        # leaves no sighting behind in the clone tracker.
        now_us = self.register.clock.now_us()
        decisions, effects = self.register.state.decide_many(*columns, now_us)
        pending = [index for index, effect in effects if may_record(caller, effect)]
        self.register.seen.note_many(decisions)  # for the range finder: these IMEIs are in use
        if self.sightings is not None:
            self.sightings.saw_decisions(caller, decisions, columns[1], columns[2])
        return Decided(columns, decisions, pending)


def _checked_all(queries: Sequence[Fields]) -> list[Fields] | None:
    """(IMEI, IMSI, MSISDN digits) of every query, or None if any field is
    wrong (then ``_validated`` names them)."""
    columns = _checked_columns(queries)
    return None if columns is None else list(zip(*columns, strict=True))


def _columns(valid: Sequence[Fields]) -> Columns:
    imeis, imsis, msisdns = zip(*valid, strict=True) if valid else ((), (), ())
    return imeis, imsis, msisdns


def _checked_columns(queries: Sequence[Fields]) -> Columns | None:
    """``_checked_all`` as columns: ``_checked_fields`` column by column,
    each rule checked for a whole batch in a few calls into C (lengths by
    ``map``, digits by one ``isdigit`` of the joined column)."""
    if not queries:
        return (), (), ()
    imeis, imsis, msisdns = zip(*queries, strict=True)
    if not all(imeis) or max(map(len, imeis)) > 64:
        return None
    given = imsis if all(imsis) else [imsi for imsi in imsis if imsi]
    if given and not _digits(given, IMSI_DIGITS):
        return None
    if "+" in "".join(msisdns):
        digits: Column = [msisdn[1:] if msisdn[:1] == "+" else msisdn for msisdn in msisdns]
        given = [number for msisdn, number in zip(msisdns, digits, strict=True) if msisdn]
    else:  # nothing to take off (the common case)
        digits = msisdns
        given = msisdns if all(msisdns) else [msisdn for msisdn in msisdns if msisdn]
    if given and not _digits(given, MSISDN_DIGITS):
        return None
    return imeis, imsis, digits


def _digits(values: Column, lengths: tuple[int, int]) -> bool:
    """True if every value is ``lengths[0]`` to ``lengths[1]`` ASCII digits."""
    low, high = lengths
    if min(map(len, values)) < low or max(map(len, values)) > high:
        return False
    joined = "".join(values)
    return joined.isascii() and joined.isdigit()


def _validated(queries: Sequence[Fields], batch: bool) -> list[Fields]:
    """As ``_checked_all``, raising INVALID_ARGUMENT that names every wrong field."""
    violations: list[FieldViolation] = []
    valid: list[tuple[str, str, str]] = []
    for index, query in enumerate(queries):
        prefix = f"checks[{index}]." if batch else ""
        checked = validate_query(CheckQuery(*query), prefix, violations)
        valid.append((checked.imei, checked.imsi, checked.msisdn))
    if violations:
        raise InvalidArgument(
            "; ".join(f"{v.field}: {v.description}" for v in violations),
            reason="INVALID_CHECK",
            violations=violations,
        )
    return valid

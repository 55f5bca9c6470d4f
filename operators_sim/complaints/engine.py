"""The desks at work, in simulated time, from a thread of their own.

While the attach traffic runs, the engine reads the new decisions every
``POLL`` seconds, turns some into grievances (``intake``) and moves
simulated time to where the run is (``settings.hours``): a grievance is
filed when it arrives; each desk works its queue one complaint at a time
(``settings.work_hours`` each), oldest first; a subscriber asked for a
document answers (or not) after a while. When the traffic stops, the
desks go on working in simulated time only (no waiting) until every
complaint is closed or ``drain_days`` have passed.

A desk that no longer owns a complaint is refused with NOT_DESK_OWNER
naming the owner: the complaint goes to that desk's queue. A call the
register could not answer (down, frozen for a handover, moved: the writers
follow it to the new custodian) is tried again an hour later with the same
request id, up to ``MAX_TRIES`` times. Every list change a resolution causes is
recorded in the ground truth at the sequence the register gave it, so the
attaches after it are judged by it.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ceir.v1 import complaints_pb2 as complaints_pb

from ..loader import KOMINFO, Admin
from ..population import Population
from ..truth import Event, Truth
from ..writes import REGISTER_FROZEN, REGISTER_MOVED
from .calls import NOT_DESK_OWNER, DeskCalls, Refused
from .intake import Grievance, Intake
from .rules import ASK, REJECT, Plan, plan
from .settings import HOURS_PER_DAY, ComplaintSettings

log = logging.getLogger("operators_sim.complaints")
STATE = complaints_pb.ComplaintState
POLL = 0.2  # seconds between reads of the new decisions
RETRY_HOURS = 1.0
MAX_TRIES = 24  # a call the register could not answer this many times is given up
DRAIN_WAIT = 15.0  # real seconds the drain may wait, all told, for an unreachable register
TRANSIENT = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED"})
CLOSED = frozenset({STATE.COMPLAINT_STATE_RESOLVED, STATE.COMPLAINT_STATE_REJECTED})
Decisions = Callable[[], list[tuple[np.ndarray, ...]]]


@dataclass
class Case:
    """A filed complaint as the simulation follows it."""

    grievance: Grievance
    tracking_id: str = ""
    owner: str = ""
    state: int = STATE.COMPLAINT_STATE_UNSPECIFIED
    filed: float = 0.0  # simulated hours
    closed: float | None = None
    deadline_hours: float = 0.0  # the register's deadline, from filing
    asked: bool = False  # asked the subscriber for a document
    answered: bool = False  # the subscriber's answer (or silence) is in
    action: str = ""  # the resolution's action, or "rejected"
    steps: int = 0  # writes acknowledged (numbers the request ids)
    desks: list[str] = field(default_factory=list)  # every desk that worked it
    refusals: list[str] = field(default_factory=list)


@dataclass
class Desk:
    name: str
    queue: deque[Case] = field(default_factory=deque)
    free_at: float = 0.0
    worked: int = 0


@dataclass
class EngineStats:
    candidates: int = 0  # subscribers denied or notified
    grievances: int = 0
    refused_at_filing: dict[str, int] = field(default_factory=dict)
    handed_on: int = 0  # NOT_DESK_OWNER: the complaint went to the owner's desk
    retried: int = 0
    actions_refused: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    unplayed_owner: int = 0  # owned by a desk the simulation does not play
    end_hours: float = 0.0  # when the traffic stopped
    drained_hours: float = 0.0  # when the desks stopped


class ComplaintEngine:
    """Files and works complaints while the run goes on, then drains."""

    def __init__(
        self,
        admin: Admin,
        population: Population,
        truth: Truth,
        settings: ComplaintSettings,
        operators: tuple[str, ...],
        duration: float,
        decisions: Decisions,
    ) -> None:
        self.admin = admin
        self.truth = truth
        self.settings = settings
        self.duration = duration
        self.decisions = decisions
        self.intake = Intake(population, operators, settings)
        self.stats = EngineStats()
        self.cases: list[Case] = []
        self.desks: dict[str, Desk] = {}
        self._events: list[tuple[float, int, str, Case | Grievance]] = []
        self._order = itertools.count()
        self._now = 0.0
        self._started = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._draining = False
        self._drain_wait = DRAIN_WAIT
        self._tries: dict[int, int] = {}  # id(grievance or case) -> unanswered calls

    # -- running -------------------------------------------------------------------

    def start(self, started: float) -> None:
        """Follow the run that started at ``started`` (``time.perf_counter()``)."""
        self._started = started
        self._thread = threading.Thread(target=self._run, name="complaints", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(POLL):
            self._step(time.perf_counter() - self._started)

    def _step(self, seconds: float) -> None:
        try:
            self._take_decisions()
            self._advance(self.settings.hours(seconds, self.duration))
        except Exception as error:  # one bad step must not end the desks' day
            log.exception("complaint engine step failed")
            self.stats.errors.append(repr(error)[:200])

    def finish(self, run_seconds: float) -> None:
        """The traffic stopped: take the last decisions, then work in simulated
        time until every complaint is closed (or ``drain_days`` passed)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        end = self.settings.hours(run_seconds, self.duration)
        self._take_decisions()
        self.stats.end_hours = end
        self._draining = True
        self._advance(end + self.settings.drain_days * HOURS_PER_DAY)
        self.stats.drained_hours = self._now

    def _take_decisions(self) -> None:
        for part in self.decisions():
            operator, device, slot, sim, outcome, source, at = part
            hours = at / max(self.duration, 1e-9) * self.settings.days * HOURS_PER_DAY
            for grievance in self.intake.take(operator, device, slot, sim, outcome, source, hours):
                self.stats.grievances += 1
                self._schedule(grievance.arrival, "arrive", grievance)
        self.stats.candidates = self.intake.candidates

    def _schedule(self, at: float, kind: str, what: Case | Grievance) -> None:
        heapq.heappush(self._events, (at, next(self._order), kind, what))

    def _advance(self, until: float) -> None:
        """Everything that happens up to ``until`` (simulated hours), in order."""
        while True:
            event_at = self._events[0][0] if self._events else float("inf")
            desk = min(
                (d for d in self.desks.values() if d.queue),
                key=lambda d: d.free_at,
                default=None,
            )
            work_at = float("inf") if desk is None else max(desk.free_at, self._now)
            at = min(event_at, work_at)
            if at > until:
                self._now = max(self._now, min(until, at))
                return
            self._now = at
            if event_at <= work_at:
                _, _, kind, what = heapq.heappop(self._events)
                if kind == "arrive":
                    assert isinstance(what, Grievance)
                    self._file(what)
                else:  # "answer" (the subscriber's, or their silence) or "retry"
                    assert isinstance(what, Case)
                    what.answered |= kind == "answer"
                    self._enqueue(what)
            else:
                assert desk is not None
                case = desk.queue.popleft()
                desk.free_at = self._now + self.settings.work_hours
                desk.worked += 1
                self._work(desk.name, case)

    # -- desks ---------------------------------------------------------------------

    def calls(self, organisation: str) -> DeskCalls:
        return DeskCalls(
            organisation,
            lambda: self.admin.channel_for(organisation),
            self.admin.metadata(organisation),
        )

    def _enqueue(self, case: Case) -> None:
        if case.owner not in self.admin.credentials:
            self.stats.unplayed_owner += 1
            return
        desk = self.desks.setdefault(case.owner, Desk(case.owner, free_at=self._now))
        desk.queue.append(case)

    def _file(self, grievance: Grievance, at: str = "") -> None:
        desk = at or grievance.operator
        request = complaints_pb.FileComplaintRequest(
            request_id=f"sim-{self.admin.run_id}-file-{grievance.device}-{grievance.slot}"
            f"-{grievance.sim}",
            imeis=list(grievance.imeis),
            imsi=grievance.imsi,
            msisdn=grievance.msisdn,
            category=grievance.category,  # type: ignore[arg-type]
            description=f"{grievance.category_name.lower().replace('_', ' ')} since "
            f"{'a denial' if grievance.denied else 'a block notice'}",
        )
        try:
            complaint = self.calls(desk).file(request)
        except Refused as refused:
            if refused.reason == NOT_DESK_OWNER and refused.metadata.get("owner") and not at:
                self.stats.handed_on += 1
                self._file(grievance, refused.metadata["owner"])
            elif self._passing(refused) and self._try_again(id(grievance)):
                self._schedule(self._now + RETRY_HOURS, "arrive", grievance)
            else:
                key = refused.code
                if refused.reason and refused.reason != refused.code:
                    key = f"{key} {refused.reason}"
                counts = self.stats.refused_at_filing
                counts[key] = counts.get(key, 0) + 1
            return
        case = Case(grievance, complaint.tracking_id, complaint.owner, complaint.state)
        case.filed = self._now
        case.deadline_hours = (
            complaint.deadline.ToMicroseconds() - complaint.file_time.ToMicroseconds()
        ) / 3.6e9
        self.cases.append(case)
        self._enqueue(case)

    def _write(self, case: Case, desk: str, what: str, call: Callable[[str], object]) -> object:
        result = call(f"sim-{self.admin.run_id}-{case.tracking_id}-{desk}-{case.steps}-{what}")
        case.steps += 1
        return result

    def _update(self, case: Case, desk: str, state: int, note: str) -> None:
        calls = self.calls(desk)
        complaint = self._write(
            case,
            desk,
            STATE.Name(state).removeprefix("COMPLAINT_STATE_").lower(),  # type: ignore[arg-type]
            lambda rid: calls.update(rid, case.tracking_id, state, note),
        )
        assert isinstance(complaint, complaints_pb.Complaint)
        case.state = complaint.state

    def _work(self, desk: str, case: Case) -> None:
        """One turn of ``desk`` at ``case``: as far as it goes without waiting."""
        calls = self.calls(desk)
        if desk not in case.desks:
            case.desks.append(desk)
        try:
            if case.state in CLOSED:
                return
            diagnoses = [calls.diagnose(case.grievance.imeis[0], case.grievance.imsi)]
            if len(case.grievance.imeis) > 1:
                diagnoses.append(calls.diagnose(case.grievance.imeis[1], case.grievance.imsi))
            if case.state != STATE.COMPLAINT_STATE_INVESTIGATING:
                note = "diagnosed" if not case.answered else "the subscriber's answer is in"
                self._update(case, desk, STATE.COMPLAINT_STATE_INVESTIGATING, note)
            grievance = case.grievance
            if case.answered and not grievance.replies:
                grievance.documents = False
            elif case.answered:
                grievance.documents = True
            step = plan(grievance, desk, diagnoses, case.asked)
            if step.outcome == ASK:
                self._ask(case, desk, step)
            elif step.outcome == REJECT:
                self._reject(case, desk, step.note)
            else:
                self._resolve(case, desk, step)
        except Refused as refused:
            self._refused(case, desk, refused)

    def _ask(self, case: Case, desk: str, step: Plan) -> None:
        self._update(case, desk, STATE.COMPLAINT_STATE_WAITING_FOR_SUBSCRIBER, step.note)
        case.asked = True
        rng = np.random.default_rng([self.settings.seed, case.grievance.device, 7])
        wait = (
            float(rng.exponential(self.settings.reply_hours))
            if case.grievance.replies
            else self.settings.give_up_days * HOURS_PER_DAY
        )
        self._schedule(self._now + wait, "answer", case)

    def _reject(self, case: Case, desk: str, note: str) -> None:
        self._update(case, desk, STATE.COMPLAINT_STATE_REJECTED, note)
        case.action = "rejected"
        case.closed = self._now + self.settings.work_hours  # at the end of the desk's turn

    def _resolve(self, case: Case, desk: str, step: Plan) -> None:
        calls = self.calls(desk)
        try:
            response = self._write(
                case,
                desk,
                step.action,
                lambda rid: calls.resolve(step.request(rid, case.tracking_id)),
            )
        except Refused as refused:
            if self._passing(refused) or refused.reason == NOT_DESK_OWNER:
                raise
            # the action's own rules refused it (permission, category): say so and close
            key = f"{step.action}: {refused.code} {refused.reason}".strip()
            self.stats.actions_refused[key] = self.stats.actions_refused.get(key, 0) + 1
            self._reject(case, desk, f"the desk may not {step.action}: {refused.message}"[:900])
            return
        assert isinstance(response, complaints_pb.ResolveComplaintResponse)
        case.state = response.complaint.state
        case.action = step.action
        case.closed = self._now + self.settings.work_hours
        history = response.complaint.history
        changes = list(history[-1].change_sequences) if history else []
        if changes:
            self._record(case, step.action, max(int(s) for s in changes))

    def _record(self, case: Case, action: str, sequence: int) -> None:
        g = case.grievance
        if action == "whitelist_sibling":
            self.truth.record(g.device, Event.REGISTERED, sequence, g.slot)
        elif action == "unblock":
            self.truth.record(g.device, Event.RECOVERED, sequence, g.slot)
        elif action == "pair_sim":
            self.truth.record_pair(g.device, g.slot, g.sim, sequence)
        elif action == "register_device":
            self.truth.record(g.device, Event.REGISTERED, sequence)

    def _refused(self, case: Case, desk: str, refused: Refused) -> None:
        owner = refused.metadata.get("owner", "")
        if refused.reason == NOT_DESK_OWNER and owner and owner != desk:
            self.stats.handed_on += 1
            case.owner = owner
            self._enqueue(case)
        elif self._passing(refused):
            if self._try_again(id(case)):
                self._schedule(self._now + RETRY_HOURS, "retry", case)
            else:
                self.stats.errors.append(f"{case.tracking_id}: gave up: {refused}"[:200])
        else:
            case.refusals.append(str(refused)[:200])
            self.stats.errors.append(f"{case.tracking_id} at {desk}: {refused}"[:200])

    def _passing(self, refused: Refused) -> bool:
        """The register could not take the call now (down, frozen for a
        handover, moved to a new custodian: followed): worth trying again."""
        if refused.reason == REGISTER_MOVED:
            self.admin.follow(refused.metadata.get("endpoint", ""), self.admin.target)
            return True
        return refused.code in TRANSIENT or refused.reason == REGISTER_FROZEN

    def _try_again(self, key: int) -> bool:
        """Count an unanswered call; False once it is time to give up. While
        draining (simulated time runs without waiting) wait a little in real
        time, so that a register restarting is not asked 24 times in a row."""
        tries = self._tries[key] = self._tries.get(key, 0) + 1
        if tries > MAX_TRIES:
            return False
        self.stats.retried += 1
        if self._draining and self._drain_wait > 0:
            time.sleep(0.5)
            self._drain_wait -= 0.5
        return True

    # -- the end -------------------------------------------------------------------

    def register_view(self) -> tuple[dict[str, complaints_pb.Complaint], int, int]:
        """Every complaint as the register lists it to Kominfo (tracking id ->
        complaint), the register's count of missed deadlines, and how many
        tracking ids it listed more than once."""
        complaints, missed = self.calls(KOMINFO).list_all()
        listed: dict[str, complaints_pb.Complaint] = {}
        duplicated = 0
        for complaint in complaints:
            duplicated += complaint.tracking_id in listed
            listed[complaint.tracking_id] = complaint
        return listed, missed, duplicated

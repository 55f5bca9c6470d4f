"""``DeskMoveDrill``: file complaints in every state at several desks, move
the desk to Kemenperin, and check what became of them."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ceir.v1 import types_pb2 as pb

from ..complaints.calls import NOT_DESK_OWNER, DeskCalls, Refused
from ..drill.keys import INCOMING, OUTGOING
from ..loader import KOMINFO, Admin
from ..transport import Credentials
from .checks import Check, Listing, check, compare
from .desks import (
    CATEGORIES,
    CLOSED,
    STATE,
    STATES,
    Filed,
    Subscribers,
    file_one,
    seen_by,
    state_name,
    walk,
)
from .move import Registers
from .report import write_report

DESKS = ("telkomsel", "indosat", "xl")


@dataclass(frozen=True)
class DeskMoveConfig:
    report: Path
    desks: tuple[str, ...] = DESKS
    per_state: int = 2  # complaints per desk and state
    seed: int = 1
    db_urls: dict[str, str] = field(default_factory=dict)  # organisation -> empty database
    keep_work: bool = False


@dataclass
class DeskMoveResult:
    ok: bool
    checks: list[Check]
    figures: dict[str, object] = field(default_factory=dict)
    json: Path | None = None
    html: Path | None = None


class DeskMoveDrill:
    def __init__(self, config: DeskMoveConfig, progress: Callable[[str], None]) -> None:
        self.config = config
        self.progress = progress
        self.subscribers = Subscribers(config.seed)
        self.run_id = f"desk-move-{int(time.time())}"
        self.before: Listing = {}

    def run(self) -> DeskMoveResult:
        config = self.config
        config.report.mkdir(parents=True, exist_ok=True)
        logs = config.report / "logs"
        logs.mkdir(exist_ok=True)
        work = config.report / "work" if config.keep_work else Path(tempfile.mkdtemp())
        work.mkdir(parents=True, exist_ok=True)
        registers = Registers(work, logs, config.db_urls)
        self.registers = registers
        try:
            self.progress(
                "starting Telkomsel's register (policy 0: operators' desks), "
                "Kemenperin's standby and the witness"
            )
            registers.start()
            admin = Admin(registers.cluster.address(OUTGOING), credentials=self.credentials)
            admin.set_policy(phase=pb.PHASE_NOTIFY, grace_days=30)
            admin.close()
            self.progress("filing complaints in every state at " + ", ".join(config.desks))
            filed = self._file_all()
            before, _, duplicated_before = self._listing(OUTGOING)
            self.before = before
            checks = [self._filed_as_planned(filed, before, duplicated_before)]
            self.progress("the handover: policy 1 makes Kemenperin custodian and complaints desk")
            outcome = registers.hand_over()
            checks.append(
                check(
                    "handover completed",
                    [] if outcome.outcome == "handed_over" else [f"outcome {outcome.outcome}"],
                    "policy 1 in force at Kemenperin's register",
                )
            )
            after, missed, duplicated = self._listing(INCOMING)
            checks += compare(before, after, duplicated, INCOMING)
            old_view = self._old_register()
            self.progress("the old desks try to work what they owned")
            checks.append(self._old_desks_refused(before, after))
            self.progress("Kemenperin works the moved complaints")
            checks += self._kemenperin_works(before)
            checks.append(self._new_filings())
            figures = _figures(before, after, missed)
            figures["old_register_after"] = old_view
            ok = all(c.ok for c in checks)
            result = DeskMoveResult(ok, checks, figures)
            result.json, result.html = write_report(config.report, ok, checks, figures, before)
            return result
        finally:
            registers.stop()
            if not config.keep_work:
                shutil.rmtree(work, ignore_errors=True)

    # -- before the move ---------------------------------------------------------------

    @property
    def credentials(self) -> dict[str, Credentials]:
        return self.registers.cluster.credentials

    def calls(self, register: str, organisation: str) -> DeskCalls:
        """``organisation``'s desk calls to ``register`` (telkomsel's or kemenperin's)."""
        cluster = self.registers.cluster
        return DeskCalls(
            organisation,
            lambda: cluster.channel(register, organisation),
            cluster.credentials[organisation].metadata,
        )

    def _file_all(self) -> list[Filed]:
        filed = []
        number = 0
        for desk in self.config.desks:
            calls = self.calls(OUTGOING, desk)
            for state in STATES:
                for _ in range(self.config.per_state):
                    number += 1
                    imei, imsi = self.subscribers.imei(), self.subscribers.imsi(desk)
                    seen_by(
                        self.registers.cluster.channel(OUTGOING, desk),
                        self.credentials[desk].metadata,
                        imei,
                        imsi,
                    )
                    complaint = file_one(
                        calls,
                        f"{self.run_id}-{number}",
                        imei,
                        imsi,
                        CATEGORIES[number % len(CATEGORIES)],
                    )
                    walk(calls, complaint.tracking_id, state, f"{self.run_id}-{number}")
                    filed.append(Filed(complaint.tracking_id, desk, state))
        # an IMEI no operator has seen: the register's own desk (the custodian's)
        other = self.config.desks[-1]
        number += 1
        complaint = file_one(
            self.calls(OUTGOING, other),
            f"{self.run_id}-{number}",
            self.subscribers.imei(),
            self.subscribers.imsi(other),
            CATEGORIES[0],
        )
        filed.append(Filed(complaint.tracking_id, OUTGOING, STATE.COMPLAINT_STATE_SUBMITTED))
        return filed

    def _listing(self, register: str) -> tuple[Listing, int, int]:
        """Every complaint as Kominfo reads it at ``register``, the missed
        deadlines, how many were listed twice."""
        complaints, missed = self.calls(register, KOMINFO).list_all()
        listing: Listing = {}
        duplicated = 0
        for complaint in complaints:
            duplicated += complaint.tracking_id in listing
            listing[complaint.tracking_id] = complaint
        return listing, missed, duplicated

    def _filed_as_planned(self, filed: list[Filed], before: Listing, duplicated: int) -> Check:
        wrong = [f"{duplicated} listed twice"] * bool(duplicated)
        for item in filed:
            complaint = before.get(item.tracking_id)
            if complaint is None:
                wrong.append(f"{item.tracking_id} not listed")
            elif complaint.state != item.state or complaint.owner != item.desk:
                wrong.append(
                    f"{item.tracking_id}: {state_name(complaint.state)} at {complaint.owner}, "
                    f"expected {state_name(item.state)} at {item.desk}"
                )
        states = sorted({state_name(i.state) for i in filed})
        return check(
            "complaints in every state before the move",
            wrong,
            f"{len(filed)} complaints at {len({i.desk for i in filed})} desks in {states}",
        )

    # -- after the move ----------------------------------------------------------------

    def _old_register(self) -> dict[str, object]:
        """What Telkomsel's retired register lists after the handover: owners by
        state (where complaints that did not travel stay)."""
        try:
            listing, _, _ = self._listing(OUTGOING)
        except Refused as refused:
            return {"error": str(refused)}
        owners: dict[str, int] = {}
        for complaint in listing.values():
            key = f"{state_name(complaint.state)} at {complaint.owner}"
            owners[key] = owners.get(key, 0) + 1
        return {"complaints": len(listing), "by_state_and_owner": dict(sorted(owners.items()))}

    def _old_desks_refused(self, before: Listing, after: Listing) -> Check:
        """Each old desk tries to take its open complaints up: FAILED_PRECONDITION
        NOT_DESK_OWNER naming Kemenperin, and nothing changes."""
        wrong = []
        tried = 0
        for tracking_id, old in before.items():
            if old.state in CLOSED or old.owner == INCOMING:
                continue
            tried += 1
            target = (
                STATE.COMPLAINT_STATE_REJECTED
                if old.state == STATE.COMPLAINT_STATE_INVESTIGATING
                else STATE.COMPLAINT_STATE_INVESTIGATING
            )
            try:
                self.calls(INCOMING, old.owner).update(
                    f"{self.run_id}-old-{tracking_id}", tracking_id, target, "still ours?"
                )
                wrong.append(f"{old.owner} moved {tracking_id} after the move")
            except Refused as refused:
                if (
                    refused.code != "FAILED_PRECONDITION"
                    or refused.reason != NOT_DESK_OWNER
                    or refused.metadata.get("owner") != INCOMING
                ):
                    wrong.append(f"{old.owner} on {tracking_id}: {refused}")
        now, _, _ = self._listing(INCOMING)
        wrong += [f"{t} changed by a refused call" for t in after if now.get(t) != after[t]]
        return check(
            "old desks refused, naming the owner",
            wrong,
            f"{tried} calls refused FAILED_PRECONDITION {NOT_DESK_OWNER} owner={INCOMING}; "
            "nothing changed",
        )

    def _kemenperin_works(self, before: Listing) -> list[Check]:
        """Kemenperin takes every moved complaint up and closes it."""
        calls = self.calls(INCOMING, INCOMING)
        wrong = []
        worked = 0
        for number, (tracking_id, old) in enumerate(before.items()):
            if old.state in CLOSED:
                continue
            worked += 1
            prefix = f"{self.run_id}-kemenperin-{tracking_id}"
            try:
                if old.state != STATE.COMPLAINT_STATE_INVESTIGATING:
                    calls.update(
                        f"{prefix}-1",
                        tracking_id,
                        STATE.COMPLAINT_STATE_INVESTIGATING,
                        "taken over",
                    )
                final = (
                    STATE.COMPLAINT_STATE_RESOLVED if number % 2 else STATE.COMPLAINT_STATE_REJECTED
                )
                calls.update(f"{prefix}-2", tracking_id, final, "closed by Kemenperin's desk")
            except Refused as refused:
                wrong.append(f"{tracking_id}: {refused}")
        now, _, _ = self._listing(INCOMING)
        left = [t for t, c in now.items() if c.state not in CLOSED]
        wrong += [f"{t} still open" for t in left]
        wrong += [
            f"{t}: last step by {now[t].history[-1].actor}"
            for t, old in before.items()
            if old.state not in CLOSED and t in now and now[t].history[-1].actor != INCOMING
        ]
        return [
            check(
                "Kemenperin works the moved complaints to the end",
                wrong,
                f"{worked} complaints taken up and closed by {INCOMING}",
            )
        ]

    def _new_filings(self) -> Check:
        """An operator files after the move: Kemenperin's desk owns it."""
        desk = self.config.desks[0]
        complaint = file_one(
            self.calls(INCOMING, desk),
            f"{self.run_id}-after",
            self.subscribers.imei(),
            self.subscribers.imsi(desk),
            CATEGORIES[0],
        )
        wrong = [] if complaint.owner == INCOMING else [f"owned by {complaint.owner}"]
        if complaint.tracking_id in self.before:
            wrong.append(f"tracking id {complaint.tracking_id} given before the move too")
        return check(
            "new complaints go to Kemenperin's desk, under a new tracking id",
            wrong,
            f"{complaint.tracking_id} filed by {desk}, owned by {complaint.owner}",
        )


def _figures(before: Listing, after: Listing, missed: int) -> dict[str, object]:
    by_state: dict[str, dict[str, int]] = {}
    for complaint in before.values():
        row = by_state.setdefault(state_name(complaint.state), {})
        row[complaint.owner] = row.get(complaint.owner, 0) + 1
    owners_after: dict[str, int] = {}
    for complaint in after.values():
        owners_after[complaint.owner] = owners_after.get(complaint.owner, 0) + 1
    return {
        "complaints": len(before),
        "open": sum(c.state not in CLOSED for c in before.values()),
        "closed": sum(c.state in CLOSED for c in before.values()),
        "before_by_state_and_desk": by_state,
        "owners_after": owners_after,
        "deadlines_missed": missed,
    }

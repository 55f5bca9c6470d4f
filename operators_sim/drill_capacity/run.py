"""``ceir-sim drill capacity``: September 2020, replayed and judged.

1. Start a register with ``--capacity N`` (no range guard) in the
   enforcement phase; Kemenperin uploads the legitimate TPP units; phones
   start attaching (registered ones, unregistered ones).
2. One importer uploads whole TAC ranges, chunk by chunk, until the register
   refuses a chunk (REGISTER_FULL): the register is full.
3. New phones are registered one by one while it is full: refused, each
   kept for the replay; they attach all the same, and are denied.
4. The cure: Kominfo finds the range uploads never seen on a network
   (``ceir ranges find``), Kemenperin revokes them (``ceir ranges revoke``),
   the register restarts with the capacity raised and the range guard on,
   and every refused registration is sent again with its request id.
5. The importer uploads another whole range: refused (DENSE_RANGE).
6. Judge: every refused registration present, the ranges found and revoked,
   who lost service and for how long; write report.json and report.html.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import field_mask_pb2

from ceir.v1 import policy_pb2 as policy_pb
from ceir.v1 import policy_pb2_grpc as policy_grpc
from ceir.v1 import types_pb2 as pb

from ..drill.timeline import Timeline
from .cure import revoke_ranges
from .plan import GUARDED_TAC, SERIALS, Plan, make_plan
from .register import DrillRegister
from .report import write_report
from .traffic import Answer, Phones
from .uploads import Uploads

__all__ = ["CapacityConfig", "CapacityDrill", "CapacityResult", "service_lost"]

OUTPUTS = ("report.json", "report.html", "timeline.svg", "revoked.csv", "logs")


@dataclass
class CapacityConfig:
    report: Path = Path("reports/capacity")
    capacity: int = 1_200_000
    seed: int = 1
    guard: int = 1_000  # the range guard's K, on after the cure
    full_seconds: float = 6.0  # how long new phones are registered while the register is full
    settle_seconds: float = 3.0  # traffic after the replay and after the guarded upload
    db_url: str | None = None
    keep_work: bool = False


@dataclass
class CapacityResult:
    verdict: dict[str, Any]
    html: Path
    json: Path


def service_lost(answers: list[Answer], group: str) -> dict[int, float | None]:
    """For each phone of ``group`` denied at least once: seconds from its first
    denial to its first allowed attach after it (None: never allowed again)."""
    first_denied: dict[int, float] = {}
    restored: dict[int, float | None] = {}
    for answer in sorted((a for a in answers if a.group == group), key=lambda a: a.at):
        key = answer.key
        if not answer.allowed:
            first_denied.setdefault(key, answer.at)
            restored.setdefault(key, None)
        elif key in first_denied and restored.get(key) is None:
            restored[key] = answer.at - first_denied[key]
    return restored


class CapacityDrill:
    def __init__(self, config: CapacityConfig, progress: Callable[[str], None] | None = None):
        self.config = config
        self.plan: Plan = make_plan(config.capacity, config.seed, config.guard)
        self.progress = progress or (lambda _message: None)
        self.timeline = Timeline()

    def run(self) -> CapacityResult:
        config = self.config
        report = config.report
        report.mkdir(parents=True, exist_ok=True)
        for old in OUTPUTS:  # nothing of an earlier run may pass for this one's
            path = report / old
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        work = report / "work" if config.keep_work else Path(tempfile.mkdtemp(prefix="ceir-cap-"))
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        register = DrillRegister(work, report / "logs", config.db_url)
        try:
            return self._drill(register)
        finally:
            register.close()
            if not config.keep_work:
                shutil.rmtree(work, ignore_errors=True)

    def _mark(self, step: str, detail: str = "") -> None:
        self.timeline.mark(step, detail)
        self.progress(f"{step}{': ' + detail if detail else ''}")

    def _drill(self, register: DrillRegister) -> CapacityResult:
        config, plan = self.config, self.plan
        began = time.monotonic()
        self.progress(f"starting the register with --capacity {plan.capacity:,}")
        register.start(["--capacity", str(plan.capacity)])
        _enforce(register)
        self.timeline.restart()
        phones = Phones(register, self.timeline.started, config.seed)
        uploads = Uploads(register, self.timeline.now, uuid.uuid4().hex[:8])
        self._mark("normal TPP uploads", f"{plan.legit.size:,} produced units, scattered serials")
        legit, _ = uploads.import_keys(plan.legit, "TPP-units-2020", "units")
        phones.activate("registered", plan.legit, sample=True)
        phones.activate("unregistered", plan.unregistered)
        phones.start()
        try:
            return self._after_start(register, phones, uploads, legit, began)
        finally:
            phones.stop()

    def _after_start(
        self, register: DrillRegister, phones: Phones, uploads: Uploads, legit: int, began: float
    ) -> CapacityResult:
        config, plan = self.config, self.plan
        self._mark("range uploads", f"{len(plan.ranges)} whole TAC ranges of {plan.ranges[0][1]:,}")
        range_accepted, full_reason = 0, ""
        for index, (first, size) in enumerate(plan.ranges):
            keys = np.arange(first, first + size, dtype=np.uint64)
            accepted, full_reason = uploads.import_keys(
                keys, f"TPP-RANGE-{first // SERIALS}", f"range-{index}", fill=True
            )
            range_accepted += accepted
            if index == 0:
                phones.activate("in use", plan.in_use)  # real phones inside the first range
            if full_reason:
                self._mark("register full", f"a range chunk refused: {full_reason}")
                break
        self._mark("new phones registered", f"{plan.late.size:,} one by one")
        interval = config.full_seconds / plan.late.size
        for key in plan.late.tolist():
            uploads.register_late(key)
            phones.add("late", key)
            time.sleep(interval)
        refused = dict(uploads.refused)
        self._mark("the cure: find and revoke", f"{len(refused):,} registrations refused")
        report = config.report
        cure = revoke_ranges(register, report / "logs", report / "revoked.csv", plan.guard)
        self._mark("ranges revoked", f"{len(cure.revoked_keys):,} IMEIs")
        self._mark("restart", f"--capacity {plan.raised:,} --range-guard {plan.guard:,}")
        register.restart(["--capacity", str(plan.raised), "--range-guard", str(plan.guard)])
        self._mark("serving again")
        uploads.replay()
        self._mark("refused registrations replayed", f"{len(uploads.replayed):,}")
        time.sleep(config.settle_seconds)
        guarded = np.arange(
            GUARDED_TAC * SERIALS, GUARDED_TAC * SERIALS + 2 * plan.guard + 10, dtype=np.uint64
        )
        _, guard_reason = uploads.import_keys(guarded, f"TPP-RANGE-{GUARDED_TAC}", "guarded")
        self._mark("range upload with the guard on", guard_reason or "acknowledged")
        time.sleep(config.settle_seconds)
        phones.stop()
        present = uploads.present(sorted(refused))
        verdict = self._verdict(
            phones, uploads, cure, legit, range_accepted, refused, present, guard_reason
        )
        verdict["seconds"] = round(time.monotonic() - began, 1)
        html, json_path = write_report(report, verdict, phones, uploads.events, self.timeline.marks)
        return CapacityResult(verdict, html, json_path)

    def _verdict(
        self,
        phones: Phones,
        uploads: Uploads,
        cure: Any,
        legit: int,
        range_accepted: int,
        refused: dict[int, str],
        present: list[int],
        guard_reason: str,
    ) -> dict[str, Any]:
        plan = self.plan
        lost = service_lost(phones.answers, "late")
        durations = [d for d in lost.values() if d is not None]
        in_use = {int(k) for k in plan.in_use.tolist()}
        found = int(cure.found["imeis"])
        revoked = set(cure.revoked_keys)
        unregistered = [a for a in phones.answers if a.group == "unregistered"]
        return {
            "capacity": plan.capacity,
            "raised_capacity": plan.raised,
            "range_guard": plan.guard,
            "units_registered": legit,
            "range_imeis_uploaded": range_accepted,
            "range_chunks_refused": sum(
                1 for e in uploads.events if e.kind == "import" and e.outcome == "REGISTER_FULL"
            ),
            "whitelist_at_capacity": legit + range_accepted + self._late_taken(uploads),
            "registrations_refused": len(refused),
            "registrations_replayed": len(uploads.replayed),
            "registrations_lost": len(refused) - len(present),
            "range_imeis_found": found,
            "range_imeis_revoked": len(revoked),
            "range_phones_in_use": len(in_use),
            "range_phones_in_use_revoked": len(in_use & revoked),
            "legitimate_devices_lost_service": len(lost),
            "legitimate_devices_still_without_service": sum(1 for d in lost.values() if d is None),
            "service_lost_seconds_max": round(max(durations), 2) if durations else 0.0,
            "service_lost_seconds_median": round(float(np.median(durations)), 2)
            if durations
            else 0.0,
            "unregistered_checks": len(unregistered),
            "unregistered_allowed": sum(1 for a in unregistered if a.allowed),
            "check_batches_unanswered": len(phones.unanswered),
            "guarded_range_upload": guard_reason or "acknowledged",
        }

    def _late_taken(self, uploads: Uploads) -> int:
        """Late registrations acknowledged before the cure (room was left)."""
        return sum(
            1 for e in uploads.events if e.kind == "registration" and e.outcome == "acknowledged"
        )


def _enforce(register: DrillRegister) -> None:
    """Kominfo sets the enforcement phase: September 2020, full blocking."""
    stub = policy_grpc.PolicyServiceStub(register.channel("kominfo"))
    stub.UpdatePolicy(
        policy_pb.UpdatePolicyRequest(
            request_id=f"capacity-drill-phase-{uuid.uuid4().hex[:8]}",
            policy=pb.Policy(phase=pb.PHASE_ENFORCE),
            update_mask=field_mask_pb2.FieldMask(paths=["phase"]),
        ),
        metadata=register.credentials["kominfo"].metadata,
        timeout=30,
    )

"""Complaint traffic of ``ceir-sim attach``: a small run against a real
register (its own CEIR, mutual TLS), the complaints it files and works
through ``ComplaintService``, and their figures in the reports; the desks'
rules on diagnoses; the ground truth after a desk's resolution."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ceir.v1 import complaints_pb2 as complaints_pb
from ceir.v1 import registry_pb2 as registry_pb
from ceir.v1 import types_pb2 as pb
from operators_sim.cli import app
from operators_sim.complaints.intake import CATEGORY, Grievance
from operators_sim.complaints.rules import ASK, REJECT, RESOLVE, plan
from operators_sim.decision import Outcome, Source
from operators_sim.population import Category, generate
from operators_sim.truth import Event, Truth


def _grievance(category: int, documents: bool = True) -> Grievance:
    return Grievance(
        device=1,
        slot=1,
        sim=1,
        operator="telkomsel",
        category=category,
        imeis=("353281110000018", "353281110000026"),
        imsi="510100000000001",
        msisdn="628100000001",
        arrival=0.0,
        documents=documents,
        replies=True,
        kind="grandfathered",
        register_caused=True,
        denied=True,
    )


def _diagnosis(
    status: int, reasons: tuple[int, ...], registered: bool = False
) -> complaints_pb.DiagnoseImeiResponse:
    diagnosis = complaints_pb.DiagnoseImeiResponse(status=status, reasons=reasons)  # type: ignore[arg-type]
    if registered:
        diagnosis.registration.CopyFrom(
            registry_pb.Registration(source=pb.REGISTRATION_SOURCE_GRANDFATHERED)
        )
        diagnosis.registration_valid = True
    return diagnosis


UNREGISTERED = _diagnosis(
    pb.EQUIPMENT_STATUS_BLACKLISTED, (pb.REASON_NOT_REGISTERED, pb.REASON_ENFORCEMENT_PHASE)
)
REGISTERED = _diagnosis(pb.EQUIPMENT_STATUS_WHITELISTED, (pb.REASON_REGISTERED,), True)


def test_a_dead_second_slot_is_whitelisted_on_the_box_or_asked_for_it() -> None:
    second = CATEGORY.COMPLAINT_CATEGORY_SECOND_SLOT_DEAD
    step = plan(_grievance(second), "telkomsel", [UNREGISTERED, REGISTERED], asked=False)
    assert (step.outcome, step.action) == (RESOLVE, "whitelist_sibling")
    request = step.request("r-1", "C-000001")
    assert request.whitelist_sibling.registered_imei == "353281110000026"
    no_box = _grievance(second, documents=False)
    assert plan(no_box, "telkomsel", [UNREGISTERED, REGISTERED], asked=False).outcome == ASK
    assert plan(no_box, "telkomsel", [UNREGISTERED, REGISTERED], asked=True).outcome == REJECT


def test_a_device_the_register_allows_now_is_resolved_without_action() -> None:
    step = plan(_grievance(CATEGORY.COMPLAINT_CATEGORY_NO_SIGNAL), "xl", [REGISTERED], asked=False)
    assert (step.outcome, step.action) == (RESOLVE, "no_action")
    assert step.request("r", "C-1").HasField("no_action")


def test_an_unregistered_phone_is_rejected_naming_the_rule() -> None:
    diagnosis = complaints_pb.DiagnoseImeiResponse(
        status=pb.EQUIPMENT_STATUS_BLACKLISTED,
        rules=[
            complaints_pb.RuleStep(
                number=6,
                rule="unregistered",
                outcome=complaints_pb.RULE_OUTCOME_DECIDED,
                detail="not on the whitelist",
            )
        ],
    )
    step = plan(_grievance(CATEGORY.COMPLAINT_CATEGORY_OTHER), "xl", [diagnosis], asked=False)
    assert step.outcome == REJECT and "rule 6 unregistered" in step.note


def test_a_recovered_phone_is_unblocked_only_by_its_reporter() -> None:
    stolen = complaints_pb.DiagnoseImeiResponse(status=pb.EQUIPMENT_STATUS_BLACKLISTED)
    stolen.blacklist.CopyFrom(registry_pb.BlacklistEntry(blocked_by="xl", police_report="LP/1"))
    recovered = _grievance(CATEGORY.COMPLAINT_CATEGORY_RECOVERED)
    assert plan(recovered, "xl", [stolen], asked=False).action == "unblock"
    assert plan(recovered, "telkomsel", [stolen], asked=False).outcome == REJECT


def test_truth_follows_a_slot_whitelisted_and_a_pair_added_during_the_run() -> None:
    population = generate(400, 3)
    device = next(
        d for d in population.of(Category.GRANDFATHERED).tolist() if population.slots[d] == 2
    )
    truth = Truth(population, pb.PHASE_ENFORCE)
    denied = Outcome.NOT_REGISTERED_ENFORCED
    rows = {
        "device": [device, device],
        "slot": [1, 1],
        "sim": [int(population.sim[device])] * 2,
        "sequence": [5, 20],
    }

    def judge() -> np.ndarray:
        return truth.judge(
            np.array(rows["device"]),
            np.array(rows["slot"]),
            np.array(rows["sim"]),
            np.array([denied, denied], dtype=np.uint8),
            np.array([Source.REPLICA] * 2, dtype=np.uint8),
            np.array(rows["sequence"], dtype=np.uint64),
            np.zeros(2, dtype=np.int64),
            np.zeros(2),
        ).mismatch

    assert judge().tolist() == [False, False]  # the dead second slot: denied, rightly
    truth.record(device, Event.REGISTERED, 10, slot=1)
    assert judge().tolist() == [False, True]  # whitelisted at 10: a denial at 20 is wrong
    truth.record(device, Event.REVOKED, 15, slot=1)
    assert judge().tolist() == [False, False]


@pytest.mark.slow
def test_attach_files_and_works_complaints_and_reports_them(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "attach",
            *("--devices", "2000", "--rate", "300", "--duration", "4", "--seed", "4"),
            *("--phase", "enforce", "--complaint-share", "0.5", "--desk-capacity", "4"),
            *("--report", str(tmp_path / "report"), "--data-dir", str(tmp_path / "data")),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "report" / "report.json").read_text())
    assert summary["total"]["mismatches"] == 0  # resolutions are in the ground truth
    complaints = summary["complaints"]
    assert complaints["filed"] > 0
    assert complaints["lost"] == complaints["duplicated"] == complaints["state_mismatches"] == 0
    assert complaints["listed"] == complaints["filed"]
    categories = {row["category"]: row for row in complaints["by_category"]}
    assert categories["SECOND_SLOT_DEAD"]["filed"] > 0
    assert complaints["register_caused"] > 0
    assert complaints["register_caused_kinds"].get("grandfathered", 0) > 0
    assert complaints["by_action"].get("whitelist_sibling", 0) > 0
    assert complaints["hours_to_close"]["p50"] is not None
    # four a day at each desk cannot keep two-day deadlines for this many
    assert complaints["deadlines_missed"] > 0
    assert sum(row["filed"] for row in complaints["by_category"]) == complaints["filed"]
    assert "complaints by category" in result.output
    page = (tmp_path / "report" / "report.html").read_text()
    assert "<h2>Complaints</h2>" in page and "SECOND_SLOT_DEAD" in page

"""The handover drill's parts that need no register: the verdict, its write
counts, the report, the scenario table and its documentation, the keys and
policies, the refusal reader."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from ceir.custody import ThresholdNotMet, sign_policy, verify_successor, walk_chain
from ceir.v1 import complaints_pb2 as cpb
from ceir.v1 import types_pb2 as pb
from operators_sim.drill.complaints import CarriedComplaints, compare
from operators_sim.drill.errors import refusal
from operators_sim.drill.keys import (
    INCOMING,
    OUTGOING,
    THRESHOLD,
    make_keys,
    policy,
    signed_policy_0,
)
from operators_sim.drill.report import LEFT, RIGHT, WIDTH, series, timeline_svg, write_reports
from operators_sim.drill.scenarios import SCENARIOS, scenario
from operators_sim.drill.timeline import Mark, Timeline, WriteEvent
from operators_sim.drill.verdict import KEYS, OUTCOMES, Verdict, count_writes
from operators_sim.simulation import Records

DOCS = Path(__file__).resolve().parents[2] / "docs"
NOW = 1_700_000_000


def _added(key: int, sequence: int) -> pb.ListChange:
    return pb.ListChange(
        sequence=sequence, kind=pb.CHANGE_KIND_WHITELIST_ADDED, imei_key=f"{key:014d}"
    )


def _verdict(**overrides: object) -> Verdict:
    values: dict[str, object] = {
        "scenario": "clean",
        "outcome": "handed_over",
        "attaches": 10,
        "attaches_undecided": 0,
        "max_decision_ms": 1.5,
        "acknowledged_writes_lost": 0,
        "writes_applied_twice": 0,
        "freeze_seconds": 2.0,
        "final_size": 100,
        "roots_equal": True,
        "operators_verified": ["xl", "indosat"],
        "alerts": {"xl": {"SPLIT_VIEW": 1}, "tri": {}},
    }
    values.update(overrides)
    return Verdict(**values)  # type: ignore[arg-type]


def test_count_writes_finds_lost_and_doubled_writes() -> None:
    changes = [
        _added(1, 1),
        _added(2, 2),
        _added(2, 3),  # applied twice
        pb.ListChange(sequence=4, kind=pb.CHANGE_KIND_BLACKLIST_BLOCKED, imei_key=f"{3:014d}"),
        _added(9, 5),  # not an acknowledged write: not counted
    ]
    assert count_writes([1, 2, 3], changes) == (1, 1)  # 3 was never whitelisted
    assert count_writes([1], changes) == (0, 0)
    assert count_writes([], changes) == (0, 0)


def test_verdict_json_has_exactly_the_issue_keys(tmp_path: Path) -> None:
    path = tmp_path / "verdict.json"
    _verdict().write(path)
    data = json.loads(path.read_text())
    assert tuple(data) == KEYS
    assert data["operators_verified"] == ["indosat", "xl"]
    assert data["alerts"] == {"xl": {"SPLIT_VIEW": 1}}  # nodes without alerts left out


def test_verdict_refuses_an_unknown_outcome() -> None:
    with pytest.raises(ValueError, match="outcome"):
        _verdict(outcome="maybe")


def test_verdict_lines_say_null_fields_in_words() -> None:
    lines = "\n".join(_verdict(freeze_seconds=None, roots_equal=None).lines())
    assert "no freeze" in lines
    assert "not compared" in lines


def _markdown_rows(text: str, heading: str) -> list[list[str]]:
    section = text.split(heading, 1)[1]
    rows = []
    for line in section.splitlines()[1:]:
        if line.startswith("#"):
            break
        if line.startswith("| ") and not line.startswith("| ---"):
            rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def test_the_scenario_table_of_the_docs_is_the_codes() -> None:
    rows = _markdown_rows((DOCS / "simulation.md").read_text(), "### Scenarios")
    documented = {row[0].strip("`"): row[-1].strip("`") for row in rows[1:]}
    assert documented == {name: s.expected for name, s in SCENARIOS.items()}
    assert all(s.expected in OUTCOMES for s in SCENARIOS.values())


def test_the_verdict_keys_are_documented() -> None:
    text = (DOCS / "simulation.md").read_text()
    section = text.split("### What it writes", 1)[1].split("###", 1)[0]
    for key in KEYS:
        assert f"`{key}`" in section


def test_an_unknown_scenario_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="clean"):
        scenario("no-such-thing")


def test_drill_policies_walk_with_both_thresholds_and_refuse_the_old_side_alone() -> None:
    keys = make_keys("ceir.example/drill")
    policy_0 = policy(keys, 0, OUTGOING, "127.0.0.1:1", NOW + 3600)
    policy_1 = policy(keys, 1, INCOMING, "127.0.0.1:2", NOW + 3600)
    assert walk_chain(policy_0, [], NOW) == policy_0
    assert signed_policy_0(keys, policy_0).startswith(policy_0.text())
    approved = sign_policy(policy_1, keys.approvals())
    assert verify_successor(policy_0, approved, NOW).custodian == INCOMING
    old_side = sign_policy(policy_1, (*keys.signers(OUTGOING, 3), keys.witness))
    with pytest.raises(ThresholdNotMet):
        verify_successor(policy_0, old_side, NOW)
    one_officer = sign_policy(
        policy_1, (*keys.signers(OUTGOING, 1), *keys.signers(INCOMING, THRESHOLD), keys.witness)
    )
    with pytest.raises(ThresholdNotMet):
        verify_successor(policy_0, one_officer, NOW)
    # the outsider is no officer of any policy: its signature never counts
    assert keys.outsider.verifier not in policy_0.note_verifiers()


def _records(times: list[float], outcomes: list[int]) -> Records:
    count = len(times)
    zeros = np.zeros(count, np.int64)
    return Records(
        zeros,
        zeros,
        zeros,
        zeros,
        np.array(outcomes, np.uint8),
        np.zeros(count, np.uint8),
        np.zeros(count, np.uint64),
        zeros,
        np.array(times, np.float64),
        np.full(count, 0.001),
        np.zeros(count, np.float64),
    )


def test_series_counts_each_second_and_the_report_shows_every_step(tmp_path: Path) -> None:
    stolen, registered = 3, 6  # Outcome.STOLEN is denied, REGISTERED allowed
    records = _records([0.1, 0.2, 1.5, 2.5], [registered, stolen, registered, stolen])
    writes = [
        WriteEvent(0.5, "acknowledged"),
        WriteEvent(1.2, "refused", "REGISTER_FROZEN"),
        WriteEvent(2.2, "retried"),
        WriteEvent(2.3, "acknowledged"),
    ]
    marks = [Mark(1.0, "FROZEN", "final size 10"), Mark(2.1, "ACTIVE", "first <checkpoint>")]
    data = series(records, writes, marks)
    assert data.attaches[:3] == [2, 1, 1]
    assert data.denied[:3] == [1, 0, 1]
    assert data.acknowledged[:3] == [1, 0, 1]
    assert data.refused[:3] == [0, 1, 0]
    assert data.retried[:3] == [0, 0, 1]
    assert data.slowest_ms[:3] == [1, 1, 1]
    svg = timeline_svg(data, marks)
    assert svg.count("<line") >= 2 + 6  # two step markers, two axes per panel
    assert "first &lt;checkpoint&gt;" in svg  # escaped
    for points in re.findall(r'points="([^"]+)"', svg):  # every line inside the plot
        xs = [float(point.split(",")[0]) for point in points.split()]
        assert all(LEFT <= x <= WIDTH - RIGHT for x in xs)
    html_path, md_path = write_reports(tmp_path, _verdict(), records, writes, marks, "facts")
    page = html_path.read_text()
    assert "<svg" in page and "FROZEN" in page and "outcome: handed_over" in page
    markdown = md_path.read_text()
    assert "timeline.svg" in markdown and "| 1.00 | FROZEN | final size 10 |" in markdown
    assert (tmp_path / "timeline.svg").read_text() == svg


def test_timeline_restart_keeps_setup_marks_before_zero() -> None:
    timeline = Timeline()
    timeline.mark("setup")
    timeline.restart()
    timeline.mark("go")
    setup, go = timeline.marks
    assert setup.at <= 0 <= go.at
    assert timeline.first("go") == go


class _Error(grpc.RpcError, grpc.Call):
    """An error as a stub raises it: a call with a status in its trailers."""

    def __init__(self, status: status_pb2.Status) -> None:
        self._status = rpc_status.to_status(status)

    def code(self) -> grpc.StatusCode:
        return self._status.code

    def details(self) -> str:
        return self._status.details

    def trailing_metadata(self) -> Any:
        return tuple(self._status.trailing_metadata)


def _packed(*messages: object) -> list[any_pb2.Any]:
    packed = []
    for message in messages:
        any_message = any_pb2.Any()
        any_message.Pack(message)  # type: ignore[arg-type]
        packed.append(any_message)
    return packed


def test_refusal_reads_reason_metadata_and_retry_delay() -> None:
    status = status_pb2.Status(
        code=code_pb2.FAILED_PRECONDITION,
        message="frozen",
        details=_packed(
            error_details_pb2.ErrorInfo(
                reason="REGISTER_FROZEN", metadata={"endpoint": "127.0.0.1:9"}
            ),
            error_details_pb2.RetryInfo(retry_delay={"seconds": 1, "nanos": 500_000_000}),
        ),
    )
    refused = refusal(_Error(status))
    assert refused.reason == "REGISTER_FROZEN"
    assert refused.metadata == {"endpoint": "127.0.0.1:9"}
    assert refused.retry_after == 1.5
    assert not refused.down
    plain = refusal(_Error(status_pb2.Status(code=code_pb2.UNAVAILABLE, message="gone")))
    assert plain.down and plain.reason == "UNAVAILABLE" and plain.retry_after is None


def test_scenario_names_are_the_issues() -> None:
    assert set(SCENARIOS) == {
        "clean",
        "officer-missing",
        "wrong-signer",
        "old-keys-only",
        "not-ready",
        "incoming-crash",
        "transfer-corrupt",
        "operator-offline",
        "split-view",
        "witness-down",
    }
    assert all(re.fullmatch(r"[a-z-]+", name) for name in SCENARIOS)


def test_complaints_compare_counts_lost_doubled_and_changed() -> None:
    def filed(
        number: int, state: cpb.ComplaintState.ValueType = cpb.COMPLAINT_STATE_SUBMITTED
    ) -> cpb.Complaint:
        complaint = cpb.Complaint(
            tracking_id=f"C-{number:06d}", state=state, owner="telkomsel", description="d"
        )
        complaint.history.add(number=1, kind=cpb.COMPLAINT_STEP_KIND_FILED, actor="telkomsel")
        return complaint

    before = [filed(1), filed(2), filed(3, cpb.COMPLAINT_STATE_RESOLVED), filed(4)]
    moved = cpb.Complaint()
    moved.CopyFrom(before[0])
    moved.owner = "kemenperin"
    moved.history.add(number=2, kind=cpb.COMPLAINT_STEP_KIND_MOVED, actor="ceir")
    assert compare(before, [moved, *before[1:]]) == CarriedComplaints(4, 0, 0, 0)
    closed_moved = cpb.Complaint()
    closed_moved.CopyFrom(before[2])
    closed_moved.owner = "kemenperin"
    altered = cpb.Complaint()
    altered.CopyFrom(before[3])
    altered.description = "another"
    after = [before[1], before[1], closed_moved, altered]
    assert compare(before, after) == CarriedComplaints(4, lost=1, doubled=1, changed=2)

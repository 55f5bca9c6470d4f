"""``ceir complaints`` against a real server: a dead second slot filed,
diagnosed, investigated, resolved and shown; errors as one line. And the
domain's complaint enums stay in step with the published ones."""

from __future__ import annotations

import enum
import json

import grpc
import pytest
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from ceir.api.server import RunningServer
from ceir.domain import complaints, explain
from ceir.v1 import complaints_pb2, registry_pb2, registry_pb2_grpc, types_pb2

from .helpers import imei
from .test_cli import as_org, assert_one_line_error, db_path, org_tokens, remote, run, running

__all__ = ["db_path", "org_tokens", "remote", "running"]  # fixtures of test_cli, used here

TELKOMSEL_IMSI = "510101234567890"


def test_a_dead_second_slot_through_the_command_line(
    running: RunningServer, org_tokens: dict[str, str], remote: list[str]
) -> None:
    telkomsel = as_org(remote, org_tokens["telkomsel"])
    first, second = imei(81), imei(82)
    with_grpc = run(
        "complaints", "diagnose", second, "--imsi", TELKOMSEL_IMSI, "--json", *telkomsel
    )
    assert with_grpc.exit_code == 0, with_grpc.output
    assert json.loads(with_grpc.stdout)["status"] == "EQUIPMENT_STATUS_GREYLISTED"
    # The grandfathered slot, registered by telkomsel's dump.
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        registry_pb2_grpc.RegistryServiceStub(channel).RegisterDevice(
            registry_pb2.RegisterDeviceRequest(
                device=registry_pb2.DeviceRegistration(
                    imeis=[first], source=types_pb2.REGISTRATION_SOURCE_GRANDFATHERED
                )
            ),
            metadata=(("authorization", f"Bearer {org_tokens['telkomsel']}"),),
            timeout=30,
        )
    filed = run(
        "complaints", "file", first, second, "--category", "second_slot_dead",
        "--imsi", TELKOMSEL_IMSI, "--request-id", "cli-1", "--json", *telkomsel,
    )  # fmt: skip
    assert filed.exit_code == 0, filed.output
    tracking = json.loads(filed.stdout)["tracking_id"]
    assert tracking == "C-000001"
    diagnosis = run("complaints", "diagnose", second, "--imsi", TELKOMSEL_IMSI, *telkomsel)
    assert diagnosis.exit_code == 0, diagnosis.output
    assert "unregistered" in diagnosis.stdout and "DECIDED" in diagnosis.stdout
    moved = run(
        "complaints", "update", tracking, "--state", "investigating", "--note", "box", *telkomsel
    )
    assert moved.exit_code == 0, moved.output
    resolved = run(
        "complaints", "resolve", tracking, "--note", "slot 2 from the box",
        "--whitelist-sibling", f"{second}:{first}", "--box", "box photo", *telkomsel,
    )  # fmt: skip
    assert resolved.exit_code == 0, resolved.output
    assert "RESOLVED" in resolved.stdout and "whitelist_sibling" in resolved.stdout
    shown = run("complaints", "show", tracking, *telkomsel)
    assert shown.exit_code == 0 and "slot 2 from the box" in shown.stdout
    listed = run("complaints", "list", "--state", "resolved", *telkomsel)
    assert tracking in listed.stdout and "deadlines missed: 0" in listed.stdout
    again = run("complaints", "update", tracking, "--state", "investigating", *telkomsel)
    assert_one_line_error(again, "FAILED_PRECONDITION", "RESOLVED")
    wrong = run("complaints", "file", first, "--category", "nonsense", *telkomsel)
    assert wrong.exit_code == 1 and "--category" in wrong.stderr


PAIRS = [
    (complaints.Category, complaints_pb2.ComplaintCategory, "COMPLAINT_CATEGORY_"),
    (complaints.State, complaints_pb2.ComplaintState, "COMPLAINT_STATE_"),
    (complaints.StepKind, complaints_pb2.ComplaintStepKind, "COMPLAINT_STEP_KIND_"),
    (explain.Outcome, complaints_pb2.RuleOutcome, "RULE_OUTCOME_"),
]


@pytest.mark.parametrize(("domain", "published", "prefix"), PAIRS)
def test_domain_enum_matches_proto(
    domain: type[enum.IntEnum], published: EnumTypeWrapper, prefix: str
) -> None:
    proto_values = {
        name.removeprefix(prefix): value
        for name, value in published.items()
        if not name.endswith("_UNSPECIFIED")
    }
    assert proto_values == {member.name: member.value for member in domain}


def test_every_category_has_actions_and_a_deadline() -> None:
    levels = complaints.DEFAULT_SERVICE_LEVELS
    for category in complaints.Category:
        assert complaints.ResolutionAction.NO_ACTION in complaints.ALLOWED_ACTIONS[category]
        assert levels.hours[category] >= 1
    oneof = complaints_pb2.ResolveComplaintRequest.DESCRIPTOR.oneofs_by_name["action"]
    assert {f.name for f in oneof.fields} == {a.value for a in complaints.ResolutionAction}

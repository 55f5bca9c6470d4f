"""The desk agents' rules: from the register's diagnosis to one action.

Diagnose first: the complained-of IMEI with the subscriber's IMSI, and a
dual-SIM phone's sibling slot. Then, by the complaint's category:

- the register allows the device now (registered since, unblocked, paired):
  resolve with no action;
- SECOND_SLOT_DEAD, the sibling slot validly registered: whitelist the dead
  slot if the subscriber shows the box listing both IMEIs (ask for it once);
  the sibling paired with a SIM: pair the dead slot with the subscriber's SIM;
- RECOVERED, the IMEI blocked as stolen by this desk's operator: unblock it
  on the police's recovery note (ask for it once); blocked by another
  operator: reject, sending the subscriber to that operator;
- NO_SIGNAL on an expired tourist registration: register the device again on
  a valid visa, if the desk's organisation may register tourists (operators);
- anything else: reject, saying which rule of the register decided.

The subscriber's documents are the simulation's to know (``Grievance``);
everything about the register comes from the diagnosis.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from google.protobuf.message import Message

from ceir.v1 import complaints_pb2 as complaints_pb
from ceir.v1 import registry_pb2 as registry_pb
from ceir.v1 import types_pb2 as pb

from ..codec import luhn_check_digit
from ..node import OPERATORS
from .intake import CATEGORY, Grievance

RESOLVE, REJECT, ASK = "resolve", "reject", "ask"
TOURIST_DAYS = 60
_OPERATORS = frozenset(op.name for op in OPERATORS)


@dataclass(frozen=True)
class Plan:
    """What the desk does next: resolve through ``action``, reject, or ask the
    subscriber for a document."""

    outcome: str  # RESOLVE, REJECT or ASK
    note: str
    action: str = "no_action"  # the ResolveComplaintRequest oneof field
    message: Message | None = None  # its value

    def request(self, request_id: str, tracking_id: str) -> complaints_pb.ResolveComplaintRequest:
        """The ResolveComplaintRequest carrying this plan's action."""
        request = complaints_pb.ResolveComplaintRequest(
            request_id=request_id, tracking_id=tracking_id, note=self.note
        )
        getattr(request, self.action).CopyFrom(self.message or complaints_pb.NoAction())
        return request


def allowed_now(diagnosis: complaints_pb.DiagnoseImeiResponse) -> bool:
    """The register lets the device attach now, without a pending block."""
    reasons = set(diagnosis.reasons)
    if diagnosis.status == pb.EQUIPMENT_STATUS_WHITELISTED:
        return True
    return diagnosis.status == pb.EQUIPMENT_STATUS_GREYLISTED and pb.REASON_REGISTERED in reasons


def decided_by(diagnosis: complaints_pb.DiagnoseImeiResponse) -> str:
    """The rule that decided, in the register's words."""
    for step in diagnosis.rules:
        if step.outcome == complaints_pb.RULE_OUTCOME_DECIDED:
            return f"rule {step.number} {step.rule}: {step.detail}"
    return "no rule decided"


def plan(
    grievance: Grievance,
    desk: str,
    diagnoses: list[complaints_pb.DiagnoseImeiResponse],
    asked: bool,
) -> Plan:
    """The desk's next step for ``grievance`` (``asked``: the subscriber was
    asked for a document already and has answered or given up)."""
    own = diagnoses[0]
    category = grievance.category
    if allowed_now(own):
        return Plan(RESOLVE, f"the register allows it now ({decided_by(own)})")
    if category == CATEGORY.COMPLAINT_CATEGORY_SECOND_SLOT_DEAD and len(diagnoses) > 1:
        return _second_slot(grievance, diagnoses[1], asked)
    if category == CATEGORY.COMPLAINT_CATEGORY_RECOVERED and own.HasField("blacklist"):
        reporter = own.blacklist.blocked_by
        if reporter and reporter != desk and desk in _OPERATORS:  # the reporter clears it
            return Plan(REJECT, f"reported stolen by {reporter}: recover it at {reporter}'s desk")
        if grievance.documents:
            return Plan(
                RESOLVE,
                f"recovery verified against police report {own.blacklist.police_report}",
                "unblock",
                complaints_pb.Unblock(imei=grievance.imeis[0]),
            )
        if not asked:
            return Plan(ASK, "bring the police's recovery note")
        return Plan(REJECT, "no recovery note: the device stays blocked as stolen")
    if (
        category == CATEGORY.COMPLAINT_CATEGORY_NO_SIGNAL
        and own.HasField("registration")
        and not own.registration_valid
        and own.registration.source == pb.REGISTRATION_SOURCE_TOURIST
    ):
        if desk in _OPERATORS and grievance.documents:
            return Plan(
                RESOLVE,
                "tourist registration renewed on a valid visa",
                "register_device",
                complaints_pb.RegisterDeviceAction(device=_tourist(own.registration, grievance)),
            )
        return Plan(REJECT, "tourist registration expired; register at an operator outlet")
    return Plan(REJECT, f"cannot be fixed at the desk ({decided_by(own)})")


def _second_slot(
    grievance: Grievance, sibling: complaints_pb.DiagnoseImeiResponse, asked: bool
) -> Plan:
    if sibling.HasField("registration") and sibling.registration_valid:
        if grievance.documents:
            return Plan(
                RESOLVE,
                "the box lists both slots; the sibling slot is registered",
                "whitelist_sibling",
                complaints_pb.WhitelistSibling(
                    imei=grievance.imeis[0],
                    registered_imei=grievance.imeis[1],
                    box_reference=f"box photo, subscriber {grievance.msisdn}",
                ),
            )
        if not asked:
            return Plan(ASK, "bring the box (or invoice) listing both IMEIs")
        return Plan(REJECT, "no box listing both IMEIs was shown")
    if sibling.exceptions:
        return Plan(
            RESOLVE,
            "the sibling slot is paired; pairing this slot with the subscriber's SIM",
            "pair_sim",
            complaints_pb.PairSim(imei=grievance.imeis[0], imsi=grievance.imsi),
        )
    return Plan(REJECT, f"the sibling slot is not registered either ({decided_by(sibling)})")


def _tourist(
    record: registry_pb.Registration, grievance: Grievance
) -> registry_pb.DeviceRegistration:
    """The expired tourist registration again, valid ``TOURIST_DAYS`` days."""
    device = registry_pb.DeviceRegistration(
        imeis=[key + str(luhn_check_digit(key)) for key in record.imei_keys],
        source=pb.REGISTRATION_SOURCE_TOURIST,
        reference=f"visa-{grievance.msisdn}",
        brand=record.brand,
        model=record.model,
    )
    device.valid_until.FromSeconds(int(time.time()) + TOURIST_DAYS * 86_400)
    return device

"""The domain's enums and the published ceir.v1 enums stay in step."""

from __future__ import annotations

import enum

import pytest
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from ceir.domain import model
from ceir.v1 import types_pb2

PAIRS = [
    (model.EquipmentStatus, types_pb2.EquipmentStatus, "EQUIPMENT_STATUS_"),
    (model.Reason, types_pb2.Reason, "REASON_"),
    (model.RegistrationSource, types_pb2.RegistrationSource, "REGISTRATION_SOURCE_"),
    (model.Phase, types_pb2.Phase, "PHASE_"),
    (model.ChangeKind, types_pb2.ChangeKind, "CHANGE_KIND_"),
    (model.BlacklistCause, types_pb2.BlacklistCause, "BLACKLIST_CAUSE_"),
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

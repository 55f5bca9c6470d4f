"""Where a synchronize-mode decision can differ from the CEIR's: clone
suspicion. The register counts the IMSIs an IMEI is seen with across every
operator's checks; a node sees only the checks of its own operator, so an
IMEI cloned across operators can stay under the threshold at each node."""

from __future__ import annotations

import pytest

from ceir.v1 import registry_pb2 as registry_pb
from ceir.v1 import types_pb2 as pb
from operators_sim.codec import full_imei
from operators_sim.decision import Outcome
from operators_sim.embedded import EmbeddedCeir
from operators_sim.loader import KEMENPERIN, Admin
from operators_sim.node import OPERATORS, AuthorizeNode, SyncNode
from operators_sim.transport import GrpcLink

IMEI = full_imei(35328111000016)
TELKOMSEL = [f"51010000000000{i}" for i in range(2)]
INDOSAT = [f"51001000000000{i}" for i in range(2)]


@pytest.mark.slow
def test_sim_clone_across_operators_is_seen_by_the_ceir_not_by_each_node(
    ceir_process: EmbeddedCeir, sim_tokens: dict[str, str]
) -> None:
    admin = Admin(ceir_process.address, sim_tokens)
    admin.registry.RegisterDevice(
        registry_pb.RegisterDeviceRequest(
            device=registry_pb.DeviceRegistration(
                imeis=[IMEI], source=pb.REGISTRATION_SOURCE_TPP_IMPORT
            )
        ),
        metadata=admin.metadata(KEMENPERIN),
    )
    admin.set_policy(clone_threshold=3)
    nodes = [
        SyncNode(OPERATORS[i], GrpcLink(ceir_process.address, sim_tokens[OPERATORS[i].name]))
        for i in (0, 1)
    ]
    national = AuthorizeNode(
        OPERATORS[0], GrpcLink(ceir_process.address, sim_tokens["telkomsel"]), cache_ttl=0
    )
    try:
        for node in nodes:
            node.start()
            assert node.wait_ready(30)
        local = []
        central = []
        for imsis, node in ((TELKOMSEL, nodes[0]), (INDOSAT, nodes[1])):
            for imsi in imsis:
                local.append(node.decide(IMEI, imsi).outcome)
                central.append(national.decide(IMEI, imsi).outcome)
    finally:
        for node in nodes:
            node.stop()
        national.stop()
        admin.close()
    # each node saw two IMSIs (at most the threshold of 3): registered
    assert local == [Outcome.REGISTERED] * 4
    # the register saw four: the fourth is a suspected clone
    assert central == [Outcome.REGISTERED] * 3 + [Outcome.CLONE_SUSPECTED]

"""The registers of the desk-move drill and the handover that moves the desk.

The handover drill's parties (``operators_sim.drill``): Telkomsel's register
(the custodian under policy 0, whose ``complaints`` line names Telkomsel,
an operator, so every operator runs its own desk), Kemenperin's standby and
Kominfo's witness. Policy 1 names Kemenperin custodian *and* complaints
desk; the handover drill's clean ceremony (``drill.script.Script``) runs it
to the end, the drill reporting each operator's readiness as the operators'
nodes would. After it, Kemenperin's register is the one in charge, of the
lists and of the desk.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

from ceir.custody import CustodyPolicy
from ceir.v1 import custody_pb2 as custody_pb
from ceir.v1 import custody_pb2_grpc as custody_grpc

from ..custody_state import sha256_hex
from ..drill.ceremony import Ceremony, Side
from ..drill.cluster import Cluster, Files
from ..drill.keys import (
    DAY,
    INCOMING,
    OUTGOING,
    DrillKeys,
    make_keys,
    policy,
    signed_policy_0,
    write_log_key,
    write_witness_keys,
)
from ..drill.scenarios import SCENARIOS
from ..drill.script import Hooks, Outcome, Script
from ..drill.timeline import Timeline
from ..loader import KOMINFO
from ..node import OPERATORS
from ..verification import DEFAULT_ORIGIN

CALL_TIMEOUT = 30.0
READY_TIMEOUT = 60.0


class DeskScript(Script):
    """The clean ceremony, with policy 1 naming Kemenperin's desk."""

    def policy_1(self) -> CustodyPolicy:
        return dataclasses.replace(super().policy_1(), complaints=INCOMING)


class Registers:
    """Telkomsel's register, Kemenperin's standby and the witness."""

    def __init__(self, work: Path, logs: Path, db_urls: dict[str, str]) -> None:
        self.cluster = Cluster(Files(work, logs), db_urls)
        self.keys: DrillKeys = make_keys(DEFAULT_ORIGIN)
        self.policy_0 = ""

    def start(self) -> None:
        cluster, keys, files = self.cluster, self.keys, self.cluster.files
        outgoing_key = write_log_key(keys, OUTGOING, files.key("telkomsel-log.pem"))
        incoming_key = write_log_key(keys, INCOMING, files.key("kemenperin-log.pem"))
        witness_keys = write_witness_keys(keys, files.key("kominfo-witness.key"))
        first = policy(keys, 0, OUTGOING, cluster.endpoint(OUTGOING), int(time.time()) + 365 * DAY)
        self.policy_0 = signed_policy_0(keys, first)
        path = files.policy(0)
        path.write_text(self.policy_0, encoding="utf-8")
        cluster.prepare_databases()
        cluster.start_outgoing(outgoing_key, path)
        cluster.start_witness(witness_keys, path)
        cluster.start_incoming(incoming_key, path, first.log_key.vkey)
        for name in (OUTGOING, "witness", INCOMING):
            cluster.wait_serving(name)

    def hand_over(self) -> Outcome:
        """Run the ceremony to the end; its outcome (``handed_over`` if all went well)."""
        cluster = self.cluster
        timeline = Timeline()
        ceremony = Ceremony(
            Side(OUTGOING, cluster.channels(OUTGOING)),
            Side(INCOMING, cluster.channels(INCOMING)),
            lambda: cluster.channel("witness", KOMINFO),
            timeline,
            OUTGOING,
            INCOMING,
        )
        script = DeskScript(
            SCENARIOS["clean"], cluster, ceremony, self.keys, timeline, self.policy_0, 0.0, Hooks()
        )
        ready = threading.Thread(target=self._report_readiness, name="readiness", daemon=True)
        ready.start()
        outcome = script.run()
        ready.join(READY_TIMEOUT)
        return outcome

    def _report_readiness(self) -> None:
        """Each operator reports it holds the announced policy 1 (as its nodes would)."""
        stub = custody_grpc.CustodyServiceStub(self.cluster.channel(OUTGOING, KOMINFO))
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            custody = stub.GetCustody(custody_pb.GetCustodyRequest(), timeout=CALL_TIMEOUT).custody
            if len(custody.policies) > 1:
                text = _text(custody.policies[1])
                for operator in OPERATORS:
                    channel = self.cluster.channel(OUTGOING, operator.name)
                    custody_grpc.CustodyServiceStub(channel).ReportReadiness(
                        custody_pb.ReportReadinessRequest(
                            policy_version=1, policy_sha256=sha256_hex(text)
                        ),
                        timeout=CALL_TIMEOUT,
                    )
                return
            time.sleep(0.2)

    def stop(self) -> None:
        self.cluster.stop()


def _text(signed: str) -> str:
    from ..drill.ceremony import note_text

    return note_text(signed)

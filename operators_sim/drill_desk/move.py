"""The register of the desk-move drill and the policy that moves the desk.

The register is one ``ceir serve`` over mutual TLS (the capacity drill's
``DrillRegister``) started with policy 0: Telkomsel the custodian, its log
key, ``complaints telkomsel`` (an operator: every operator runs its desk).
Policy 1 keeps the custodian and its key and names Kemenperin in its
``complaints`` line. Telkomsel proposes it and its officers and Kominfo's
witness sign it (the handover drill's keys, ``operators_sim.drill.keys``);
once announced it is the policy the desk follows.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from ceir.audit.keys import load_private_key
from ceir.audit.note import sign_note
from ceir.custody import CustodyPolicy
from ceir.v1 import custody_pb2 as custody_pb
from ceir.v1 import custody_pb2_grpc as custody_grpc

from ..drill.ceremony import note_text
from ..drill.keys import DAY, INCOMING, OUTGOING, THRESHOLD, DrillKeys, make_keys, policy
from ..drill.keys import signed_policy_0 as sign_policy_0
from ..drill_capacity.register import DrillRegister
from ..loader import KOMINFO
from ..verification import DEFAULT_ORIGIN

CALL_TIMEOUT = 30.0
ANNOUNCE_TIMEOUT = 30.0


def start_register(work: Path, logs: Path, db_url: str | None) -> tuple[DrillRegister, DrillKeys]:
    """The register serving under policy 0 (its keys: the drill's)."""
    register = DrillRegister(work, logs, db_url)
    keys = make_keys(DEFAULT_ORIGIN, load_private_key(register.signing_key))
    policy_0 = policy(keys, 0, OUTGOING, register.address, int(time.time()) + 365 * DAY)
    path = work / "policy-0.note"
    path.write_text(sign_policy_0(keys, policy_0), encoding="utf-8")
    register.start(["--custody-policy", str(path)])
    return register, keys


def desk_policy(keys: DrillKeys, register: DrillRegister, desk: str) -> CustodyPolicy:
    """Policy 1: the same custodian and key; ``desk`` runs the complaints desk."""
    base = policy(keys, 1, OUTGOING, register.address, int(time.time()) + 365 * DAY)
    return dataclasses.replace(base, complaints=desk)


def move_desk(register: DrillRegister, keys: DrillKeys, desk: str = INCOMING) -> custody_pb.Custody:
    """Propose and sign policy 1 (moving the desk to ``desk``); the custody
    once it is announced. RuntimeError if it is not."""
    proposed = desk_policy(keys, register, desk)

    def stub(organisation: str) -> custody_grpc.CustodyServiceStub:
        return custody_grpc.CustodyServiceStub(register.channel(organisation))

    stub(OUTGOING).ProposePolicy(
        custody_pb.ProposePolicyRequest(policy=proposed.text()), timeout=CALL_TIMEOUT
    )
    for organisation, signers in (
        (OUTGOING, keys.signers(OUTGOING, THRESHOLD)),
        (KOMINFO, (keys.witness,)),
    ):
        pending = stub(KOMINFO).GetCustody(custody_pb.GetCustodyRequest(), timeout=CALL_TIMEOUT)
        text = note_text(pending.custody.pending_document) or proposed.text()
        stub(organisation).SubmitSignature(
            custody_pb.SubmitSignatureRequest(signed_note=sign_note(text, signers)),
            timeout=CALL_TIMEOUT,
        )
    deadline = time.monotonic() + ANNOUNCE_TIMEOUT
    while True:
        custody = stub(KOMINFO).GetCustody(custody_pb.GetCustodyRequest(), timeout=CALL_TIMEOUT)
        if custody.custody.policy_version >= 1:
            return custody.custody
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"policy 1 was not announced: {custody.custody.state_name} "
                f"({custody.custody.detail})"
            )
        time.sleep(0.2)

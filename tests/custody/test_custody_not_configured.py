"""A register started without --custody-policy: GetCustody says so, the steps refuse."""

from __future__ import annotations

import grpc

from ceir.domain.custody import CustodyState
from ceir.v1 import custody_pb2 as pb

from ..helpers import Client, imei
from .ceremony import custody, error_info, refused


def test_a_register_without_a_custody_policy(clients: dict[str, Client]) -> None:
    telkomsel = clients["telkomsel"]
    now = custody(telkomsel)
    assert (now.state_name, list(now.policies)) == ("OPERATING", [])
    error = refused(telkomsel.call, telkomsel.custody.Freeze, pb.FreezeRequest())
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(error)[0] == "CUSTODY_NOT_CONFIGURED"
    clients["kemenperin"].register(imei(1))  # writes as ever


def test_custody_states_match_the_contract() -> None:
    assert {state.name: int(state) for state in CustodyState} == {
        pb.CustodyState.Name(number).removeprefix("CUSTODY_STATE_"): number
        for number in pb.CustodyState.values()
        if number
    }

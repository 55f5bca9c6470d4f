"""Thin servicers: request -> domain values -> service -> response.

No business rule lives here. These are the unary methods, each run in a
worker thread once its request is in hand (``calls.Gate.unary``); the
streaming ones are coroutines in ``streams``. A mutating RPC is a
``Mutation``: its converter builds the command (``commands``), the register
runs it (``Register.execute``), and its response is built from the result,
serialised and stored so that a retry with the same request id is answered
the same (AIP-155).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import grpc
from google.protobuf.message import Message

from ceir.domain.commands import (
    AddException,
    Command,
    RegisterDevice,
    RemoveException,
    ReportRecovered,
    ReportStolen,
    RevokeRegistration,
    UpdatePolicy,
)
from ceir.domain.identifiers import format_imei_key
from ceir.domain.model import Decision, Policy, Registration
from ceir.domain.permissions import require
from ceir.service.capacity import CapacityStatus
from ceir.service.checks import CheckQuery, CheckService
from ceir.service.policy import PolicyService
from ceir.service.range_finder import RangeFinder
from ceir.service.register import Committed, Register, Replayed, fingerprint
from ceir.service.registry import RegistryService
from ceir.service.transparency import TransparencyService
from ceir.v1 import equipment_check_pb2 as check_pb
from ceir.v1 import policy_pb2 as policy_pb
from ceir.v1 import registry_pb2 as registry_pb
from ceir.v1 import transparency_pb2 as log_pb

from . import commands, convert
from .calls import current_caller

M = TypeVar("M", bound=Message)
R = TypeVar("R")
MAX_REJECTIONS = 10_000


def fingerprint_of(request: Message) -> str:
    return fingerprint(request.SerializeToString(deterministic=True))


def answer(
    outcome: Committed[R] | Replayed, response_type: type[M], build: Callable[[Committed[R]], M]
) -> M:
    """The response for a fresh outcome, or the stored one for a replay."""
    if isinstance(outcome, Replayed):
        return response_type.FromString(outcome.response)
    return build(outcome)


def _keys_answer(response_type: type[M]) -> Callable[[Committed[tuple[int, ...]]], M]:
    """The answer of a change to a list of IMEIs: their keys and the sequence."""

    def build(done: Committed[tuple[int, ...]]) -> M:
        return response_type(
            imei_keys=[format_imei_key(k) for k in done.value], sequence=done.sequence
        )

    return build


def serialised(build: Callable[[Committed[R]], Message]) -> Callable[[Committed[R]], bytes]:
    return lambda value: build(value).SerializeToString(deterministic=True)


class MutatingRequest(Protocol):
    """What every mutating request has: an AIP-155 request id, and bytes."""

    @property
    def request_id(self) -> str: ...

    def SerializeToString(self, *, deterministic: bool = ...) -> bytes: ...


Q = TypeVar("Q", bound=MutatingRequest)


@dataclass(frozen=True)
class Mutation(Generic[Q, R, M]):
    """One mutating RPC: the command it asks for, the converter that builds
    that command from the request, and the response for a committed result."""

    command: type[Command[R]]
    convert: Callable[[Q, int], Command[R]]
    respond: Callable[[Committed[R]], M]
    response: type[M]


class Mutations:
    """Every mutating RPC's one path: converter, pipeline, response."""

    def __init__(self, register: Register) -> None:
        self.register = register

    def run(self, mutation: Mutation[Q, R, M], request: Q) -> M:
        caller = current_caller()
        # Whether the caller may act at all before what is wrong with its
        # request: an organisation that may never do this is told so first.
        require(caller, mutation.command.action)
        command = mutation.convert(request, self.register.clock.now_us())
        outcome = self.register.execute(
            caller,
            command,
            request.request_id,
            fingerprint(request.SerializeToString(deterministic=True)),
            serialised(mutation.respond),
        )
        return answer(outcome, mutation.response, mutation.respond)


def _registered(done: Committed[Registration]) -> registry_pb.RegisterDeviceResponse:
    return registry_pb.RegisterDeviceResponse(
        registration=convert.registration(done.value), sequence=done.sequence
    )


def _paired(done: Committed[tuple[int, str]]) -> registry_pb.AddExceptionResponse:
    key, imsi = done.value
    return registry_pb.AddExceptionResponse(
        imei_key=format_imei_key(key), imsi=imsi, sequence=done.sequence
    )


def _unpaired(done: Committed[None]) -> registry_pb.RemoveExceptionResponse:
    return registry_pb.RemoveExceptionResponse(sequence=done.sequence)


def _policy_set(done: Committed[Policy]) -> policy_pb.UpdatePolicyResponse:
    return policy_pb.UpdatePolicyResponse(policy=convert.policy(done.value))


REGISTER_DEVICE = Mutation(
    RegisterDevice, commands.register_device, _registered, registry_pb.RegisterDeviceResponse
)
REVOKE_REGISTRATION = Mutation(
    RevokeRegistration,
    commands.revoke_registration,
    _keys_answer(registry_pb.RevokeRegistrationResponse),
    registry_pb.RevokeRegistrationResponse,
)
REPORT_STOLEN = Mutation(
    ReportStolen,
    commands.report_stolen,
    _keys_answer(registry_pb.ReportStolenResponse),
    registry_pb.ReportStolenResponse,
)
REPORT_RECOVERED = Mutation(
    ReportRecovered,
    commands.report_recovered,
    _keys_answer(registry_pb.ReportRecoveredResponse),
    registry_pb.ReportRecoveredResponse,
)
ADD_EXCEPTION = Mutation(
    AddException, commands.add_exception, _paired, registry_pb.AddExceptionResponse
)
REMOVE_EXCEPTION = Mutation(
    RemoveException, commands.remove_exception, _unpaired, registry_pb.RemoveExceptionResponse
)
UPDATE_POLICY = Mutation(
    UpdatePolicy, commands.update_policy, _policy_set, policy_pb.UpdatePolicyResponse
)


class EquipmentCheckServicer:
    def __init__(self, checks: CheckService) -> None:
        self.checks = checks

    def CheckEquipment(
        self, request: check_pb.CheckEquipmentRequest, context: grpc.ServicerContext
    ) -> check_pb.CheckEquipmentResponse:
        query = CheckQuery(request.imei, request.imsi, request.msisdn)
        return convert.decision(self.checks.check(current_caller(), query))

    def CheckEquipmentBatch(
        self, request: check_pb.CheckEquipmentBatchRequest, context: grpc.ServicerContext
    ) -> check_pb.CheckEquipmentBatchResponse:
        queries = [CheckQuery(c.imei, c.imsi, c.msisdn) for c in request.checks]
        return _batch_response(self.checks.check_many(current_caller(), queries))

    # Tried on the event loop first (``calls.Gate.unary``): the checks that
    # write nothing, which are nearly all, then skip the hop to a worker;
    # None, or the rest of the work, goes to one.

    def check_at_once(
        self, request: check_pb.CheckEquipmentRequest
    ) -> check_pb.CheckEquipmentResponse | None:
        query = CheckQuery(request.imei, request.imsi, request.msisdn)
        decision = self.checks.decide_at_once(current_caller(), query)
        return None if decision is None else convert.decision(decision)

    def check_batch_at_once(
        self, request: check_pb.CheckEquipmentBatchRequest
    ) -> check_pb.CheckEquipmentBatchResponse | Callable[[], Message]:
        # Plain tuples: the fields of a CheckQuery, without a thousand constructor calls.
        queries = [(c.imei, c.imsi, c.msisdn) for c in request.checks]
        caller = current_caller()
        decided = self.checks.decide_many_at_once(caller, queries)
        if not decided.pending:
            return _batch_response(decided.decisions)
        # The writing part, in a worker: the decisions are not made twice.
        return lambda: _batch_response(self.checks.record(caller, decided))


def _batch_response(decisions: list[Decision]) -> check_pb.CheckEquipmentBatchResponse:
    response = check_pb.CheckEquipmentBatchResponse()
    convert.fill_decisions(response.results, decisions)
    return response


class RegistryServicer:
    def __init__(self, registry: RegistryService, mutations: Mutations) -> None:
        self.registry = registry
        self.mutations = mutations
        register = registry.register
        self.ranges = RangeFinder(register, register.seen)

    def RegisterDevice(
        self, request: registry_pb.RegisterDeviceRequest, context: grpc.ServicerContext
    ) -> registry_pb.RegisterDeviceResponse:
        return self.mutations.run(REGISTER_DEVICE, request)

    def RevokeRegistration(
        self, request: registry_pb.RevokeRegistrationRequest, context: grpc.ServicerContext
    ) -> registry_pb.RevokeRegistrationResponse:
        return self.mutations.run(REVOKE_REGISTRATION, request)

    def ReportStolen(
        self, request: registry_pb.ReportStolenRequest, context: grpc.ServicerContext
    ) -> registry_pb.ReportStolenResponse:
        return self.mutations.run(REPORT_STOLEN, request)

    def ReportRecovered(
        self, request: registry_pb.ReportRecoveredRequest, context: grpc.ServicerContext
    ) -> registry_pb.ReportRecoveredResponse:
        return self.mutations.run(REPORT_RECOVERED, request)

    def AddException(
        self, request: registry_pb.AddExceptionRequest, context: grpc.ServicerContext
    ) -> registry_pb.AddExceptionResponse:
        return self.mutations.run(ADD_EXCEPTION, request)

    def RemoveException(
        self, request: registry_pb.RemoveExceptionRequest, context: grpc.ServicerContext
    ) -> registry_pb.RemoveExceptionResponse:
        return self.mutations.run(REMOVE_EXCEPTION, request)

    def ListNotifications(
        self, request: registry_pb.ListNotificationsRequest, context: grpc.ServicerContext
    ) -> registry_pb.ListNotificationsResponse:
        rows, token = self.registry.list_notifications(
            current_caller(), request.page_size, request.page_token
        )
        return registry_pb.ListNotificationsResponse(
            notifications=[convert.notification(n) for n in rows], next_page_token=token
        )

    def GetImeiRecord(
        self, request: registry_pb.GetImeiRecordRequest, context: grpc.ServicerContext
    ) -> registry_pb.GetImeiRecordResponse:
        record = self.registry.imei_record(
            current_caller(), request.imei, request.page_size, request.page_token
        )
        response = convert.imei_record(record)
        register = self.registry.register
        response.capacity.CopyFrom(_capacity(register.limits.status(register.state)))
        return response

    def FindRangeUploads(
        self, request: registry_pb.FindRangeUploadsRequest, context: grpc.ServicerContext
    ) -> registry_pb.FindRangeUploadsResponse:
        found = self.ranges.find(
            current_caller(), request.min_run, request.page_size, request.page_token
        )
        response = registry_pb.FindRangeUploadsResponse(
            ranges=[
                registry_pb.RangeUpload(
                    registered_by=r.registered_by,
                    reference=r.reference,
                    first_imei_key=format_imei_key(r.first_key),
                    last_imei_key=format_imei_key(r.last_key),
                    imeis=r.imeis,
                )
                for r in found.ranges
            ],
            next_page_token=found.next_page_token,
            checks_observed=found.checks_observed,
            total_imeis=found.total_imeis,
            capacity=_capacity(found.capacity),
        )
        response.observed_since.FromMicroseconds(found.observed_since_us)
        return response


def _capacity(status: CapacityStatus) -> registry_pb.RegisterCapacity:
    return registry_pb.RegisterCapacity(
        used=status.used, limit=status.limit or 0, near_limit=status.near_limit
    )


def chunk_response(done: Committed[Any]) -> registry_pb.ImportRegistrationsResponse:
    result = done.value
    return registry_pb.ImportRegistrationsResponse(
        rows_received=result.rows_received,
        rows_accepted=result.rows_accepted,
        rows_rejected=result.rows_rejected,
        sequence=result.sequence,
        rejections=[
            registry_pb.ImportRejection(row=r.row, field=r.field, description=r.description)
            for r in result.rejections
        ],
    )


class PolicyServicer:
    def __init__(self, policies: PolicyService, mutations: Mutations) -> None:
        self.policies = policies
        self.mutations = mutations

    def GetPolicy(
        self, request: policy_pb.GetPolicyRequest, context: grpc.ServicerContext
    ) -> policy_pb.GetPolicyResponse:
        return policy_pb.GetPolicyResponse(
            policy=convert.policy(self.policies.policy(current_caller()))
        )

    def UpdatePolicy(
        self, request: policy_pb.UpdatePolicyRequest, context: grpc.ServicerContext
    ) -> policy_pb.UpdatePolicyResponse:
        return self.mutations.run(UPDATE_POLICY, request)


class TransparencyServicer:
    def __init__(self, transparency: TransparencyService) -> None:
        self.transparency = transparency

    def GetCheckpoint(
        self, request: log_pb.GetCheckpointRequest, context: grpc.ServicerContext
    ) -> log_pb.GetCheckpointResponse:
        size, note = self.transparency.checkpoint(current_caller())
        return log_pb.GetCheckpointResponse(checkpoint=note, tree_size=size)

    def GetInclusionProof(
        self, request: log_pb.GetInclusionProofRequest, context: grpc.ServicerContext
    ) -> log_pb.GetInclusionProofResponse:
        proof = self.transparency.inclusion_proof(
            current_caller(), request.sequence, request.tree_size
        )
        return log_pb.GetInclusionProofResponse(
            leaf_index=proof.leaf_index,
            tree_size=proof.tree_size,
            hashes=proof.hashes,
            checkpoint=proof.checkpoint,
        )

    def GetConsistencyProof(
        self, request: log_pb.GetConsistencyProofRequest, context: grpc.ServicerContext
    ) -> log_pb.GetConsistencyProofResponse:
        proof = self.transparency.consistency_proof(
            current_caller(), request.first_size, request.second_size
        )
        return log_pb.GetConsistencyProofResponse(
            first_size=proof.first_size,
            second_size=proof.second_size,
            hashes=proof.hashes,
            checkpoint=proof.checkpoint,
        )

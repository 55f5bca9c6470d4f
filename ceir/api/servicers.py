"""Thin servicers: request -> domain values -> service -> response.

No business rule lives here. These are the unary methods, each run in a
worker thread once its request is in hand (``calls.Gate.unary``); the
streaming ones are coroutines in ``streams``. Mutations pass a ``render`` function so that
the first answer to a request id can be stored and replayed (AIP-155).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from ceir.domain.errors import FieldViolation, InvalidArgument
from ceir.domain.identifiers import format_imei_key
from ceir.domain.model import Decision
from ceir.domain.validation import device_registration
from ceir.service.checks import CheckQuery, CheckService
from ceir.service.imports import ImportRow
from ceir.service.policy import POLICY_FIELDS, PolicyService
from ceir.service.register import Committed, Replayed, fingerprint
from ceir.service.registry import RegistryService
from ceir.service.transparency import TransparencyService
from ceir.v1 import equipment_check_pb2 as check_pb
from ceir.v1 import policy_pb2 as policy_pb
from ceir.v1 import registry_pb2 as registry_pb
from ceir.v1 import transparency_pb2 as log_pb

from . import convert
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


def _keys_answer(response_type: type[M]) -> Callable[[Committed[list[int]]], M]:
    """The answer of a change to a list of IMEIs: their keys and the sequence."""

    def build(done: Committed[list[int]]) -> M:
        return response_type(
            imei_keys=[format_imei_key(k) for k in done.value], sequence=done.sequence
        )

    return build


def serialised(build: Callable[[Committed[R]], Message]) -> Callable[[Committed[R]], bytes]:
    return lambda value: build(value).SerializeToString(deterministic=True)


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
        queries = [CheckQuery(c.imei, c.imsi, c.msisdn) for c in request.checks]
        caller = current_caller()
        decided = self.checks.decide_many_at_once(caller, queries)
        if not decided.pending:
            return _batch_response(decided.decisions)
        # The writing part, in a worker: the decisions are not made twice.
        return lambda: _batch_response(self.checks.record(caller, decided))


def _batch_response(decisions: list[Decision]) -> check_pb.CheckEquipmentBatchResponse:
    response = check_pb.CheckEquipmentBatchResponse()
    results = response.results
    for decision in decisions:
        convert.fill_decision(results.add(), decision)
    return response


class RegistryServicer:
    def __init__(self, registry: RegistryService) -> None:
        self.registry = registry

    def RegisterDevice(
        self, request: registry_pb.RegisterDeviceRequest, context: grpc.ServicerContext
    ) -> registry_pb.RegisterDeviceResponse:
        if not request.HasField("device"):
            raise InvalidArgument.field("device", "a device is required")
        device = request.device
        found: list[FieldViolation] = []
        value = device_registration(
            imeis=list(device.imeis),
            source=device.source,
            reference=device.reference,
            valid_until_us=convert.request_micros(
                device.valid_until, device.HasField("valid_until"), "device.valid_until", found
            ),
            brand=device.brand,
            model=device.model,
            now_us=self.registry.register.clock.now_us(),
            found=found,
        )

        def build(done: Committed[Any]) -> registry_pb.RegisterDeviceResponse:
            return registry_pb.RegisterDeviceResponse(
                registration=convert.registration(done.value), sequence=done.sequence
            )

        outcome = self.registry.register_device(
            current_caller(), request.request_id, fingerprint_of(request), value, serialised(build)
        )
        return answer(outcome, registry_pb.RegisterDeviceResponse, build)

    def RevokeRegistration(
        self, request: registry_pb.RevokeRegistrationRequest, context: grpc.ServicerContext
    ) -> registry_pb.RevokeRegistrationResponse:
        build = _keys_answer(registry_pb.RevokeRegistrationResponse)
        outcome = self.registry.revoke(
            current_caller(),
            request.request_id,
            fingerprint_of(request),
            list(request.imeis),
            request.reason,
            serialised(build),
        )
        return answer(outcome, registry_pb.RevokeRegistrationResponse, build)

    def ReportStolen(
        self, request: registry_pb.ReportStolenRequest, context: grpc.ServicerContext
    ) -> registry_pb.ReportStolenResponse:
        build = _keys_answer(registry_pb.ReportStolenResponse)
        outcome = self.registry.report_stolen(
            current_caller(),
            request.request_id,
            fingerprint_of(request),
            list(request.imeis),
            request.police_report,
            request.subscriber_imsi,
            serialised(build),
        )
        return answer(outcome, registry_pb.ReportStolenResponse, build)

    def ReportRecovered(
        self, request: registry_pb.ReportRecoveredRequest, context: grpc.ServicerContext
    ) -> registry_pb.ReportRecoveredResponse:
        build = _keys_answer(registry_pb.ReportRecoveredResponse)
        outcome = self.registry.report_recovered(
            current_caller(),
            request.request_id,
            fingerprint_of(request),
            list(request.imeis),
            request.police_report,
            serialised(build),
        )
        return answer(outcome, registry_pb.ReportRecoveredResponse, build)

    def AddException(
        self, request: registry_pb.AddExceptionRequest, context: grpc.ServicerContext
    ) -> registry_pb.AddExceptionResponse:
        def build(done: Committed[tuple[int, str]]) -> registry_pb.AddExceptionResponse:
            key, imsi = done.value
            return registry_pb.AddExceptionResponse(
                imei_key=format_imei_key(key), imsi=imsi, sequence=done.sequence
            )

        outcome = self.registry.add_exception(
            current_caller(),
            request.request_id,
            fingerprint_of(request),
            request.imei,
            request.imsi,
            request.reason,
            serialised(build),
        )
        return answer(outcome, registry_pb.AddExceptionResponse, build)

    def RemoveException(
        self, request: registry_pb.RemoveExceptionRequest, context: grpc.ServicerContext
    ) -> registry_pb.RemoveExceptionResponse:
        def build(done: Committed[int]) -> registry_pb.RemoveExceptionResponse:
            return registry_pb.RemoveExceptionResponse(sequence=done.sequence)

        outcome = self.registry.remove_exception(
            current_caller(),
            request.request_id,
            fingerprint_of(request),
            request.imei,
            request.imsi,
            serialised(build),
        )
        return answer(outcome, registry_pb.RemoveExceptionResponse, build)

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
        return convert.imei_record(record)


def import_row(row: registry_pb.ImportRow) -> ImportRow:
    device = row.device
    found: list[FieldViolation] = []
    valid_until_us = convert.request_micros(
        device.valid_until, device.HasField("valid_until"), "device.valid_until", found
    )
    return ImportRow(
        row=row.row,
        imeis=list(device.imeis),
        source=device.source,
        reference=device.reference,
        valid_until_us=valid_until_us,
        brand=device.brand,
        model=device.model,
        found=tuple(found),
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
    def __init__(self, policies: PolicyService) -> None:
        self.policies = policies

    def GetPolicy(
        self, request: policy_pb.GetPolicyRequest, context: grpc.ServicerContext
    ) -> policy_pb.GetPolicyResponse:
        return policy_pb.GetPolicyResponse(
            policy=convert.policy(self.policies.policy(current_caller()))
        )

    def UpdatePolicy(
        self, request: policy_pb.UpdatePolicyRequest, context: grpc.ServicerContext
    ) -> policy_pb.UpdatePolicyResponse:
        values: dict[str, int] = {}
        violations: list[FieldViolation] = []
        for path in request.update_mask.paths:
            if path in POLICY_FIELDS:
                values[path] = int(getattr(request.policy, path))
            else:
                violations.append(
                    FieldViolation(
                        "update_mask", f"cannot change {path!r}; one of {', '.join(POLICY_FIELDS)}"
                    )
                )
        if violations:
            raise InvalidArgument(violations[0].description, violations=violations)

        def build(done: Committed[Any]) -> policy_pb.UpdatePolicyResponse:
            return policy_pb.UpdatePolicyResponse(policy=convert.policy(done.value))

        outcome = self.policies.update(
            current_caller(), request.request_id, fingerprint_of(request), values, serialised(build)
        )
        return answer(outcome, policy_pb.UpdatePolicyResponse, build)


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

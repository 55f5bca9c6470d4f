"""Thin servicers: request -> domain values -> service -> response.

No business rule lives here. Mutations pass a ``render`` function so that
the first answer to a request id can be stored and replayed (AIP-155).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from ceir.domain.errors import FieldViolation, InvalidArgument
from ceir.domain.identifiers import format_imei_key
from ceir.domain.validation import device_registration
from ceir.service.checks import CheckQuery, CheckService
from ceir.service.imports import MAX_CHUNK_ROWS, ImportRow, ImportService
from ceir.service.policy import POLICY_FIELDS, PolicyService
from ceir.service.register import Committed, Replayed, fingerprint
from ceir.service.registry import RegistryService
from ceir.service.sync import SyncService
from ceir.service.transparency import TransparencyService
from ceir.v1 import equipment_check_pb2 as check_pb
from ceir.v1 import equipment_check_pb2_grpc as check_grpc
from ceir.v1 import list_sync_pb2 as sync_pb
from ceir.v1 import list_sync_pb2_grpc as sync_grpc
from ceir.v1 import policy_pb2 as policy_pb
from ceir.v1 import policy_pb2_grpc as policy_grpc
from ceir.v1 import registry_pb2 as registry_pb
from ceir.v1 import registry_pb2_grpc as registry_grpc
from ceir.v1 import transparency_pb2 as log_pb
from ceir.v1 import transparency_pb2_grpc as log_grpc

from . import convert
from .interceptor import current_caller

M = TypeVar("M", bound=Message)
R = TypeVar("R")
MAX_REJECTIONS = 10_000


def _fingerprint(request: Message) -> str:
    return fingerprint(request.SerializeToString(deterministic=True))


def _answer(
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


def _serialised(build: Callable[[Committed[R]], Message]) -> Callable[[Committed[R]], bytes]:
    return lambda value: build(value).SerializeToString(deterministic=True)


class EquipmentCheckServicer(check_grpc.EquipmentCheckServiceServicer):
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
        decisions = self.checks.check_many(current_caller(), queries)
        response = check_pb.CheckEquipmentBatchResponse()
        results = response.results
        for decision in decisions:
            convert.fill_decision(results.add(), decision)
        return response

    def CheckEquipmentStream(
        self,
        request_iterator: Iterator[check_pb.CheckEquipmentStreamRequest],
        context: grpc.ServicerContext,
    ) -> Iterator[check_pb.CheckEquipmentStreamResponse]:
        caller = current_caller()
        self.checks.authorize(caller)
        for request in request_iterator:
            check = request.check
            answer = check_pb.CheckEquipmentStreamResponse(correlation_id=request.correlation_id)
            try:
                decision = self.checks.check(
                    caller, CheckQuery(check.imei, check.imsi, check.msisdn)
                )
                convert.fill_decision(answer.result, decision)
            except InvalidArgument as error:  # one bad check does not end the stream
                answer.error_message = error.message
            yield answer


class RegistryServicer(registry_grpc.RegistryServiceServicer):
    def __init__(self, registry: RegistryService, imports: ImportService) -> None:
        self.registry = registry
        self.imports = imports

    def RegisterDevice(
        self, request: registry_pb.RegisterDeviceRequest, context: grpc.ServicerContext
    ) -> registry_pb.RegisterDeviceResponse:
        if not request.HasField("device"):
            raise InvalidArgument.field("device", "a device is required")
        device = request.device
        value = device_registration(
            imeis=list(device.imeis),
            source=device.source,
            reference=device.reference,
            valid_until_us=convert.micros(device.valid_until, device.HasField("valid_until")),
            brand=device.brand,
            model=device.model,
            now_us=self.registry.register.clock.now_us(),
        )

        def build(done: Committed[Any]) -> registry_pb.RegisterDeviceResponse:
            return registry_pb.RegisterDeviceResponse(
                registration=convert.registration(done.value), sequence=done.sequence
            )

        outcome = self.registry.register_device(
            current_caller(), request.request_id, _fingerprint(request), value, _serialised(build)
        )
        return _answer(outcome, registry_pb.RegisterDeviceResponse, build)

    def RevokeRegistration(
        self, request: registry_pb.RevokeRegistrationRequest, context: grpc.ServicerContext
    ) -> registry_pb.RevokeRegistrationResponse:
        build = _keys_answer(registry_pb.RevokeRegistrationResponse)
        outcome = self.registry.revoke(
            current_caller(),
            request.request_id,
            _fingerprint(request),
            list(request.imeis),
            request.reason,
            _serialised(build),
        )
        return _answer(outcome, registry_pb.RevokeRegistrationResponse, build)

    def ReportStolen(
        self, request: registry_pb.ReportStolenRequest, context: grpc.ServicerContext
    ) -> registry_pb.ReportStolenResponse:
        build = _keys_answer(registry_pb.ReportStolenResponse)
        outcome = self.registry.report_stolen(
            current_caller(),
            request.request_id,
            _fingerprint(request),
            list(request.imeis),
            request.police_report,
            request.subscriber_imsi,
            _serialised(build),
        )
        return _answer(outcome, registry_pb.ReportStolenResponse, build)

    def ReportRecovered(
        self, request: registry_pb.ReportRecoveredRequest, context: grpc.ServicerContext
    ) -> registry_pb.ReportRecoveredResponse:
        build = _keys_answer(registry_pb.ReportRecoveredResponse)
        outcome = self.registry.report_recovered(
            current_caller(),
            request.request_id,
            _fingerprint(request),
            list(request.imeis),
            request.police_report,
            _serialised(build),
        )
        return _answer(outcome, registry_pb.ReportRecoveredResponse, build)

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
            _fingerprint(request),
            request.imei,
            request.imsi,
            request.reason,
            _serialised(build),
        )
        return _answer(outcome, registry_pb.AddExceptionResponse, build)

    def RemoveException(
        self, request: registry_pb.RemoveExceptionRequest, context: grpc.ServicerContext
    ) -> registry_pb.RemoveExceptionResponse:
        def build(done: Committed[int]) -> registry_pb.RemoveExceptionResponse:
            return registry_pb.RemoveExceptionResponse(sequence=done.sequence)

        outcome = self.registry.remove_exception(
            current_caller(),
            request.request_id,
            _fingerprint(request),
            request.imei,
            request.imsi,
            _serialised(build),
        )
        return _answer(outcome, registry_pb.RemoveExceptionResponse, build)

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
        return convert.imei_record(self.registry.imei_record(current_caller(), request.imei))

    def ImportRegistrations(
        self,
        request_iterator: Iterator[registry_pb.ImportRegistrationsRequest],
        context: grpc.ServicerContext,
    ) -> registry_pb.ImportRegistrationsResponse:
        caller = current_caller()
        total = registry_pb.ImportRegistrationsResponse()
        request_id = ""
        for number, chunk in enumerate(request_iterator):
            if number == 0:
                request_id = chunk.request_id
            if len(chunk.rows) > MAX_CHUNK_ROWS:
                raise InvalidArgument.field(
                    "rows", f"at most {MAX_CHUNK_ROWS} rows per message, got {len(chunk.rows)}"
                )
            rows = [_import_row(row) for row in chunk.rows]
            outcome = self.imports.import_chunk(
                caller, request_id, number, _fingerprint(chunk), rows, _serialised(_chunk_response)
            )
            part = _answer(outcome, registry_pb.ImportRegistrationsResponse, _chunk_response)
            total.rows_received += part.rows_received
            total.rows_accepted += part.rows_accepted
            total.rows_rejected += part.rows_rejected
            room = MAX_REJECTIONS - len(total.rejections)
            total.rejections.extend(part.rejections[: max(room, 0)])
            total.sequence = max(total.sequence, part.sequence)
        if not total.sequence:
            total.sequence = self._sequence()
        return total

    def _sequence(self) -> int:
        return self.registry.register.state.sequence


def _import_row(row: registry_pb.ImportRow) -> ImportRow:
    device = row.device
    return ImportRow(
        row=row.row,
        imeis=list(device.imeis),
        source=device.source,
        reference=device.reference,
        valid_until_us=convert.micros(device.valid_until, device.HasField("valid_until")),
        brand=device.brand,
        model=device.model,
    )


def _chunk_response(done: Committed[Any]) -> registry_pb.ImportRegistrationsResponse:
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


class ListSyncServicer(sync_grpc.ListSyncServiceServicer):
    def __init__(self, sync: SyncService) -> None:
        self.sync = sync

    def GetSnapshot(
        self, request: sync_pb.GetSnapshotRequest, context: grpc.ServicerContext
    ) -> Iterator[sync_pb.GetSnapshotResponse]:
        for chunk in self.sync.snapshot(current_caller(), request.chunk_size):
            message = sync_pb.GetSnapshotResponse(
                sequence=chunk.sequence,
                list=_SNAPSHOT_LISTS[chunk.list_name],
                last=chunk.last,
                total_entries=chunk.total_entries,
                checkpoint=chunk.checkpoint,
            )
            if chunk.policy is not None:
                message.policy.CopyFrom(convert.policy(chunk.policy))
            message.imei_keys.extend(chunk.imei_keys)
            message.valid_until_unix.extend(chunk.valid_until_s)
            message.blacklist_causes.extend(chunk.causes)  # type: ignore[arg-type]
            message.imsis.extend(chunk.imsis)
            message.msisdns.extend(chunk.msisdns)
            message.block_dates_unix.extend(chunk.block_dates_s)
            yield message

    def WatchChanges(
        self, request: sync_pb.WatchChangesRequest, context: grpc.ServicerContext
    ) -> Iterator[sync_pb.WatchChangesResponse]:
        feed = self.sync.watch(current_caller(), request.after_sequence, context.is_active)
        for changes, head in feed:
            yield sync_pb.WatchChangesResponse(
                changes=[convert.change(c) for c in changes],
                head_sequence=head,
                checkpoint=self.sync.checkpoint_at(changes[-1].sequence),
            )


_SNAPSHOT_LISTS = {
    "whitelist": sync_pb.SNAPSHOT_LIST_WHITELIST,
    "blacklist": sync_pb.SNAPSHOT_LIST_BLACKLIST,
    "notification": sync_pb.SNAPSHOT_LIST_NOTIFICATION,
    "exception": sync_pb.SNAPSHOT_LIST_EXCEPTION,
}


class PolicyServicer(policy_grpc.PolicyServiceServicer):
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
            current_caller(), request.request_id, _fingerprint(request), values, _serialised(build)
        )
        return _answer(outcome, policy_pb.UpdatePolicyResponse, build)


class TransparencyServicer(log_grpc.TransparencyServiceServicer):
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

"""The complaints desk's servicer: request -> domain values -> desk -> response.

Mutations store their serialised answer for AIP-155 replays, as every
other mutating RPC does (``servicers.Mutations``); a resolution stores it
through ``Register.execute`` under ``ResolveComplaint``.
"""

from __future__ import annotations

import grpc

from ceir.domain.complaints import Complaint
from ceir.domain.permissions import Action, require
from ceir.service.complaints import ComplaintDesk, require_digest_allowed
from ceir.service.diagnosis import diagnose
from ceir.service.register import Replayed
from ceir.v1 import complaints_pb2 as pb

from . import complaint_requests as convert
from .calls import current_caller
from .servicers import fingerprint_of


class ComplaintServicer:
    def __init__(self, desk: ComplaintDesk) -> None:
        self.desk = desk

    def FileComplaint(
        self, request: pb.FileComplaintRequest, context: grpc.ServicerContext
    ) -> pb.FileComplaintResponse:
        caller = current_caller()
        # May the caller file at all, before what is wrong with its request.
        require(caller, Action.FILE_COMPLAINTS)
        filed = self.desk.file(
            caller,
            convert.filing(request),
            request.request_id,
            fingerprint_of(request),
            lambda c: _filed(c).SerializeToString(deterministic=True),
        )
        if isinstance(filed, Replayed):
            return pb.FileComplaintResponse.FromString(filed.response)
        return _filed(filed)

    def GetComplaint(
        self, request: pb.GetComplaintRequest, context: grpc.ServicerContext
    ) -> pb.GetComplaintResponse:
        caller = current_caller()
        require(caller, Action.READ_COMPLAINTS)
        found = self.desk.get(caller, convert.tracking_number(request.tracking_id))
        return pb.GetComplaintResponse(complaint=convert.complaint(found))

    def ListComplaints(
        self, request: pb.ListComplaintsRequest, context: grpc.ServicerContext
    ) -> pb.ListComplaintsResponse:
        caller = current_caller()
        require(caller, Action.READ_COMPLAINTS)
        if request.include_digest:
            require_digest_allowed(caller)  # before any page is read
        state = convert.state_filter(request.state)
        rows, token, missed = self.desk.list(caller, state, request.page_size, request.page_token)
        response = pb.ListComplaintsResponse(
            complaints=[convert.complaint(c) for c in rows],
            next_page_token=token,
            deadlines_missed=missed,
        )
        if request.include_digest and not token:  # the last page
            response.total_size, response.digest = self.desk.summary(caller, state)
        return response

    def UpdateComplaint(
        self, request: pb.UpdateComplaintRequest, context: grpc.ServicerContext
    ) -> pb.UpdateComplaintResponse:
        caller = current_caller()
        require(caller, Action.WORK_COMPLAINTS)
        number, target, note = convert.update_target(request)
        updated = self.desk.update(
            caller,
            number,
            target,
            note,
            request.request_id,
            fingerprint_of(request),
            lambda c: _updated(c).SerializeToString(deterministic=True),
        )
        if isinstance(updated, Replayed):
            return pb.UpdateComplaintResponse.FromString(updated.response)
        return _updated(updated)

    def ResolveComplaint(
        self, request: pb.ResolveComplaintRequest, context: grpc.ServicerContext
    ) -> pb.ResolveComplaintResponse:
        caller = current_caller()
        require(caller, Action.WORK_COMPLAINTS)
        resolution = convert.resolution(request, self.desk.register.clock.now_us())
        outcome = self.desk.resolve(
            caller,
            resolution,
            request.request_id,
            fingerprint_of(request),
            lambda c, sequence: _resolved(c, sequence).SerializeToString(deterministic=True),
        )
        if isinstance(outcome, Replayed):
            return pb.ResolveComplaintResponse.FromString(outcome.response)
        return _resolved(*outcome)

    def DiagnoseImei(
        self, request: pb.DiagnoseImeiRequest, context: grpc.ServicerContext
    ) -> pb.DiagnoseImeiResponse:
        caller = current_caller()
        require(caller, Action.CHECK)
        found = diagnose(
            self.desk.register,
            caller,
            request.imei,
            request.imsi,
            request.page_size,
            request.page_token,
        )
        return convert.diagnosis(found)


def _filed(value: Complaint) -> pb.FileComplaintResponse:
    return pb.FileComplaintResponse(complaint=convert.complaint(value))


def _updated(value: Complaint) -> pb.UpdateComplaintResponse:
    return pb.UpdateComplaintResponse(complaint=convert.complaint(value))


def _resolved(value: Complaint, sequence: int) -> pb.ResolveComplaintResponse:
    return pb.ResolveComplaintResponse(complaint=convert.complaint(value), sequence=sequence)

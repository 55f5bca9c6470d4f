"""The ``ComplaintService`` calls a desk makes, as one organisation.

Every write carries a request id derived from the complaint and the step,
so a call whose answer was lost is sent again with the same id and the
register answers it as it did the first time (AIP-155). A refusal comes
back as ``Refused`` with its status code, ErrorInfo reason and metadata
(``owner`` on NOT_DESK_OWNER).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from ceir.v1 import complaints_pb2 as complaints_pb
from ceir.v1 import complaints_pb2_grpc as complaints_grpc

from ..transport import error_details

CALL_TIMEOUT = 30.0
NOT_DESK_OWNER = "NOT_DESK_OWNER"


class Refused(Exception):
    """The register refused a desk's call."""

    def __init__(self, code: str, reason: str, metadata: dict[str, str], message: str) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.metadata = metadata
        self.message = message


def refused(error: grpc.RpcError) -> Refused:
    """A failed call as ``Refused``."""
    code = error.code() if hasattr(error, "code") else None
    reason, metadata, _ = error_details(error) if code is not None else ("", {}, None)
    message = error.details() if hasattr(error, "details") else str(error)
    return Refused(code.name if code is not None else "UNKNOWN", reason, metadata, str(message))


@dataclass
class DeskCalls:
    """``organisation``'s calls to the desk; ``channel`` gives its channel now
    (it may change when writes follow the register to a new custodian)."""

    organisation: str
    channel: Callable[[], grpc.Channel]
    metadata: tuple[tuple[str, str], ...]

    def _call(self, method: str, request: Any) -> Any:
        stub = complaints_grpc.ComplaintServiceStub(self.channel())
        try:
            return getattr(stub, method)(request, metadata=self.metadata, timeout=CALL_TIMEOUT)
        except grpc.RpcError as error:
            raise refused(error) from None

    def file(self, request: complaints_pb.FileComplaintRequest) -> complaints_pb.Complaint:
        response = self._call("FileComplaint", request)
        return response.complaint  # type: ignore[no-any-return]

    def get(self, tracking_id: str) -> complaints_pb.Complaint:
        request = complaints_pb.GetComplaintRequest(tracking_id=tracking_id)
        return self._call("GetComplaint", request).complaint  # type: ignore[no-any-return]

    def update(
        self, request_id: str, tracking_id: str, state: int, note: str
    ) -> complaints_pb.Complaint:
        request = complaints_pb.UpdateComplaintRequest(
            request_id=request_id,
            tracking_id=tracking_id,
            state=state,  # type: ignore[arg-type]
            note=note,
        )
        return self._call("UpdateComplaint", request).complaint  # type: ignore[no-any-return]

    def resolve(
        self, request: complaints_pb.ResolveComplaintRequest
    ) -> complaints_pb.ResolveComplaintResponse:
        return self._call("ResolveComplaint", request)  # type: ignore[no-any-return]

    def diagnose(self, imei: str, imsi: str = "") -> complaints_pb.DiagnoseImeiResponse:
        request = complaints_pb.DiagnoseImeiRequest(imei=imei, imsi=imsi)
        return self._call("DiagnoseImei", request)  # type: ignore[no-any-return]

    def list_all(self, state: int = 0) -> tuple[list[complaints_pb.Complaint], int]:
        """Every complaint the caller may read (in ``state``, 0 for any), and
        the register's count of missed deadlines among them."""
        complaints: list[complaints_pb.Complaint] = []
        missed = 0
        for page in self._pages(state):
            complaints.extend(page.complaints)
            missed = int(page.deadlines_missed)
        return complaints, missed

    def _pages(self, state: int) -> Iterator[complaints_pb.ListComplaintsResponse]:
        token = ""
        while True:
            request = complaints_pb.ListComplaintsRequest(
                state=state,  # type: ignore[arg-type]
                page_size=1000,
                page_token=token,
            )
            page = self._call("ListComplaints", request)
            yield page
            token = page.next_page_token
            if not token:
                return

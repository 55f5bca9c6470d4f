"""The CustodyService servicer: thin, like ``servicers``. Every call answers with the
ceremony after its effect (``Custody``); the rules are in ``ceir.service.custody*``.

A server started without ``--custody-policy`` answers GetCustody with an
OPERATING ceremony holding no policy and every other custody call with
FAILED_PRECONDITION ``CUSTODY_NOT_CONFIGURED``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from ceir.domain.custody import CustodyState, CustodyView, RemoteCustody, RetireAnswer
from ceir.domain.errors import FailedPrecondition, InvalidArgument
from ceir.domain.permissions import Action, require
from ceir.service import custody_incoming, custody_outgoing, custody_view
from ceir.service.custody import CustodyKeeper
from ceir.v1 import custody_pb2 as pb
from ceir.v1 import custody_pb2_grpc

from . import convert
from .calls import current_caller

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "CustodyServicer",
    "custody_message",
    "remote_fetch",
    "remote_retire",
]

# A policy with its signatures is a few kilobytes; a note beyond this is refused unread.
MAX_DOCUMENT_BYTES = 64 * 1024
# Transfer waits for the pull at most this long (or the call's deadline, if sooner).
MAX_TRANSFER_WAIT_SECONDS = 300.0


def custody_message(view: CustodyView) -> pb.Custody:
    """The domain view as ``ceir.v1.Custody``."""
    return pb.Custody(
        state=pb.CustodyState.ValueType(int(view.state)),
        state_name=view.state.name,
        policy_version=view.policy_version,
        policies=view.policies,
        pending_kind=view.pending_kind,
        pending_document=view.pending_document,
        ready_operators=view.ready_operators,
        waiting_operators=view.waiting_operators,
        final_size=view.final_size,
        final_checkpoint=view.final_checkpoint,
        handover=view.handover,
        first_checkpoint=view.first_checkpoint,
        custodian=view.custodian,
        endpoint=view.endpoint,
        transferred_size=view.transferred_size,
        abort_note=view.abort_note,
        announced_at=convert.timestamp(view.announced_at_us),
        notice_ends_at=convert.timestamp(view.notice_ends_at_us),
        expires_at=convert.timestamp(view.expires_at_us),
        detail=view.detail,
    )


def remote_fetch(
    channel: grpc.Channel, metadata: tuple[tuple[str, str], ...] = ()
) -> Callable[[float], RemoteCustody]:
    """Reads the custodian's ceremony over ``channel`` (the standby's, authenticated by
    the incoming organisation's client certificate, or a token in ``metadata``)."""
    stub = custody_pb2_grpc.CustodyServiceStub(channel)

    def fetch(timeout: float) -> RemoteCustody:
        try:
            # wait_for_ready: a channel still backing off from a custodian that
            # restarted reconnects within the caller's time instead of failing at once.
            custody = stub.GetCustody(
                pb.GetCustodyRequest(),
                timeout=max(timeout, 1.0),
                metadata=metadata,
                wait_for_ready=True,
            ).custody
        except grpc.RpcError as error:
            raise FailedPrecondition(
                f"cannot read the custodian's ceremony: {error.code().name} {error.details()}",
                reason="CUSTODIAN_UNREACHABLE",
                retry_after=1.0,
            ) from None
        try:
            state = CustodyState(custody.state)
        except ValueError:
            raise FailedPrecondition(
                f"the custodian reports an unknown state {custody.state}",
                reason="CUSTODIAN_UNREACHABLE",
            ) from None
        return RemoteCustody(
            state=state,
            policies=tuple(custody.policies),
            final_size=custody.final_size,
            final_checkpoint=custody.final_checkpoint,
            handover=custody.handover,
        )

    return fetch


def remote_retire(
    channel: grpc.Channel, metadata: tuple[tuple[str, str], ...] = ()
) -> Callable[[str, str, Sequence[bytes], float], RetireAnswer]:
    """Asks the custodian over ``channel`` (as ``remote_fetch``) to retire, with the
    handover note, the cosigned first checkpoint and the consistency proof from N."""
    stub = custody_pb2_grpc.CustodyServiceStub(channel)

    def retire(
        handover: str, first_checkpoint: str, proof: Sequence[bytes], timeout: float
    ) -> RetireAnswer:
        request = pb.RetireRequest(
            handover=handover, first_checkpoint=first_checkpoint, consistency_proof=proof
        )
        try:
            custody = stub.Retire(
                request, timeout=max(timeout, 1.0), metadata=metadata, wait_for_ready=True
            ).custody
        except grpc.RpcError as error:
            reason, details = _error_info(error)
            message = f"{error.code().name} {reason} {error.details()}"
            if reason == "WRONG_STATE" and details.get("state") in CustodyState.__members__:
                return RetireAnswer(CustodyState[details["state"]], reason, message)
            return RetireAnswer(None, reason or error.code().name, message)
        try:
            return RetireAnswer(CustodyState(custody.state))
        except ValueError:
            return RetireAnswer(None, "UNKNOWN_STATE", f"state {custody.state}")

    return retire


def _error_info(error: grpc.RpcError) -> tuple[str, dict[str, str]]:
    """The ErrorInfo reason and metadata of a failed call ("" and {} without one)."""
    try:
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
    except (ValueError, AttributeError):
        return "", {}
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason, dict(info.metadata)
    return "", {}


def _bounded(field: str, value: str) -> str:
    if len(value.encode()) > MAX_DOCUMENT_BYTES:
        raise InvalidArgument.field(
            field, f"at most {MAX_DOCUMENT_BYTES} bytes", reason="DOCUMENT_TOO_LARGE"
        )
    return value


def _notice_seconds(request: pb.ProposePolicyRequest) -> int:
    if not request.HasField("notice"):
        return 0
    notice = request.notice
    if notice.seconds < 0 or notice.nanos < 0 or notice.nanos >= 1_000_000_000:
        raise InvalidArgument.field("notice", "a duration of 0 or more")
    return notice.seconds + (1 if notice.nanos else 0)  # whole seconds, rounded up


class CustodyServicer:
    def __init__(self, keeper: CustodyKeeper | None) -> None:
        self.keeper = keeper

    def _keeper(self) -> CustodyKeeper:
        require(current_caller(), Action.CUSTODY)
        if self.keeper is None:
            raise FailedPrecondition(
                "this register runs without a custody policy (ceir serve --custody-policy FILE)",
                reason="CUSTODY_NOT_CONFIGURED",
            )
        return self.keeper

    def _custody(self) -> pb.Custody:
        keeper = self._keeper()
        return custody_message(custody_view.describe(keeper, keeper.load()))

    def GetCustody(self, request: pb.GetCustodyRequest, context: Any) -> pb.GetCustodyResponse:
        caller = current_caller()
        if self.keeper is None:
            require(caller, Action.CUSTODY)
            return pb.GetCustodyResponse(
                custody=pb.Custody(
                    state=pb.CUSTODY_STATE_OPERATING,
                    state_name="OPERATING",
                    detail="this register runs without a custody policy",
                )
            )
        return pb.GetCustodyResponse(
            custody=custody_message(custody_view.view(self.keeper, caller))
        )

    def ProposePolicy(
        self, request: pb.ProposePolicyRequest, context: Any
    ) -> pb.ProposePolicyResponse:
        keeper = self._keeper()
        policy = _bounded("policy", request.policy)
        custody_outgoing.propose(keeper, current_caller(), policy, _notice_seconds(request))
        return pb.ProposePolicyResponse(custody=self._custody())

    def SubmitSignature(
        self, request: pb.SubmitSignatureRequest, context: Any
    ) -> pb.SubmitSignatureResponse:
        keeper = self._keeper()
        note = _bounded("signed_note", request.signed_note)
        custody_outgoing.submit_signature(keeper, current_caller(), note)
        return pb.SubmitSignatureResponse(custody=self._custody())

    def ReportReadiness(
        self, request: pb.ReportReadinessRequest, context: Any
    ) -> pb.ReportReadinessResponse:
        keeper = self._keeper()
        custody_outgoing.report_readiness(
            keeper, current_caller(), request.policy_version, request.policy_sha256
        )
        return pb.ReportReadinessResponse(custody=self._custody())

    def Freeze(self, request: pb.FreezeRequest, context: Any) -> pb.FreezeResponse:
        custody_outgoing.freeze(self._keeper(), current_caller())
        return pb.FreezeResponse(custody=self._custody())

    def SubmitCosignature(
        self, request: pb.SubmitCosignatureRequest, context: Any
    ) -> pb.SubmitCosignatureResponse:
        keeper = self._keeper()
        checkpoint = _bounded("checkpoint", request.checkpoint)
        custody_outgoing.submit_cosignature(keeper, current_caller(), checkpoint)
        return pb.SubmitCosignatureResponse(custody=self._custody())

    def Transfer(self, request: pb.TransferRequest, context: Any) -> pb.TransferResponse:
        keeper = self._keeper()
        remaining = context.time_remaining() if context is not None else None
        wait = MAX_TRANSFER_WAIT_SECONDS if remaining is None else remaining - 1.0
        wait = max(0.0, min(wait, MAX_TRANSFER_WAIT_SECONDS))
        custody_incoming.transfer(keeper, current_caller(), wait)
        return pb.TransferResponse(custody=self._custody())

    def Activate(self, request: pb.ActivateRequest, context: Any) -> pb.ActivateResponse:
        keeper = self._keeper()
        handover = _bounded("handover", request.handover)
        custody_incoming.activate(keeper, current_caller(), handover)
        return pb.ActivateResponse(custody=self._custody())

    def Retire(self, request: pb.RetireRequest, context: Any) -> pb.RetireResponse:
        keeper = self._keeper()
        handover = _bounded("handover", request.handover)
        first = _bounded("first_checkpoint", request.first_checkpoint)
        if len(request.consistency_proof) > 128:
            raise InvalidArgument.field("consistency_proof", "at most 128 hashes")
        custody_incoming.retire(
            keeper, current_caller(), handover, first, list(request.consistency_proof)
        )
        return pb.RetireResponse(custody=self._custody())

    def Abort(self, request: pb.AbortRequest, context: Any) -> pb.AbortResponse:
        keeper = self._keeper()
        note = _bounded("abort_note", request.abort_note)
        custody_outgoing.abort(keeper, current_caller(), note)
        return pb.AbortResponse(custody=self._custody())

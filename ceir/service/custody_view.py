"""The ceremony as GetCustody reports it: the state, the chain, the documents, who is
ready, and where writes go."""

from __future__ import annotations

from ceir.domain.custody import ABORTABLE, CustodyState, CustodyView
from ceir.domain.model import Caller
from ceir.domain.permissions import Action, require

from .custody import MICROS, CustodyKeeper, Loaded

__all__ = ["describe", "view"]


def view(keeper: CustodyKeeper, caller: Caller) -> CustodyView:
    """The ceremony as GetCustody reports it."""
    require(caller, Action.CUSTODY)
    keeper.catch_up()
    return describe(keeper, keeper.load())


def describe(keeper: CustodyKeeper, loaded: Loaded) -> CustodyView:
    """The ceremony of ``loaded`` as reported; where writes go: the custodian in
    charge, the new one once retired, the followed one for a standby."""
    ceremony, current, following = loaded.ceremony, loaded.current, loaded.following
    ready: tuple[str, ...] = ()
    waiting: tuple[str, ...] = ()
    if following is not None and ceremony.state in ABORTABLE:
        ready_now, waiting_now = keeper.readiness(following)
        ready, waiting = tuple(ready_now), tuple(waiting_now)
    custodian, endpoint = current.custodian, current.endpoint
    if ceremony.state is CustodyState.RETIRED:
        custodian, endpoint = ceremony.moved_custodian, ceremony.moved_endpoint
    elif ceremony.state in (CustodyState.STANDBY, CustodyState.TRANSFERRED):
        endpoint = keeper.standby_endpoint or endpoint
    pending = keeper.pending_policy(loaded)
    expiring = following if following is not None else pending
    transferred = ceremony.transferred_size
    if ceremony.state is CustodyState.STANDBY:
        transferred = keeper.register.log.size
    return CustodyView(
        state=ceremony.state,
        policy_version=len(loaded.chain) - 1,
        policies=loaded.notes,
        pending_kind=ceremony.pending_kind.value,
        pending_document=ceremony.pending_document,
        ready_operators=ready,
        waiting_operators=waiting,
        final_size=ceremony.final_size,
        final_checkpoint=ceremony.final_checkpoint,
        handover=ceremony.handover,
        first_checkpoint=ceremony.first_checkpoint,
        custodian=custodian,
        endpoint=endpoint,
        transferred_size=transferred,
        abort_note=ceremony.abort_note,
        announced_at_us=ceremony.announced_at_us,
        notice_ends_at_us=ceremony.notice_ends_at_us,
        expires_at_us=None if expiring is None else expiring.expires * MICROS,
        detail=ceremony.detail,
    )

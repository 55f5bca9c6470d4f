"""Who may take which step of the custody ceremony, and which writes a register refuses.

Every organisation may read the ceremony and carry signatures (they verify
or are refused, whoever brings them). The steps that are decisions are
narrowed here:

==================  ================================================================
step                who
==================  ================================================================
ProposePolicy       the custodian's organisation (policy k), or a regulator
ReportReadiness     an operator, for itself
Freeze              the outgoing custodian's organisation (policy k)
Transfer, Activate  the incoming custodian's organisation (policy k + 1)
Retire              the outgoing or the incoming custodian's organisation
==================  ================================================================

SubmitSignature, SubmitCosignature and Abort carry their authority in their
signatures (officers, witnesses), so any organisation may bring them.
"""

from __future__ import annotations

from ceir.custody import CustodyPolicy
from ceir.domain.custody import Ceremony, CustodyState
from ceir.domain.errors import FailedPrecondition, PermissionDenied, WritesRefused
from ceir.domain.model import Caller, OrgKind

__all__ = [
    "REGULATORS",
    "RETRY_SECONDS",
    "require_custodian",
    "require_operator",
    "require_proposer",
    "writes_refused",
    "wrong_state",
]

REGULATORS = frozenset({OrgKind.KEMENPERIN, OrgKind.KOMINFO})
# A frozen register asks writers to come back after this long (RetryInfo).
RETRY_SECONDS = 1.0


def require_proposer(caller: Caller, policy: CustodyPolicy) -> None:
    if caller.name != policy.custodian and caller.kind not in REGULATORS:
        raise PermissionDenied(
            f"{caller.name} may not propose a custody policy: the custodian "
            f"({policy.custodian}) or a regulator (kemenperin, kominfo) proposes",
            reason="CUSTODY_STEP_NOT_ALLOWED",
        )


def require_operator(caller: Caller) -> None:
    if caller.kind is not OrgKind.OPERATOR:
        raise PermissionDenied(
            f"{caller.name} ({caller.kind.value}) is no operator: operators report readiness",
            reason="CUSTODY_STEP_NOT_ALLOWED",
        )


def require_custodian(caller: Caller, step: str, *policies: CustodyPolicy) -> None:
    """Raise unless the caller is the custodian organisation of one of ``policies``."""
    names = [policy.custodian for policy in policies]
    if caller.name not in names:
        raise PermissionDenied(
            f"{caller.name} may not {step}: only {' or '.join(names)} may",
            reason="CUSTODY_STEP_NOT_ALLOWED",
        )


def wrong_state(state: CustodyState, step: str, why: str = "") -> FailedPrecondition:
    """A step out of order: the state names what the register is doing."""
    return FailedPrecondition(
        f"cannot {step} while the register is {state.name}{': ' + why if why else ''}",
        reason="WRONG_STATE",
        metadata={"state": state.name},
    )


def writes_refused(
    ceremony: Ceremony,
    current: CustodyPolicy,
    following: CustodyPolicy | None,
    standby_endpoint: str,
) -> WritesRefused | None:
    """Why this register takes no write now, or None when it takes them.

    ``current`` is the policy in force (k), ``following`` the announced one
    (k + 1) if any; ``standby_endpoint`` where a standby follows the custodian.
    """
    state = ceremony.state
    here = {"custodian": current.custodian, "endpoint": current.endpoint}
    if state is CustodyState.FROZEN:
        after = {}
        if following is not None:
            after = {"next_custodian": following.custodian, "next_endpoint": following.endpoint}
        return WritesRefused(
            f"the register is frozen for the handover to policy version {current.version + 1} "
            f"(final size {ceremony.final_size}); checks are answered, writes resume here if "
            "the handover is called off or go to the next custodian once it is done",
            reason="REGISTER_FROZEN",
            metadata={**here, **after},
            retry_after=RETRY_SECONDS,
        )
    if state is CustodyState.ACTIVE and not ceremony.writable:
        return WritesRefused(
            "the register is taking over the log: writes start once the witnesses have "
            f"cosigned its first checkpoint and the outgoing register retired ({ceremony.detail})",
            reason="REGISTER_FROZEN",
            metadata=here,
            retry_after=RETRY_SECONDS,
        )
    if state is CustodyState.RETIRED:
        return WritesRefused(
            f"the register was handed over to {ceremony.moved_custodian} at "
            f"{ceremony.moved_endpoint}; send writes there",
            reason="REGISTER_MOVED",
            metadata={"custodian": ceremony.moved_custodian, "endpoint": ceremony.moved_endpoint},
        )
    if state in (CustodyState.STANDBY, CustodyState.TRANSFERRED):
        endpoint = standby_endpoint or current.endpoint
        return WritesRefused(
            f"this register is a standby following {current.custodian} at {endpoint}; "
            "send writes there",
            reason="NOT_CUSTODIAN",
            metadata={"custodian": current.custodian, "endpoint": endpoint},
        )
    return None

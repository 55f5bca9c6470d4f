"""The regulator's policy: read by all, changed by Kominfo, versioned through
the change feed so that every replica switches at the same sequence."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from ceir.domain.errors import FieldViolation
from ceir.domain.model import Caller, Change, ChangeKind, Phase, Policy
from ceir.domain.permissions import Action, require
from ceir.domain.validation import raise_if
from ceir.storage import repository as repo

from .register import Committed, Register, Replayed, WriteUnit

POLICY_FIELDS = ("phase", "grace_days", "clone_threshold", "clone_window_seconds")
_LIMITS = {
    "grace_days": (0, 365),
    "clone_threshold": (1, 1_000),
    "clone_window_seconds": (60, 2_592_000),
}


class PolicyService:
    def __init__(self, register: Register) -> None:
        self.register = register

    def policy(self, caller: Caller) -> Policy:
        require(caller, Action.READ_POLICY)
        return self.register.state.policy

    def update(
        self,
        caller: Caller,
        request_id: str,
        fingerprint: str,
        values: dict[str, int],
        render: Callable[[Committed[Policy]], bytes],
    ) -> Committed[Policy] | Replayed:
        """Change the named fields; ``values`` holds only the fields to change."""
        require(caller, Action.UPDATE_POLICY)
        violations: list[FieldViolation] = []
        if not values:
            violations.append(FieldViolation("update_mask", "name at least one field to change"))
        for name, value in values.items():
            if name not in POLICY_FIELDS:
                violations.append(
                    FieldViolation(
                        "update_mask", f"unknown field {name!r}; expected one of {POLICY_FIELDS}"
                    )
                )
            elif name == "phase":
                if value not in (Phase.NOTIFY, Phase.ENFORCE):
                    violations.append(FieldViolation("policy.phase", "must be NOTIFY or ENFORCE"))
            elif not _LIMITS[name][0] <= value <= _LIMITS[name][1]:
                low, high = _LIMITS[name]
                violations.append(FieldViolation(f"policy.{name}", f"must be {low} to {high}"))
        raise_if(violations, "INVALID_POLICY")

        def work(unit: WriteUnit) -> Policy:
            current = unit.state.policy
            policy = replace(
                current,
                phase=Phase(values.get("phase", current.phase)),
                grace_days=values.get("grace_days", current.grace_days),
                clone_threshold=values.get("clone_threshold", current.clone_threshold),
                clone_window_seconds=values.get(
                    "clone_window_seconds", current.clone_window_seconds
                ),
                updated_at_us=unit.now_us,
                updated_by=caller.name,
            )
            repo.save_policy(unit.session, policy)
            unit.add(Change(ChangeKind.POLICY_CHANGED, policy=policy))
            return policy

        return self.register.mutate(caller, "UpdatePolicy", request_id, fingerprint, work, render)

"""The regulator's policy: read by all, changed by Kominfo (the
``UpdatePolicy`` command), versioned through the change feed so that every
replica switches at the same sequence."""

from __future__ import annotations

from ceir.domain.model import Caller, Policy
from ceir.domain.permissions import Action, require

from .register import Register


class PolicyService:
    def __init__(self, register: Register) -> None:
        self.register = register

    def policy(self, caller: Caller) -> Policy:
        require(caller, Action.READ_POLICY)
        return self.register.state.policy

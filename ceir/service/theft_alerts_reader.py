"""Reading theft alerts: only the reporting organisation reads its alerts.

Not even a regulator reads another organisation's alerts: they name the
subscriber (IMSI, MSISDN) that tried the phone and the operator that saw
it, which only the case's reporter needs. Kominfo reads the alerts of the
cases it filed for the police, like any reporter.
"""

from __future__ import annotations

from ceir.domain.model import Caller
from ceir.domain.permissions import Action, require
from ceir.domain.stolen import TheftAlert
from ceir.storage import stolen_repository as stolen_repo

from .register import Register
from .stolen_cases import decode_token, encode_token, page_size_of


class TheftAlertReader:
    def __init__(self, register: Register) -> None:
        self.register = register

    def page(self, caller: Caller, page_size: int, page_token: str) -> tuple[list[TheftAlert], str]:
        """The caller's alerts, oldest first."""
        require(caller, Action.THEFT_ALERTS)
        size, after = page_size_of(page_size), decode_token(page_token, "a1")
        with self.register.db.read() as connection:
            alerts = stolen_repo.alert_page(connection, caller.name, after, size + 1)
        token = encode_token("a1", alerts[size - 1].alert_id) if len(alerts) > size else ""
        return alerts[:size], token

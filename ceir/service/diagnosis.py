"""Diagnosis: why the register decides as it does for one IMEI (and IMSI).

The rules come from ``ceir.domain.explain`` (the same order as the
decision), the entries and the IMEI's changes from the tables, with the
same privacy as ``GetImeiRecord`` (``RegistryService.imei_record``): an
operator does not see other operators' subscribers.
"""

from __future__ import annotations

from dataclasses import dataclass

from ceir.domain.errors import FieldViolation
from ceir.domain.explain import Explanation, explain
from ceir.domain.identifiers import imei_key
from ceir.domain.model import Caller, ImeiRecord
from ceir.domain.permissions import Action, require
from ceir.domain.validation import raise_if

from .checks import CheckQuery, validate_query
from .register import Register
from .registry import RegistryService

__all__ = ["Diagnosis", "diagnose"]


@dataclass(frozen=True)
class Diagnosis:
    """The explanation, and the IMEI's record (None for a malformed IMEI)."""

    explanation: Explanation
    record: ImeiRecord | None
    registration_valid: bool


def diagnose(
    register: Register,
    caller: Caller,
    imei: str,
    imsi: str,
    page_size: int = 0,
    page_token: str = "",
) -> Diagnosis:
    """Anyone who may check may diagnose; the record's privacy rules apply."""
    require(caller, Action.CHECK)
    violations: list[FieldViolation] = []
    query = validate_query(CheckQuery(imei, imsi), "", violations)
    raise_if(violations)
    now = register.clock.now_us()
    state = register.state
    explanation = explain(state, query.imei, query.imsi, "", now)
    key = imei_key(query.imei)
    if key is None:
        return Diagnosis(explanation, None, False)
    # The record as GetImeiRecord gives it (the caller may check, so it may
    # read the record: READ_RECORD and CHECK name the same kinds).
    record = RegistryService(register).imei_record(caller, query.imei, page_size, page_token)
    until = state.valid_until_of(key) if state.is_whitelisted(key) else None
    valid = state.is_whitelisted(key) and (until is None or until > now)
    return Diagnosis(explanation, record, valid)

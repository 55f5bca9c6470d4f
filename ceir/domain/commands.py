"""Every mutation of the register as a command: a small validated value.

A command is what a request asks for once its fields are checked (the API
layer builds each from its request, ``ceir.api.commands``) and what the
write pipeline runs (``Register.execute``), through the one handler of its
type (``ceir.service.handlers``). ``Command[R]`` is a command whose handler
returns an ``R``.

``operation`` names the operation (the RPC, for the AIP-155 answers stored
per caller, operation and request id), ``action`` what the caller's
organisation must be allowed to do (``ceir.domain.permissions``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, NamedTuple, TypeVar

from .model import (
    DeviceRegistration,
    ImportRejection,
    ImportResult,
    Phase,
    Policy,
    Registration,
)
from .oversight import RevocationPage
from .permissions import Action

R = TypeVar("R")

__all__ = [
    "AddException",
    "Command",
    "ImportChunk",
    "RecordCheckEffects",
    "RecordCustodyStep",
    "RegisterDevice",
    "RemoveException",
    "ReportRecovered",
    "ReportStolen",
    "ResolveComplaint",
    "RevokeRegistration",
    "RevokeRegistrationsBy",
    "UpdatePolicy",
    "WhitelistSibling",
]


class Command(Generic[R]):
    """A mutation whose handler returns an ``R``."""

    operation: ClassVar[str]
    action: ClassVar[Action]

    def request_key(self, request_id: str) -> str:
        """The key its AIP-155 answer is stored under ("" for none)."""
        return request_id


@dataclass(frozen=True)
class RegisterDevice(Command[Registration]):
    """Whitelist one device, every slot IMEI of it."""

    operation: ClassVar[str] = "RegisterDevice"
    action: ClassVar[Action] = Action.REGISTER

    device: DeviceRegistration


@dataclass(frozen=True)
class RevokeRegistration(Command[tuple[int, ...]]):
    """Take IMEIs off the whitelist (their device records stay)."""

    operation: ClassVar[str] = "RevokeRegistration"
    action: ClassVar[Action] = Action.REVOKE

    imei_keys: tuple[int, ...]
    reason: str


@dataclass(frozen=True)
class RevokeRegistrationsBy(Command[RevocationPage]):
    """Revoke one page of what ``organisation`` registered in [start_us, end_us)
    (``end_us`` None: no end): an abused account's registrations.

    ``after`` is the last registration sequence of the previous page (0 for
    the first), ``upper`` the register version the set was fixed at (None:
    the first page fixes it at the head). ``page_key`` names the page for
    AIP-155 (a digest of its page token): each page is answered once per
    request id. See ``ceir.service.oversight_revoke``.
    """

    operation: ClassVar[str] = "RevokeRegistrationsBy"
    action: ClassVar[Action] = Action.REVOKE_ACCOUNT

    organisation: str
    start_us: int
    end_us: int | None
    reason: str
    page_size: int
    after: int = 0
    upper: int | None = None
    page_key: str = "first"

    def request_key(self, request_id: str) -> str:
        """Each page is idempotent on its own: ``request_id#page_key``."""
        return f"{request_id}#{self.page_key}" if request_id else ""


@dataclass(frozen=True)
class ReportStolen(Command[tuple[int, ...]]):
    """Blacklist IMEIs reported stolen by a subscriber."""

    operation: ClassVar[str] = "ReportStolen"
    action: ClassVar[Action] = Action.REPORT_STOLEN

    imei_keys: tuple[int, ...]
    police_report: str
    subscriber_imsi: str


@dataclass(frozen=True)
class ReportRecovered(Command[tuple[int, ...]]):
    """Lift stolen reports."""

    operation: ClassVar[str] = "ReportRecovered"
    action: ClassVar[Action] = Action.REPORT_RECOVERED

    imei_keys: tuple[int, ...]
    police_report: str


@dataclass(frozen=True)
class AddException(Command[tuple[int, str]]):
    """Pair an IMEI with an IMSI: the pair is allowed whatever the lists say."""

    operation: ClassVar[str] = "AddException"
    action: ClassVar[Action] = Action.MANAGE_EXCEPTIONS

    imei_key: int
    imsi: str
    reason: str = ""


@dataclass(frozen=True)
class RemoveException(Command[None]):
    """Remove a pair."""

    operation: ClassVar[str] = "RemoveException"
    action: ClassVar[Action] = Action.MANAGE_EXCEPTIONS

    imei_key: int
    imsi: str


@dataclass(frozen=True)
class UpdatePolicy(Command[Policy]):
    """Change the named fields of the policy (None: leave as it is)."""

    operation: ClassVar[str] = "UpdatePolicy"
    action: ClassVar[Action] = Action.UPDATE_POLICY

    phase: Phase | None = None
    grace_days: int | None = None
    clone_threshold: int | None = None
    clone_window_seconds: int | None = None


class ImportRow(NamedTuple):
    """One row of an import chunk, its device validated (a named tuple: an
    import makes one per row)."""

    row: int
    device: DeviceRegistration


@dataclass(frozen=True)
class ImportChunk(Command[ImportResult]):
    """One chunk of a bulk import: register the valid rows, report the others.

    ``rejected`` are the rows whose fields were wrong; the handler rejects
    more (a source the caller may not register, an IMEI taken).
    ``confirm_ranges``: the importer confirms dense ranges (the range guard,
    ``ceir.service.capacity``).
    """

    operation: ClassVar[str] = "ImportRegistrations"
    action: ClassVar[Action] = Action.REGISTER

    number: int
    rows: tuple[ImportRow, ...]
    rejected: tuple[ImportRejection, ...] = ()
    confirm_ranges: bool = False

    def request_key(self, request_id: str) -> str:
        """Each chunk is idempotent on its own: ``request_id#number``."""
        return f"{request_id}#{self.number}" if request_id else ""


@dataclass(frozen=True)
class RecordCheckEffects(Command[int]):
    """Record what checks found (a first sight to notify, a grace period
    over), decided again in the write transaction; the handler returns the
    time they were decided at. ``checks`` are (IMEI, IMSI, MSISDN digits),
    already validated."""

    operation: ClassVar[str] = "RecordCheckEffects"
    action: ClassVar[Action] = Action.CHECK

    checks: tuple[tuple[str, str, str], ...]


@dataclass(frozen=True)
class RecordCustodyStep(Command[int]):
    """Record a step of the custody ceremony as a leaf (``CUSTODY_CHANGED``).

    ``step`` is the state reached (``FROZEN``), ``version`` the policy it is
    about, ``reference`` the lowercase hex SHA-256 of the step's document
    ("" for none, ``expired`` for an abort by expiry). Who may take which
    step is the custody service's rule (``ceir.service.custody``); the
    handler returns the leaf's sequence.
    """

    operation: ClassVar[str] = "RecordCustodyStep"
    action: ClassVar[Action] = Action.CUSTODY

    step: str
    version: int
    reference: str


@dataclass(frozen=True)
class WhitelistSibling(Command[Registration]):
    """Whitelist the unregistered slot of a dual-SIM phone whose box lists
    both slots (a complaint's resolution): one WHITELIST_ADDED for
    ``imei_key`` with the source, brand, model and expiry of the registered
    slot ``registered_key``; ``reference`` names the complaint and the box."""

    operation: ClassVar[str] = "WhitelistSibling"
    action: ClassVar[Action] = Action.WORK_COMPLAINTS

    imei_key: int
    registered_key: int
    reference: str


@dataclass(frozen=True)
class ResolveComplaint(Command[Any]):
    """A complaint resolved through ``inner``, one audited operation (None:
    no list change), in the transaction that writes the complaint's step.

    Its answer is stored under ``ResolveComplaint`` (AIP-155), apart from a
    plain call of the inner operation. The handler runs the inner command's
    own rules (its action and its handler's) and leaves the sequence
    numbers of the changes it made in ``caused``, for the complaint's step
    (written by the ``within`` of the same ``Register.execute``).
    """

    operation: ClassVar[str] = "ResolveComplaint"
    action: ClassVar[Action] = Action.WORK_COMPLAINTS

    tracking_id: str
    inner: Command[Any] | None
    caused: list[int] = field(default_factory=list, compare=False, hash=False)

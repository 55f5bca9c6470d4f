"""The register's values: statuses, reasons, lists, changes, policy, callers.

Enum values equal the numbers of the matching ``ceir.v1`` enums, so the API
layer converts by value; a test keeps the two in step.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class EquipmentStatus(enum.IntEnum):
    WHITELISTED = 1
    BLACKLISTED = 2
    GREYLISTED = 3


class Reason(enum.IntEnum):
    REGISTERED = 1
    MALFORMED_IMEI = 2
    INBOUND_ROAMER = 3
    EXCEPTION_PAIR = 4
    STOLEN = 5
    NOT_REGISTERED = 6
    NOTIFICATION_PENDING = 7
    NOTIFICATION_EXPIRED = 8
    REGISTRATION_EXPIRED = 9
    DUPLICATE_SUSPECTED = 10
    ENFORCEMENT_PHASE = 11


class RegistrationSource(enum.IntEnum):
    TPP_IMPORT = 1
    TPP_PRODUCTION = 2
    CUSTOMS = 3
    TOURIST = 4
    DIPLOMAT = 5
    GRANDFATHERED = 6


class Phase(enum.IntEnum):
    NOTIFY = 1
    ENFORCE = 2


class ChangeKind(enum.IntEnum):
    WHITELIST_ADDED = 1
    WHITELIST_REMOVED = 2
    BLACKLIST_BLOCKED = 3
    BLACKLIST_UNBLOCKED = 4
    NOTIFICATION_NEW = 5
    NOTIFICATION_RESOLVED = 6
    NOTIFICATION_BLACKLISTED = 7
    EXCEPTION_ADDED = 8
    EXCEPTION_REMOVED = 9
    POLICY_CHANGED = 10
    CUSTODY_CHANGED = 11  # a step of the custody ceremony; no list rows


class BlacklistCause(enum.IntEnum):
    STOLEN = 1
    NOTIFICATION_EXPIRED = 2


class OrgKind(enum.StrEnum):
    """The kinds of organisation the brief names."""

    OPERATOR = "operator"
    KEMENPERIN = "kemenperin"
    CUSTOMS = "customs"
    KEMLU = "kemlu"
    KOMINFO = "kominfo"


MICROS = 1_000_000
DAY_MICROS = 86_400 * MICROS


@dataclass(frozen=True)
class Policy:
    """The regulator's settings. Times are whole seconds."""

    phase: Phase = Phase.NOTIFY
    grace_days: int = 30
    clone_threshold: int = 3
    clone_window_seconds: int = 86_400
    updated_at_us: int = 0
    updated_by: str = ""


@dataclass(frozen=True)
class Caller:
    """An authenticated organisation."""

    name: str
    kind: OrgKind
    mcc_mncs: tuple[str, ...] = ()

    def owns_imsi(self, imsi: str) -> bool:
        """True if the IMSI belongs to one of this operator's MCC-MNCs."""
        return imsi.startswith(self.imsi_prefixes)

    def mcc_mnc_of(self, imsi: str) -> str | None:
        """Which of this operator's MCC-MNCs the IMSI belongs to (None: none)."""
        return next((c for c in self.mcc_mncs if imsi.startswith(c.replace("-", ""))), None)

    @property
    def imsi_prefixes(self) -> tuple[str, ...]:
        """How this operator's IMSIs start: its MCC-MNCs without the dash."""
        return tuple(code.replace("-", "") for code in self.mcc_mncs)


@dataclass(frozen=True)
class Decision:
    """The register's answer to one check."""

    status: EquipmentStatus
    reasons: tuple[Reason, ...]
    imei_key: int | None
    sequence: int
    block_date_us: int | None = None


CURRENT_LEAF_VERSION = 2


@dataclass(frozen=True)
class Change:
    """One change-feed entry. Unused fields stay at their defaults.

    Everything a list row or device record holds is here, so the tables are
    the replay of the changes (``docs/trust.md``). Leaf version 1 changes
    (written before version 2) carry only the fields up to ``actor``.
    """

    kind: ChangeKind
    imei_key: int | None = None
    # The subscriber: a notification's or exception's pair, a stolen
    # report's subscriber. Personal data: the leaf holds only a salted
    # commitment to (imsi, msisdn), opened by subscriber_salt.
    imsi: str = ""
    msisdn: str = ""
    source: RegistrationSource | None = None
    valid_until_us: int | None = None
    device_id: str = ""
    blacklist_cause: BlacklistCause | None = None
    block_date_us: int | None = None
    operator_mcc_mnc: str = ""
    policy: Policy | None = None
    sequence: int = 0
    committed_at_us: int = 0
    actor: str = ""  # the acting organisation (in the leaf from version 2)
    # --- from leaf version 2 ---
    reference: str = ""  # WHITELIST_ADDED: the TPP, customs or other reference
    brand: str = ""  # WHITELIST_ADDED
    model: str = ""  # WHITELIST_ADDED
    device_imei_keys: tuple[int, ...] = ()  # WHITELIST_ADDED: every slot key, in slot order
    police_report: str = ""  # stolen blocks and recoveries: the police report number
    reason: str = ""  # revocations, recoveries, exceptions, automatic changes: why
    subscriber_salt: bytes = b""  # 16 random bytes when imsi is set (one per list row)
    leaf_version: int = CURRENT_LEAF_VERSION


@dataclass(frozen=True)
class DeviceRegistration:
    """A validated request to whitelist one device."""

    imei_keys: tuple[int, ...]
    source: RegistrationSource
    reference: str = ""
    valid_until_us: int | None = None
    brand: str = ""
    model: str = ""


@dataclass(frozen=True)
class Registration:
    """A device on the whitelist as stored."""

    device_id: str
    imei_keys: tuple[int, ...]
    source: RegistrationSource
    reference: str
    valid_until_us: int | None
    brand: str
    model: str
    registered_by: str
    registered_at_us: int


@dataclass(frozen=True)
class BlacklistEntry:
    imei_key: int
    cause: BlacklistCause
    police_report: str
    blocked_by: str
    blocked_at_us: int
    # The subscriber a stolen report was filed for; empty for an expired
    # notification's block and for reports stored before migration 0003.
    subscriber_imsi: str = ""


@dataclass(frozen=True)
class Notification:
    imei_key: int
    imsi: str
    msisdn: str
    operator_mcc_mnc: str
    first_seen_us: int
    block_date_us: int


@dataclass(frozen=True)
class ExceptionEntry:
    imei_key: int
    imsi: str
    reason: str
    added_by: str


@dataclass(frozen=True)
class ImeiRecord:
    """What the register knows about one IMEI, as one caller may see it: at
    most a bounded number of notifications and pairs (``*_truncated`` when
    there are more) and one page of its history."""

    imei_key: int
    registration: Registration | None
    blacklist: BlacklistEntry | None
    notifications: list[Notification] = field(default_factory=list)
    exceptions: list[ExceptionEntry] = field(default_factory=list)
    history: list[Change] = field(default_factory=list)
    notifications_truncated: bool = False
    exceptions_truncated: bool = False
    next_page_token: str = ""


@dataclass(frozen=True)
class ImportRejection:
    row: int
    field: str
    description: str


@dataclass
class ImportResult:
    rows_received: int = 0
    rows_accepted: int = 0
    rows_rejected: int = 0
    rejections: list[ImportRejection] = field(default_factory=list)
    sequence: int = 0

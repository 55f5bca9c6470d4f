"""The register's tables (SQLAlchemy 2 typed models).

Times are integers: Unix microseconds, in columns ending ``_us``. IMEI keys
are the 14-digit key as a 64-bit integer.
"""

from __future__ import annotations

from typing import Annotated

from sqlalchemy import BigInteger, Index, Integer, LargeBinary, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ImeiKey = Annotated[int, mapped_column(BigInteger)]
Micros = Annotated[int, mapped_column(BigInteger)]
OptionalMicros = Annotated[int | None, mapped_column(BigInteger, nullable=True)]
Imsi = Annotated[str, mapped_column(String(15))]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Organisation(Base):
    """A caller: its kind, its MCC-MNCs (operators) and its hashed token."""

    __tablename__ = "organisations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    mcc_mncs: Mapped[str] = mapped_column(String(256), default="")  # comma separated
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at_us: Mapped[Micros]
    revoked_at_us: Mapped[OptionalMicros]


class RegisterState(Base):
    """One row: the last change sequence and the policy in force.

    Writers bump ``last_sequence`` inside their transaction; the row lock
    serialises them, so sequences have no gaps even on PostgreSQL.
    """

    __tablename__ = "register_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_sequence: Mapped[int] = mapped_column(BigInteger)
    phase: Mapped[int] = mapped_column(Integer)
    grace_days: Mapped[int] = mapped_column(Integer)
    clone_threshold: Mapped[int] = mapped_column(Integer)
    clone_window_seconds: Mapped[int] = mapped_column(Integer)
    policy_updated_at_us: Mapped[Micros]
    policy_updated_by: Mapped[str] = mapped_column(String(64))


class Device(Base):
    """A registered device; its slot IMEIs are whitelist rows.

    ``WITHOUT ROWID`` on SQLite (migration 0006), like ``whitelist``: the
    table is its key's index. A one-slot device registered by a version 2
    change has no row: the change holds it (migration 0007,
    ``projection.in_its_change``), and its whitelist row's ``device_id`` is ''."""

    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    source: Mapped[int] = mapped_column(Integer)
    reference: Mapped[str] = mapped_column(String(128))
    valid_until_us: Mapped[OptionalMicros]
    brand: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(64))
    registered_by: Mapped[str] = mapped_column(String(64))
    registered_at_us: Mapped[Micros]
    imei_keys: Mapped[str] = mapped_column(String(160))  # comma separated, slot order


class WhitelistEntry(Base):
    __tablename__ = "whitelist"

    imei_key: Mapped[ImeiKey] = mapped_column(primary_key=True)
    device_id: Mapped[str] = mapped_column(String(32))
    valid_until_us: Mapped[OptionalMicros]


class BlacklistEntry(Base):
    __tablename__ = "blacklist"

    imei_key: Mapped[ImeiKey] = mapped_column(primary_key=True)
    cause: Mapped[int] = mapped_column(Integer)
    police_report: Mapped[str] = mapped_column(String(128))
    blocked_by: Mapped[str] = mapped_column(String(64))
    blocked_at_us: Mapped[Micros]
    block_date_us: Mapped[OptionalMicros]
    # The subscriber of a stolen report (migration 0003); empty otherwise,
    # and for reports stored before it.
    subscriber_imsi: Mapped[Imsi] = mapped_column(server_default="")


class NotificationEntry(Base):
    __tablename__ = "notifications"

    imei_key: Mapped[ImeiKey] = mapped_column(primary_key=True)
    imsi: Mapped[Imsi] = mapped_column(primary_key=True)
    msisdn: Mapped[str] = mapped_column(String(16))
    operator_mcc_mnc: Mapped[str] = mapped_column(String(8))
    first_seen_us: Mapped[Micros]
    block_date_us: Mapped[Micros]
    # The salt of the pair's subscriber commitment (migration 0004); NULL
    # for rows written before it.
    subscriber_salt: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)

    __table_args__ = (Index("ix_notifications_operator", "operator_mcc_mnc", "imei_key", "imsi"),)


class ExceptionPair(Base):
    __tablename__ = "exceptions"

    imei_key: Mapped[ImeiKey] = mapped_column(primary_key=True)
    imsi: Mapped[Imsi] = mapped_column(primary_key=True)
    reason: Mapped[str] = mapped_column(String(256))
    added_by: Mapped[str] = mapped_column(String(64))
    added_at_us: Mapped[Micros]
    # As for notifications: the pair's salt, NULL for rows from before 0004.
    subscriber_salt: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class ChangeRecord(Base):
    """The change feed: one row per list change, gap-free sequences.

    On SQLite ``sequence`` is the rowid (``INTEGER PRIMARY KEY``, migration
    0006). ``device_imei_keys`` of a version 2 registration is '' when its
    slots are its own IMEI and '-' when it has none
    (``repository.stored_slots``); its ``device_id`` is '' when it is
    ``D<sequence>`` and '-' when empty (migration 0007,
    ``repository.stored_device_id``)."""

    __tablename__ = "changes"

    sequence: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[int] = mapped_column(Integer)
    imei_key: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)
    imsi: Mapped[str] = mapped_column(String(15), default="")
    msisdn: Mapped[str] = mapped_column(String(16), default="")
    source: Mapped[int | None] = mapped_column(Integer, nullable=True)
    valid_until_us: Mapped[OptionalMicros]
    device_id: Mapped[str] = mapped_column(String(32), default="")
    blacklist_cause: Mapped[int | None] = mapped_column(Integer, nullable=True)
    block_date_us: Mapped[OptionalMicros]
    operator_mcc_mnc: Mapped[str] = mapped_column(String(8), default="")
    policy_json: Mapped[str] = mapped_column(Text, default="")
    committed_at_us: Mapped[Micros]
    actor: Mapped[str] = mapped_column(String(64))
    # The change's leaf hash in the Merkle log (level 0 of the tree), written
    # with the change; NULL only in a database from before the log, until the
    # server backfills it at start-up.
    leaf_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32), nullable=True)
    # Which leaf encoding hashes this change: 1 for changes written before
    # migration 0004 (the columns below are empty in them), 2 after.
    leaf_version: Mapped[int] = mapped_column(Integer, server_default="1")
    # What the list row or device record written by the change holds (version 2).
    reference: Mapped[str] = mapped_column(String(128), server_default="")
    brand: Mapped[str] = mapped_column(String(64), server_default="")
    model: Mapped[str] = mapped_column(String(64), server_default="")
    device_imei_keys: Mapped[str] = mapped_column(Text, server_default="")  # comma separated
    police_report: Mapped[str] = mapped_column(String(128), server_default="")
    reason: Mapped[str] = mapped_column(String(256), server_default="")
    subscriber_salt: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class TreeNode(Base):
    """A perfect subtree of the Merkle log above the leaves, at levels 8, 16, ...

    Node (level, index) is the root of leaves ``[index * 2**level, (index + 1) *
    2**level)``; the leaves themselves are ``changes.leaf_hash``.
    """

    __tablename__ = "tree_nodes"

    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class SignedCheckpoint(Base):
    """A checkpoint the custodian signed when a write committed (a signed note)."""

    __tablename__ = "checkpoints"

    tree_size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    note: Mapped[str] = mapped_column(Text)
    signed_at_us: Mapped[Micros]


class IdempotencyRecord(Base):
    """The first answer to each (caller, method, request_id) (AIP-155)."""

    __tablename__ = "idempotency"

    organisation: Mapped[str] = mapped_column(String(64), primary_key=True)
    method: Mapped[str] = mapped_column(String(64), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(160), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    response: Mapped[bytes] = mapped_column(LargeBinary)
    created_at_us: Mapped[Micros]


class CustodyPolicyRecord(Base):
    """A custody policy this register verified (version 0 is its trust root): the signed note."""

    __tablename__ = "custody_policies"

    version: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    note: Mapped[str] = mapped_column(Text)
    text_sha256: Mapped[str] = mapped_column(String(64))  # of the policy text, lowercase hex
    stored_at_us: Mapped[Micros]


class CustodyCeremonyRecord(Base):
    """One row: the custody ceremony (``ceir.domain.custody.Ceremony``)."""

    __tablename__ = "custody_ceremony"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    state: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(BigInteger)
    pending_kind: Mapped[str] = mapped_column(String(16))
    pending_document: Mapped[str] = mapped_column(Text)
    pending_notice_s: Mapped[int] = mapped_column(BigInteger)
    announced_at_us: Mapped[OptionalMicros]
    notice_ends_at_us: Mapped[OptionalMicros]
    final_size: Mapped[int] = mapped_column(BigInteger)
    final_checkpoint: Mapped[str] = mapped_column(Text)
    handover: Mapped[str] = mapped_column(Text)
    first_checkpoint: Mapped[str] = mapped_column(Text)
    writable: Mapped[int] = mapped_column(Integer)
    abort_note: Mapped[str] = mapped_column(Text)
    moved_custodian: Mapped[str] = mapped_column(String(64))
    moved_endpoint: Mapped[str] = mapped_column(String(256))
    transferred_size: Mapped[int] = mapped_column(BigInteger)
    detail: Mapped[str] = mapped_column(Text)
    updated_at_us: Mapped[Micros]


class CustodyReadiness(Base):
    """An operator's report that its nodes hold and verified an announced policy."""

    __tablename__ = "custody_readiness"

    organisation: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    text_sha256: Mapped[str] = mapped_column(String(64))
    reported_at_us: Mapped[Micros]


# The tables of the complaints desk, stolen-phone cases and account oversight
# live in modules of their own; importing them here puts them on Base.metadata.
from . import complaint_tables, oversight_tables, stolen_tables  # noqa: E402, F401

"""The complaints desk: complaints and their history (tables; migration 0008).

A complaint's tracking id is its row number (``C-000123``): the id column
autoincrements and is never reused (``sqlite_autoincrement``; a PostgreSQL
identity sequence), so ids stay unique across restarts and across servers
sharing one PostgreSQL database. These tables are the desk's working
records, not list state: they are not in the Merkle log; a resolution's
step names the sequence numbers of the logged changes it caused.
"""

from __future__ import annotations

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .schema import Base, Micros, OptionalMicros

__all__ = ["Base", "ComplaintRow", "ComplaintStepRow"]


class ComplaintRow(Base):
    """One complaint: its subject, its desk, its state and its deadline."""

    __tablename__ = "complaints"
    __table_args__ = (
        Index("ix_complaints_owner", "owner", "id"),
        Index("ix_complaints_state", "state", "id"),
        Index("ix_complaints_filed_by", "filed_by", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    category: Mapped[int] = mapped_column(Integer)
    state: Mapped[int] = mapped_column(Integer)
    imei_keys: Mapped[str] = mapped_column(String(160))  # comma separated, as filed
    imsi: Mapped[str] = mapped_column(String(15))
    msisdn: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text)
    filed_by: Mapped[str] = mapped_column(String(64))
    owner: Mapped[str] = mapped_column(String(64))
    filed_at_us: Mapped[Micros]
    deadline_us: Mapped[Micros]
    deadline_missed: Mapped[int] = mapped_column(Integer)  # 0 or 1
    escalated_to: Mapped[str] = mapped_column(String(64))
    closed_at_us: Mapped[OptionalMicros]
    updated_at_us: Mapped[Micros]


class ComplaintStepRow(Base):
    """One step of a complaint's history, numbered from 1."""

    __tablename__ = "complaint_steps"

    complaint_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[int] = mapped_column(Integer)
    at_us: Mapped[Micros]
    actor: Mapped[str] = mapped_column(String(64))
    from_state: Mapped[int] = mapped_column(Integer)  # 0: none (the filing)
    to_state: Mapped[int] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(String(32))
    change_sequences: Mapped[str] = mapped_column(Text)  # comma separated

"""Stolen-phone cases and theft alerts (tables; migration 0009).

A case is its row, one row per IMEI (``stolen_case_imeis``, whose ``open``
column lets a new case find an open case on one of its IMEIs by index) and
one row per step of its history. Theft alerts are written off the check
path by ``ceir.service.theft_alerts`` and read by their reporter, in id order.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .schema import Base, Imsi, Micros

__all__ = [
    "Base",
    "StolenCaseImeiRecord",
    "StolenCaseRecord",
    "StolenCaseStepRecord",
    "TheftAlertRecord",
]


class StolenCaseRecord(Base):
    """One stolen-phone case (``ceir.domain.stolen.StolenCase``)."""

    __tablename__ = "stolen_cases"

    # Listing order (AIP-158 page tokens), given by the database.
    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(String(32), unique=True)
    state: Mapped[int] = mapped_column(Integer)
    imsi: Mapped[Imsi]
    msisdn: Mapped[str] = mapped_column(String(16))
    police_report: Mapped[str] = mapped_column(String(128))
    reporter: Mapped[str] = mapped_column(String(64), index=True)
    filed_at_us: Mapped[Micros]
    updated_at_us: Mapped[Micros]


class StolenCaseImeiRecord(Base):
    """One IMEI of a case; ``open`` is 1 while the case is PENDING or BLOCKED."""

    __tablename__ = "stolen_case_imeis"

    case_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    imei_key: Mapped[int] = mapped_column(BigInteger)
    open: Mapped[int] = mapped_column(Integer)

    __table_args__ = (Index("ix_stolen_case_imeis_key", "imei_key", "open"),)


class StolenCaseStepRecord(Base):
    """One step of a case's history."""

    __tablename__ = "stolen_case_steps"

    case_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    state: Mapped[int] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(String(256))
    sequence: Mapped[int] = mapped_column(BigInteger)  # 0: the step changed no list
    at_us: Mapped[Micros]


class TheftAlertRecord(Base):
    """A blocked case's IMEI seen in a check, for the case's reporter."""

    __tablename__ = "theft_alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    reporter: Mapped[str] = mapped_column(String(64))
    case_id: Mapped[str] = mapped_column(String(32))
    imei_key: Mapped[int] = mapped_column(BigInteger)
    imsi: Mapped[str] = mapped_column(String(15))
    msisdn: Mapped[str] = mapped_column(String(16))
    seen_by: Mapped[str] = mapped_column(String(64))
    seen_at_us: Mapped[Micros]

    __table_args__ = (Index("ix_theft_alerts_reporter", "reporter", "id"),)

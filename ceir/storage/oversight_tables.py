"""Per-organisation registration rates and account alerts (tables; migration 0010).

``account_rates`` is a projection of the change log kept in the write
transaction (``ceir.service.oversight_watch``): per organisation and clock
hour of the register, the IMEIs it registered (WHITELIST_ADDED changes) and
the first and last sequence of those changes. The counts are the alert
rule's history, so a restart keeps the baseline; the sequence span lets
``ListRegistrationsBy`` read only the stretches of the log where the
organisation registered, instead of the whole log.

``account_alerts`` holds one row per organisation and hour that exceeded its
threshold (the primary key of the window is unique, so two servers sharing
a database raise it once).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .schema import Base, Micros

__all__ = ["AccountAlertRecord", "AccountRate"]


class AccountRate(Base):
    """One organisation's registrations in one hour (``hour_us``: its start)."""

    __tablename__ = "account_rates"

    organisation: Mapped[str] = mapped_column(String(64), primary_key=True)
    hour_us: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    registrations: Mapped[int] = mapped_column(BigInteger)
    first_sequence: Mapped[int] = mapped_column(BigInteger)
    last_sequence: Mapped[int] = mapped_column(BigInteger)


class AccountAlertRecord(Base):
    """An organisation's hour over its threshold (``ceir.domain.oversight``)."""

    __tablename__ = "account_alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organisation: Mapped[str] = mapped_column(String(64))
    window_start_us: Mapped[Micros]
    registrations: Mapped[int] = mapped_column(BigInteger)  # when raised
    baseline: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    factor: Mapped[float] = mapped_column(Float)
    raised_at_us: Mapped[Micros]
    sequence: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (UniqueConstraint("organisation", "window_start_us"),)

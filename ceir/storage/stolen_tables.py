"""Stolen-phone cases and theft alerts (tables; migration 0009)."""

from __future__ import annotations

from .schema import Base

__all__ = ["Base"]

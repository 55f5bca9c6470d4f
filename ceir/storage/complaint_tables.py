"""The complaints desk: complaints and their history (tables; migration 0008)."""

from __future__ import annotations

from .schema import Base

__all__ = ["Base"]

"""Per-organisation registration rates and account alerts (tables; migration 0010)."""

from __future__ import annotations

from .schema import Base

__all__ = ["Base"]

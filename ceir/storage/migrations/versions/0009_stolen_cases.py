"""Stolen-phone cases and theft alerts

Revision ID: 0009
Revises: 0008

The tables are declared in ``ceir/storage/stolen_tables.py``.
"""

from collections.abc import Sequence

# revision identifiers, used by Alembic.
revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

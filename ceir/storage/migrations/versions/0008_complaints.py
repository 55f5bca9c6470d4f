"""The complaints desk: complaints and their history

Revision ID: 0008
Revises: 0007

The tables are declared in ``ceir/storage/complaint_tables.py``.
"""

from collections.abc import Sequence

# revision identifiers, used by Alembic.
revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

"""The complaints desk: complaints and their history

Revision ID: 0008
Revises: 0007

The tables are declared in ``ceir/storage/complaint_tables.py``: one row per
complaint (its tracking id is the row number, never reused) and one per
step of its history.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "complaints",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("category", sa.Integer(), nullable=False),
        sa.Column("state", sa.Integer(), nullable=False),
        sa.Column("imei_keys", sa.String(length=160), nullable=False),
        sa.Column("imsi", sa.String(length=15), nullable=False),
        sa.Column("msisdn", sa.String(length=16), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("filed_by", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("filed_at_us", sa.BigInteger(), nullable=False),
        sa.Column("deadline_us", sa.BigInteger(), nullable=False),
        sa.Column("deadline_missed", sa.Integer(), nullable=False),
        sa.Column("escalated_to", sa.String(length=64), nullable=False),
        sa.Column("closed_at_us", sa.BigInteger(), nullable=True),
        sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_complaints")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_complaints_owner", "complaints", ["owner", "id"])
    op.create_index("ix_complaints_state", "complaints", ["state", "id"])
    op.create_index("ix_complaints_filed_by", "complaints", ["filed_by", "id"])
    op.create_table(
        "complaint_steps",
        sa.Column("complaint_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("number", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.Integer(), nullable=False),
        sa.Column("at_us", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("from_state", sa.Integer(), nullable=False),
        sa.Column("to_state", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("change_sequences", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("complaint_id", "number", name=op.f("pk_complaint_steps")),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("complaint_steps")
    op.drop_index("ix_complaints_filed_by", table_name="complaints")
    op.drop_index("ix_complaints_state", table_name="complaints")
    op.drop_index("ix_complaints_owner", table_name="complaints")
    op.drop_table("complaints")

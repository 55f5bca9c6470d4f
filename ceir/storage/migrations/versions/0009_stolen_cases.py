"""Stolen-phone cases and theft alerts

Revision ID: 0009
Revises: 0008

The tables are declared in ``ceir/storage/stolen_tables.py``: a case, its
IMEIs (with whether the case is open, to find a second open case on an
IMEI by index), its history of steps, and the theft alerts of blocked cases.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema: the four tables of stolen-phone cases and theft alerts."""
    op.create_table(
        "stolen_cases",
        sa.Column("number", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.String(length=32), nullable=False),
        sa.Column("state", sa.Integer(), nullable=False),
        sa.Column("imsi", sa.String(length=15), nullable=False),
        sa.Column("msisdn", sa.String(length=16), nullable=False),
        sa.Column("police_report", sa.String(length=128), nullable=False),
        sa.Column("reporter", sa.String(length=64), nullable=False),
        sa.Column("filed_at_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("number", name=op.f("pk_stolen_cases")),
        sa.UniqueConstraint("case_id", name=op.f("uq_stolen_cases_case_id")),
    )
    op.create_index(op.f("ix_stolen_cases_reporter"), "stolen_cases", ["reporter"])
    op.create_table(
        "stolen_case_imeis",
        sa.Column("case_id", sa.String(length=32), nullable=False),
        sa.Column("slot", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("imei_key", sa.BigInteger(), nullable=False),
        sa.Column("open", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("case_id", "slot", name=op.f("pk_stolen_case_imeis")),
    )
    op.create_index("ix_stolen_case_imeis_key", "stolen_case_imeis", ["imei_key", "open"])
    op.create_table(
        "stolen_case_steps",
        sa.Column("case_id", sa.String(length=32), nullable=False),
        sa.Column("step", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("state", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("note", sa.String(length=256), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("case_id", "step", name=op.f("pk_stolen_case_steps")),
    )
    op.create_table(
        "theft_alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("reporter", sa.String(length=64), nullable=False),
        sa.Column("case_id", sa.String(length=32), nullable=False),
        sa.Column("imei_key", sa.BigInteger(), nullable=False),
        sa.Column("imsi", sa.String(length=15), nullable=False),
        sa.Column("msisdn", sa.String(length=16), nullable=False),
        sa.Column("seen_by", sa.String(length=64), nullable=False),
        sa.Column("seen_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_theft_alerts")),
    )
    op.create_index("ix_theft_alerts_reporter", "theft_alerts", ["reporter", "id"])


def downgrade() -> None:
    """Downgrade schema: drop the four tables."""
    op.drop_index("ix_theft_alerts_reporter", table_name="theft_alerts")
    op.drop_table("theft_alerts")
    op.drop_table("stolen_case_steps")
    op.drop_index("ix_stolen_case_imeis_key", table_name="stolen_case_imeis")
    op.drop_table("stolen_case_imeis")
    op.drop_index(op.f("ix_stolen_cases_reporter"), table_name="stolen_cases")
    op.drop_table("stolen_cases")

"""Per-organisation registration rates and account alerts

Revision ID: 0010
Revises: 0009

The tables are declared in ``ceir/storage/oversight_tables.py``.
``account_rates`` is filled from the changes already in the log (one
GROUP BY over the WHITELIST_ADDED changes: a scan of the log, once), so an
upgraded register has its baseline and its query of an organisation's
registrations at once; from then on every write keeps it
(``ceir.service.oversight_watch``).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HOUR_US = 3_600_000_000
WHITELIST_ADDED = 1


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "account_rates",
        sa.Column("organisation", sa.String(length=64), nullable=False),
        sa.Column("hour_us", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("registrations", sa.BigInteger(), nullable=False),
        sa.Column("first_sequence", sa.BigInteger(), nullable=False),
        sa.Column("last_sequence", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("organisation", "hour_us", name=op.f("pk_account_rates")),
    )
    op.create_table(
        "account_alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("organisation", sa.String(length=64), nullable=False),
        sa.Column("window_start_us", sa.BigInteger(), nullable=False),
        sa.Column("registrations", sa.BigInteger(), nullable=False),
        sa.Column("baseline", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("factor", sa.Float(), nullable=False),
        sa.Column("raised_at_us", sa.BigInteger(), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_alerts")),
        sa.UniqueConstraint(
            "organisation", "window_start_us", name=op.f("uq_account_alerts_organisation")
        ),
    )
    # Integer division on both databases (the columns are integers).
    op.execute(
        "INSERT INTO account_rates "
        "(organisation, hour_us, registrations, first_sequence, last_sequence) "
        f"SELECT actor, (committed_at_us / {HOUR_US}) * {HOUR_US}, count(*), "
        "min(sequence), max(sequence) FROM changes "
        f"WHERE kind = {WHITELIST_ADDED} GROUP BY actor, committed_at_us / {HOUR_US}"
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("account_alerts")
    op.drop_table("account_rates")

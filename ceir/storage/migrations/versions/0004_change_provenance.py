"""every list row and device record in the change that wrote it

Revision ID: 0004
Revises: 0003

From leaf version 2 a change carries everything its list row or device
record holds (the authority's reference, brand, model, slot keys, police
report, reason, the subscriber's salt), so the list tables are the replay of
the changes. ``leaf_version`` says which encoder hashes a stored change:
changes already in the database were written as version 1 and keep it (their
new columns stay empty); new ones are version 2. Notification and exception
rows keep the salt of their pair's commitment (NULL for rows written before).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("changes", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("leaf_version", sa.Integer(), server_default="1", nullable=False)
        )
        for name, length in (("reference", 128), ("brand", 64), ("model", 64)):
            batch_op.add_column(
                sa.Column(name, sa.String(length=length), server_default="", nullable=False)
            )
        batch_op.add_column(
            sa.Column("device_imei_keys", sa.Text(), server_default="", nullable=False)
        )
        batch_op.add_column(
            sa.Column("police_report", sa.String(length=128), server_default="", nullable=False)
        )
        batch_op.add_column(
            sa.Column("reason", sa.String(length=256), server_default="", nullable=False)
        )
        batch_op.add_column(sa.Column("subscriber_salt", sa.LargeBinary(), nullable=True))
    for table in ("notifications", "exceptions"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("subscriber_salt", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    for table in ("exceptions", "notifications"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("subscriber_salt")
    with op.batch_alter_table("changes", schema=None) as batch_op:
        for name in (
            "subscriber_salt",
            "reason",
            "police_report",
            "device_imei_keys",
            "model",
            "brand",
            "reference",
            "leaf_version",
        ):
            batch_op.drop_column(name)

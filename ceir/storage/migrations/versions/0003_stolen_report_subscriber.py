"""the subscriber of a stolen report

Revision ID: 0003
Revises: 0002

A stolen report names the subscriber whose device it is; the subscriber's
operator may then lift it. Rows already on the blacklist get an empty IMSI:
they name no subscriber, and only their reporter or Kemenperin may lift
them (ceir.domain.permissions.require_may_recover).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("blacklist", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("subscriber_imsi", sa.String(length=15), server_default="", nullable=False)
        )


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("blacklist", schema=None) as batch_op:
        batch_op.drop_column("subscriber_imsi")

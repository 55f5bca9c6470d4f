"""the Merkle log: leaf hashes, tree nodes, signed checkpoints

Revision ID: 0002
Revises: 0001

Changes already in the database get their leaf hashes when the server next
starts (``TransparencyLog.open`` backfills them): the encoding lives in
``ceir.audit``, and a migration should not depend on application code.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("changes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("leaf_hash", sa.LargeBinary(length=32), nullable=True))
    op.create_table(
        "tree_nodes",
        sa.Column("level", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("level", "index", name=op.f("pk_tree_nodes")),
    )
    op.create_table(
        "checkpoints",
        sa.Column("tree_size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("signed_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tree_size", name=op.f("pk_checkpoints")),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("checkpoints")
    op.drop_table("tree_nodes")
    with op.batch_alter_table("changes", schema=None) as batch_op:
        batch_op.drop_column("leaf_hash")

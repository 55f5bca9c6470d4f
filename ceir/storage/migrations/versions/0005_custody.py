"""the custody ceremony: the policy chain, the ceremony row, operators' readiness

Revision ID: 0005
Revises: 0004

A register started with ``--custody-policy`` stores policy 0 (its trust
root) and every later policy it verified, the one row of the ceremony
(state, the documents signed so far) and which operators reported
readiness for an announced policy. The ceremony's steps are also leaves of
the log (change kind 11); these tables hold what the leaves only name by
hash.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "custody_policies",
        sa.Column("version", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("text_sha256", sa.String(length=64), nullable=False),
        sa.Column("stored_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_custody_policies")),
    )
    op.create_table(
        "custody_ceremony",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("state", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("pending_kind", sa.String(length=16), nullable=False),
        sa.Column("pending_document", sa.Text(), nullable=False),
        sa.Column("pending_notice_s", sa.BigInteger(), nullable=False),
        sa.Column("announced_at_us", sa.BigInteger(), nullable=True),
        sa.Column("notice_ends_at_us", sa.BigInteger(), nullable=True),
        sa.Column("final_size", sa.BigInteger(), nullable=False),
        sa.Column("final_checkpoint", sa.Text(), nullable=False),
        sa.Column("handover", sa.Text(), nullable=False),
        sa.Column("first_checkpoint", sa.Text(), nullable=False),
        sa.Column("writable", sa.Integer(), nullable=False),
        sa.Column("abort_note", sa.Text(), nullable=False),
        sa.Column("moved_custodian", sa.String(length=64), nullable=False),
        sa.Column("moved_endpoint", sa.String(length=256), nullable=False),
        sa.Column("transferred_size", sa.BigInteger(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_custody_ceremony")),
    )
    op.create_table(
        "custody_readiness",
        sa.Column("organisation", sa.String(length=64), nullable=False),
        sa.Column("version", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("text_sha256", sa.String(length=64), nullable=False),
        sa.Column("reported_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("organisation", "version", name=op.f("pk_custody_readiness")),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("custody_readiness")
    op.drop_table("custody_ceremony")
    op.drop_table("custody_policies")

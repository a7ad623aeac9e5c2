"""missed_followups: a missed call called back (by an employee, or the customer got through), once

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "missed_followups",
        sa.Column("entry_id", sa.String(160), primary_key=True),
        sa.Column("by_entry_id", sa.String(160), nullable=False),
        sa.Column("by_extension", sa.String(32), nullable=True),
        sa.Column("how", sa.String(24), nullable=False),
        sa.Column("called_back_at", sa.Float(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("missed_followups")

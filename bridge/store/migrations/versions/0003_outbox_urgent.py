"""outbox: index for the dispatcher's look for fresh caller-card rows (ringing, answered, transferred)

Revision ID: 0003
Revises: h001
"""

from alembic import op

revision = "0003"
down_revision = "h001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_outbox_urgent", "outbox", ["connector", "status", "event_type", "created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_urgent", table_name="outbox")

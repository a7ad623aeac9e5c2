"""raw_events: quarantine for events the processor cannot fold (time and error)

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("raw_events", sa.Column("quarantined_at", sa.Float(), nullable=True))
    op.add_column("raw_events", sa.Column("error", sa.Text(), nullable=True))
    op.create_index("ix_raw_events_quarantined", "raw_events", ["quarantined_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_raw_events_quarantined", table_name="raw_events")
    with op.batch_alter_table("raw_events") as batch_op:
        batch_op.drop_column("error")
        batch_op.drop_column("quarantined_at")

"""raw_events: the quarantine index holds only quarantined rows

The full index on `quarantined_at` from 0004 matched every row (NULL) and SQLite's planner chose it for
the processor's query of unprocessed, unquarantined events: each pass then walked the whole table from
its first row. Partial, it serves the quarantine page and counts and nothing else.

Revision ID: 0006
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0004"
branch_labels = None
depends_on = None

QUARANTINED = sa.text("quarantined_at IS NOT NULL")


def upgrade() -> None:
    op.drop_index("ix_raw_events_quarantined", table_name="raw_events")
    op.create_index(
        "ix_raw_events_quarantined",
        "raw_events",
        ["quarantined_at"],
        unique=False,
        sqlite_where=QUARANTINED,
        postgresql_where=QUARANTINED,
    )


def downgrade() -> None:
    op.drop_index("ix_raw_events_quarantined", table_name="raw_events")
    op.create_index("ix_raw_events_quarantined", "raw_events", ["quarantined_at"], unique=False)

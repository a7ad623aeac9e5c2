"""widget guards: single-use form tokens; a site's requests by day for the daily cap

Revision ID: w002
Revises: w001
"""

import sqlalchemy as sa
from alembic import op

revision = "w002"
down_revision = "w001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "widget_form_tokens",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("site_key", sa.String(length=64), nullable=False),
        sa.Column("used_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("digest"),
    )
    with op.batch_alter_table("widget_form_tokens", schema=None) as batch_op:
        batch_op.create_index("ix_widget_form_tokens_used_at", ["used_at"], unique=False)
    with op.batch_alter_table("widget_requests", schema=None) as batch_op:
        batch_op.create_index("ix_widget_requests_site_created", ["site_key", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("widget_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_widget_requests_site_created")
    with op.batch_alter_table("widget_form_tokens", schema=None) as batch_op:
        batch_op.drop_index("ix_widget_form_tokens_used_at")
    op.drop_table("widget_form_tokens")

"""widget: sites, callback requests, abuse-limit hits, block list

The base of the widget's branch (label `widget`); it needs the core's tables of 0002. (Databases
migrated before the branch was split also got the core's `ix_legs_command` here; the core's 0007 now
makes it.)

Revision ID: w001
Revises: (branch base; depends on 0002)
"""

import sqlalchemy as sa
from alembic import op

revision = "w001"
down_revision = None
branch_labels = ("widget",)
depends_on = "0002"

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "widget_sites",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("secret", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "widget_requests",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("site_key", sa.String(length=64), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("visitor_id", sa.String(length=64), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("lang", sa.String(length=8), nullable=True),
        sa.Column("page_url", sa.Text(), nullable=True),
        sa.Column("referrer", sa.Text(), nullable=True),
        sa.Column("utm", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("phase", sa.String(length=24), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=True),
        sa.Column("claimed_until", sa.Float(), nullable=True),
        sa.Column("command_id", sa.String(length=160), nullable=True),
        sa.Column("entry_id", sa.String(length=160), nullable=True),
        sa.Column("last_result", sa.Integer(), nullable=True),
        sa.Column("failure", sa.String(length=64), nullable=True),
        sa.Column("dialled_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token", name="uq_widget_requests_token"),
    )
    with op.batch_alter_table("widget_requests", schema=None) as batch_op:
        batch_op.create_index("ix_widget_requests_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index("ix_widget_requests_command", ["command_id"], unique=False)

    op.create_table(
        "widget_hits",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("widget_hits", schema=None) as batch_op:
        batch_op.create_index("ix_widget_hits_lookup", ["scope", "key", "at"], unique=False)
        batch_op.create_index("ix_widget_hits_at", ["at"], unique=False)

    op.create_table(
        "widget_blocklist",
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("value", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "value"),
    )


def downgrade() -> None:
    op.drop_table("widget_blocklist")
    with op.batch_alter_table("widget_hits", schema=None) as batch_op:
        batch_op.drop_index("ix_widget_hits_at")
        batch_op.drop_index("ix_widget_hits_lookup")
    op.drop_table("widget_hits")
    with op.batch_alter_table("widget_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_widget_requests_command")
        batch_op.drop_index("ix_widget_requests_due")
    op.drop_table("widget_requests")
    op.drop_table("widget_sites")

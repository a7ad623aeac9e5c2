"""admin panel: panel users, saved settings, failed logins

Revision ID: a001
Revises: w001
"""

import sqlalchemy as sa
from alembic import op

revision = "a001"
down_revision = "w001"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "admin_users",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("lang", sa.String(length=8), nullable=False),
        sa.Column("extension", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username", name="uq_admin_users_username"),
    )
    op.create_table(
        "admin_settings",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "admin_login_failures",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("admin_login_failures", schema=None) as batch_op:
        batch_op.create_index("ix_admin_login_failures_key", ["key", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("admin_login_failures", schema=None) as batch_op:
        batch_op.drop_index("ix_admin_login_failures_key")
    op.drop_table("admin_login_failures")
    op.drop_table("admin_settings")
    op.drop_table("admin_users")

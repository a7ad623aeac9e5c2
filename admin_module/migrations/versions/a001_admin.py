"""admin panel: panel users, failed logins

The base of the admin panel's branch (label `admin`); it needs the core's tables of 0002. (Databases
migrated before the branch was split also got the saved-settings table `admin_settings` here; it is the
core's now, made by the core's 0007.)

Revision ID: a001
Revises: (branch base; depends on 0002)
"""

import sqlalchemy as sa
from alembic import op

revision = "a001"
down_revision = None
branch_labels = ("admin",)
depends_on = "0002"

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
    op.drop_table("admin_users")

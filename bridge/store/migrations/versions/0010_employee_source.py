"""employees: where each comes from, whether still active, their directory entry; directory_syncs

A directory (LDAP) sync creates and updates employees and deactivates those who left, never deleting them
(their calls keep their names); it remembers the values the directory last gave, so a local edit can win.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("employees") as batch:
        batch.add_column(sa.Column("source", sa.String(16), nullable=False, server_default="mango"))
        batch.add_column(sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch.add_column(sa.Column("directory_dn", sa.String(1024), nullable=True))
        batch.add_column(sa.Column("directory_values", sa.Text(), nullable=True))
    op.create_table(
        "directory_syncs",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("created", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("deactivated", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("directory_syncs")
    with op.batch_alter_table("employees") as batch:
        batch.drop_column("directory_values")
        batch.drop_column("directory_dn")
        batch.drop_column("active")
        batch.drop_column("source")

"""admin panel: Mango's roles (manager becomes employee), directory users and the groups a team leader leads

Revision ID: a003
Revises: a002
"""

import sqlalchemy as sa
from alembic import op

revision = "a003"
down_revision = "a002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("admin_users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source", sa.String(16), nullable=False, server_default="local"))
        batch_op.add_column(sa.Column("directory_dn", sa.String(1024), nullable=True))
        batch_op.add_column(sa.Column("role_source", sa.String(1024), nullable=True))
        batch_op.add_column(sa.Column("teams", sa.Text(), nullable=True))
    op.execute("UPDATE admin_users SET role = 'employee' WHERE role = 'manager'")


def downgrade() -> None:
    op.execute(
        "UPDATE admin_users SET role = 'manager' WHERE role IN ('employee', 'team_leader', 'marketer')"
    )
    with op.batch_alter_table("admin_users", schema=None) as batch_op:
        batch_op.drop_column("teams")
        batch_op.drop_column("role_source")
        batch_op.drop_column("directory_dn")
        batch_op.drop_column("source")

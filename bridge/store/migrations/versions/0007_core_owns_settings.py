"""core: the saved settings table and the legs' command index are the core's; one head again

`admin_settings` (the settings saved in the panel, read by every part of callbridge) and `ix_legs_command`
(the calls a PBX command caused) were made by the admin panel's and the widget's first migrations before
those became branches of their own. This revision makes them where they are missing (a new database) and
leaves them be where those migrations made them; it also merges the core's two heads.

Revision ID: 0007
Revises: 0005, 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = ("0005", "0006")
branch_labels = None
depends_on = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table("admin_settings"):
        op.create_table(
            "admin_settings",
            sa.Column("key", sa.String(length=64), nullable=False),
            sa.Column("value", sa.Text(), nullable=False),
            sa.Column("updated_at", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint("key"),
        )
    if "ix_legs_command" not in {index["name"] for index in inspector.get_indexes("legs")}:
        op.create_index("ix_legs_command", "legs", ["command_id"], unique=False)


def downgrade() -> None:
    """Keeps both: databases migrated before the split got them from the add-ons' first migrations."""

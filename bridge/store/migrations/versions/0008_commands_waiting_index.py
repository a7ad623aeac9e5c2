"""commands: an index for the journal's timeout sweep (status, updated_at)

The processor asks every few seconds for commands accepted or sent long ago whose result never came;
without this index that read walks the whole `commands` table.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_commands_waiting", "commands", ["status", "updated_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_commands_waiting", table_name="commands")

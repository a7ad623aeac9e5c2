"""history imports: jobs importing call history from Mango's stats/request

Revision ID: h001
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "h001"
down_revision = "0002"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "history_imports",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("date_from", sa.String(length=10), nullable=False),
        sa.Column("date_to", sa.String(length=10), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("chunks_total", sa.Integer(), nullable=False),
        sa.Column("chunks_done", sa.Integer(), nullable=False),
        sa.Column("rows_seen", sa.Integer(), nullable=False),
        sa.Column("calls_imported", sa.Integer(), nullable=False),
        sa.Column("calls_skipped", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_by", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("history_imports", schema=None) as batch_op:
        batch_op.create_index("ix_history_imports_state", ["state", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("history_imports", schema=None) as batch_op:
        batch_op.drop_index("ix_history_imports_state")
    op.drop_table("history_imports")

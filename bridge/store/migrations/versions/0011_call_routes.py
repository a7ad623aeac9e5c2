"""call_routes: where a call waiting in the IVR was put through (familiar or responsible employee) and why

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "call_routes",
        sa.Column("entry_id", sa.String(160), primary_key=True),
        sa.Column("ivr_call_id", sa.String(160), nullable=False),
        sa.Column("customer_number", sa.String(128), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("extension", sa.String(32), nullable=True),
        sa.Column("employee_name", sa.String(255), nullable=True),
        sa.Column("reason", sa.String(24), nullable=True),
        sa.Column("source", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("command_id", sa.String(160), nullable=True),
        sa.Column("decided_ms", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_call_routes_created", "call_routes", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_call_routes_created", table_name="call_routes")
    op.drop_table("call_routes")

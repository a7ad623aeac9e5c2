"""legs: a transfer says from whom it came and how (transferred_from, transfer_kind)

The call page and the read API mark a transferred call; the kind (blind or consultative) is decided from the
leg's events when they are folded, so it is stored with the leg.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("legs", sa.Column("transferred_from", sa.String(32), nullable=True))
    op.add_column("legs", sa.Column("transfer_kind", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("legs") as batch:
        batch.drop_column("transfer_kind")
        batch.drop_column("transferred_from")

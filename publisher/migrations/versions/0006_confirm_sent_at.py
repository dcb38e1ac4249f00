"""when each subscriber was last sent a confirmation link

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A sign-up that is never confirmed is deleted once its latest link has expired; until
    # now only the first sign-up's time was kept, so that is the best guess for old rows.
    # Plain ALTER TABLE (SQLite 3.35+ and PostgreSQL): a batch copy of the table would drop
    # the old one, and with foreign keys on that deletes every subscriber's outbox rows.
    op.add_column("subscribers", sa.Column("confirm_sent_at", sa.DateTime))
    op.execute(
        "UPDATE subscribers SET confirm_sent_at = created_at "
        "WHERE status = 'pending' AND confirm_sent_at IS NULL"
    )


def downgrade() -> None:
    op.drop_column("subscribers", "confirm_sent_at")

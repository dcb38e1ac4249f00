"""subscribers and the delivery outbox

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscribers",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        # Normalised by email-validator (lower case, ASCII domain): one row per mailbox.
        sa.Column("email", sa.String(320), nullable=False, unique=True),
        sa.Column("name", sa.Text, nullable=False, server_default=""),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("bounce_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("confirmed_at", sa.DateTime),
        sa.Column("unsubscribed_at", sa.DateTime),
        sa.CheckConstraint(
            "status IN ('pending', 'active', 'unsubscribed', 'bounced')",
            name="ck_subscribers_status",
        ),
    )
    op.create_index("ix_subscribers_status", "subscribers", ["status", "id"])
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("issue_number", sa.Integer, sa.ForeignKey("issues.number"), nullable=False),
        sa.Column(
            "subscriber_id",
            sa.Integer,
            sa.ForeignKey("subscribers.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime, nullable=False),
        sa.Column("last_attempt_at", sa.DateTime),
        sa.Column("last_reply", sa.Text),
        sa.Column("message_id", sa.String(255)),
        sa.Column("claimed_by", sa.String(120)),
        sa.Column("claimed_at", sa.DateTime),
        sa.Column("sent_at", sa.DateTime),
        # The database itself guarantees one message per subscriber and issue.
        sa.UniqueConstraint("issue_number", "subscriber_id", name="uq_outbox_issue_subscriber"),
        sa.CheckConstraint(
            "state IN ('pending', 'sent', 'deferred', 'failed', 'skipped')",
            name="ck_outbox_state",
        ),
    )
    op.create_index("ix_outbox_due", "outbox", ["issue_number", "state", "next_attempt_at"])
    op.create_index("ix_outbox_sent_at", "outbox", ["sent_at"])
    op.create_index("ix_outbox_subscriber", "outbox", ["subscriber_id"])


def downgrade() -> None:
    op.drop_table("outbox")
    op.drop_table("subscribers")

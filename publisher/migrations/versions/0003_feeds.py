"""upstream feeds: fetch state per feed, entry and link keys on articles

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feeds",
        # The URL as configured in settings.toml: the key, even after a permanent redirect.
        sa.Column("url", sa.String(2000), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("current_url", sa.Text),
        sa.Column("etag", sa.Text),
        sa.Column("last_modified", sa.Text),
        sa.Column("body_hash", sa.String(64)),
        sa.Column("last_polled", sa.DateTime),
        sa.Column("last_success", sa.DateTime),
        sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt", sa.DateTime),
        sa.Column("gone", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("last_error", sa.Text),
    )
    with op.batch_alter_table("articles") as batch:
        batch.add_column(sa.Column("feed_entry_key", sa.String(64)))
        batch.add_column(sa.Column("feed_link_key", sa.String(64)))
    op.create_index("ix_articles_feed_entry_key", "articles", ["feed_entry_key"])
    op.create_index("ix_articles_feed_link_key", "articles", ["feed_link_key"])


def downgrade() -> None:
    op.drop_index("ix_articles_feed_link_key", table_name="articles")
    op.drop_index("ix_articles_feed_entry_key", table_name="articles")
    # Plain ALTER TABLE (SQLite 3.35+): a batch copy would drop the articles table, which
    # foreign keys from issue_articles forbid once any issue is published.
    op.drop_column("articles", "feed_link_key")
    op.drop_column("articles", "feed_entry_key")
    op.drop_table("feeds")

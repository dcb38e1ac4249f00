"""articles collected from files and feeds

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "articles",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("slug", sa.String(120), nullable=False, unique=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("author", sa.Text),
        sa.Column("publication", sa.Text),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("content_html", sa.Text, nullable=False),
        sa.Column("url", sa.Text),
        sa.Column("tags", sa.Text, nullable=False),
        sa.Column("draft", sa.Boolean, nullable=False),
        sa.Column("date", sa.DateTime, nullable=False),
        sa.Column("updated", sa.DateTime),
        sa.Column("collected_at", sa.DateTime, nullable=False),
        sa.Column("source_kind", sa.String(8), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("source_size", sa.BigInteger),
        sa.Column("source_mtime_ns", sa.BigInteger),
        sa.Column("content_hash", sa.String(64)),
        sa.Column("source_missing", sa.Boolean, nullable=False),
    )
    op.create_index("ix_articles_collected_at", "articles", ["collected_at"])
    op.create_index("ix_articles_date", "articles", ["date"])


def downgrade() -> None:
    op.drop_table("articles")

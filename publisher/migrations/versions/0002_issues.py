"""published issues and which articles each carries

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "issues",
        sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("folder", sa.String(40), nullable=False, unique=True),
        sa.Column("published_at", sa.DateTime, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
    )
    op.create_table(
        "issue_articles",
        sa.Column(
            "issue_number", sa.Integer, sa.ForeignKey("issues.number"), nullable=False
        ),
        # Unique: an article appears in one issue only, whatever races the code has.
        sa.Column(
            "article_id", sa.String(40), sa.ForeignKey("articles.id"), nullable=False, unique=True
        ),
        sa.Column("position", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("issue_number", "position"),
    )


def downgrade() -> None:
    op.drop_table("issue_articles")
    op.drop_table("issues")

"""locks, job runs and the scheduler's job store

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One row per held lock: the primary key makes taking a free lock a single atomic insert.
    op.create_table(
        "locks",
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("token", sa.String(32), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("purpose", sa.String(120), nullable=False),
        sa.Column("since", sa.DateTime, nullable=False),
        sa.Column("heartbeat_at", sa.DateTime, nullable=False),
    )
    # The last run of each scheduled job, for `publisher status` and for resuming after a stop.
    op.create_table(
        "job_runs",
        sa.Column("job", sa.String(40), primary_key=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("scheduled_for", sa.DateTime),
        sa.Column("summary", sa.Text, nullable=False, server_default=""),
        sa.Column("issue_number", sa.Integer),
        sa.CheckConstraint(
            "outcome IN ('running', 'ok', 'failed', 'stopped', 'missed')",
            name="ck_job_runs_outcome",
        ),
    )
    # APScheduler 3.x's SQLAlchemyJobStore table, exactly as it would create it: made here so
    # the schema has one owner and `publisher status` can read it before any `publisher run`.
    op.create_table(
        "apscheduler_jobs",
        sa.Column("id", sa.Unicode(191), primary_key=True),
        sa.Column("next_run_time", sa.Float(25), index=True),
        sa.Column("job_state", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("apscheduler_jobs")
    op.drop_table("job_runs")
    op.drop_table("locks")

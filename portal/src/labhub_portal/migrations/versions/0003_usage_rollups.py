"""usage rollups: per-period sums of closed sessions for fast /api/stats (labhub_portal.rollups)

Two tables: ``usage_rollups`` (one row per grain, local period, user and department: the closed
sessions' billable seconds, resource-seconds, cost and session counts) and ``usage_rollup_state``
(the zone and formula version the rows were built for).  The rows are built, and the triggers that
keep them current are installed, by the portal itself (rollups.ensure) when it starts: until then
/api/stats computes from the sessions as before.  Nothing else changes.

Revision ID: 0003_usage_rollups
Revises: 0002_bills_over_time
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = "0003_usage_rollups"
down_revision = "0002_bills_over_time"
branch_labels = None
depends_on = None

SPAN = "tstzrange(started_at, GREATEST(started_at, ended_at))"
_SUMS = ("seconds", "cpu_core_seconds", "gpu_seconds", "memory_gib_seconds", "cost_seconds",
         "cpu_core_seconds_default_rate", "gpu_seconds_default_rate", "memory_gib_seconds_default_rate")


def upgrade() -> None:
    op.create_table(
        "usage_rollups",
        sa.Column("grain", sa.String(1), primary_key=True),
        sa.Column("period", sa.Date, primary_key=True),
        sa.Column("username", sa.String(255), primary_key=True),
        sa.Column("dept_key", sa.Integer, primary_key=True),
        sa.Column("sessions", sa.Integer, nullable=False),
        sa.Column("sessions_started", sa.Integer, nullable=False),
        *(sa.Column(name, sa.Float, nullable=False) for name in _SUMS),
    )
    op.create_index("ix_usage_rollups_empty", "usage_rollups", ["grain"],
                    postgresql_where=sa.text("sessions = 0"), sqlite_where=sa.text("sessions = 0"))
    # the closed sessions overlapping a stretch of time (the partial days at the ends of a range);
    # PostgreSQL only, as the rollups (the demo's SQLite computes from the sessions)
    if op.get_bind().dialect.name == "postgresql":
        op.create_index("ix_container_sessions_span", "container_sessions", [sa.text(SPAN)], postgresql_using="gist",
                        postgresql_where=sa.text("ended_at IS NOT NULL"))
    op.create_table(
        "usage_rollup_state",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("zone", sa.String(64)),
        sa.Column("version", sa.String(64)),
        sa.Column("built_at", sa.DateTime(timezone=True)),
        sa.Column("build_seconds", sa.Float),
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for event in ("insert", "update", "delete", "truncate"):
            op.execute(f"DROP TRIGGER IF EXISTS labhub_rollup_{event} ON container_sessions")
            op.execute(f"DROP FUNCTION IF EXISTS labhub_rollup_{event}()")
    op.drop_table("usage_rollup_state")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_container_sessions_span", table_name="container_sessions")
    op.drop_index("ix_usage_rollups_empty", table_name="usage_rollups")
    op.drop_table("usage_rollups")

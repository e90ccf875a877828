"""initial schema: departments, users, container_sessions, audit_log, sync_watermarks

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-21
"""
import sqlalchemy as sa
from alembic import op

from labhub_portal.db.models import UTCDateTime

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    big_pk = sa.BigInteger().with_variant(sa.Integer, "sqlite")
    op.create_table(
        "departments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("cpu_core_hour_rate", sa.Numeric(12, 4)),
        sa.Column("gpu_hour_rate", sa.Numeric(12, 4)),
        sa.Column("memory_gib_hour_rate", sa.Numeric(12, 4)),
        sa.Column("gpu_model_rates", sa.JSON, nullable=False, server_default=sa.text("'{}'")),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(255), nullable=False, unique=True),
        sa.Column("display_name", sa.String(255)),
        sa.Column("department_id", sa.Integer, sa.ForeignKey("departments.id", ondelete="SET NULL")),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_users_department_id", "users", ["department_id"])
    if bind.dialect.name == "postgresql":
        op.execute("CREATE SEQUENCE container_sessions_change_seq")
    op.create_table(
        "container_sessions",
        sa.Column("id", big_pk, primary_key=True),
        sa.Column("pod_uid", sa.String(64), nullable=False, unique=True),
        sa.Column("pod_name", sa.String(253), nullable=False),
        sa.Column("server_name", sa.String(255), nullable=False),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("image", sa.String(512)),
        sa.Column("profile", sa.String(255)),
        sa.Column("node", sa.String(253)),
        sa.Column("cpu_request", sa.Float),
        sa.Column("cpu_limit", sa.Float),
        sa.Column("memory_request", sa.BigInteger),
        sa.Column("memory_limit", sa.BigInteger),
        sa.Column("gpu_request", sa.Integer, nullable=False),
        sa.Column("gpu_limit", sa.Integer, nullable=False),
        sa.Column("gpu_model", sa.String(255)),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("first_seen_at", UTCDateTime, nullable=False),
        sa.Column("last_seen_at", UTCDateTime, nullable=False),
        sa.Column("ended_at", UTCDateTime),
        sa.Column("end_reason", sa.String(32)),
        sa.Column("unobserved_seconds", sa.Float, nullable=False, server_default=sa.text("0")),
        sa.Column("source", sa.String(16), nullable=False, server_default=sa.text("'recorder'")),
        sa.Column("change_seq", sa.BigInteger, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_container_sessions_username", "container_sessions", ["username"])
    op.create_index("ix_container_sessions_started_at", "container_sessions", ["started_at"])
    op.create_index("ix_container_sessions_ended_at", "container_sessions", ["ended_at"])
    op.create_index("ix_container_sessions_change_seq", "container_sessions", ["change_seq"])
    op.create_index("ix_container_sessions_open", "container_sessions", ["namespace"],
                    postgresql_where=sa.text("ended_at IS NULL"), sqlite_where=sa.text("ended_at IS NULL"))
    op.create_table(
        "audit_log",
        sa.Column("id", big_pk, primary_key=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(512), nullable=False),
        sa.Column("result", sa.String(32), nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_table(
        "sync_watermarks",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("last_change_seq", sa.BigInteger, nullable=False),
        sa.Column("last_run_at", UTCDateTime),
        sa.Column("last_success_at", UTCDateTime),
        sa.Column("last_rows", sa.Integer, nullable=False),
        sa.Column("last_status", sa.String(16), nullable=False),
        sa.Column("last_error", sa.Text),
    )


def downgrade() -> None:
    for table in ("sync_watermarks", "audit_log", "container_sessions", "users", "departments"):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP SEQUENCE IF EXISTS container_sessions_change_seq")

"""GPU idle stop policy: the servers warned and when they stop (labhub_portal.idlestop)

One table, ``gpu_idle_warnings``: a row per single-user pod (by uid) whose user was told that the
server stops at ``stop_at`` unless its GPUs are used again; kept in the database so a restart of the
portal never stops a server before its grace period. Nothing else changes.

Revision ID: 0004_gpu_idle_warnings
Revises: 0003_usage_rollups
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

from labhub_portal.db.models import UTCDateTime

revision = "0004_gpu_idle_warnings"
down_revision = "0003_usage_rollups"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gpu_idle_warnings",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("pod_uid", sa.String(64), nullable=False, unique=True),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("pod_name", sa.String(253), nullable=False),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("server_name", sa.String(255), nullable=False),
        sa.Column("warned_at", UTCDateTime, nullable=False),
        sa.Column("stop_at", UTCDateTime, nullable=False),
        sa.Column("stopped_at", UTCDateTime),
        sa.Column("user_told", sa.Boolean, nullable=False),
        sa.Column("notice", sa.String(512), nullable=False),
        sa.Column("figures", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("gpu_idle_warnings")

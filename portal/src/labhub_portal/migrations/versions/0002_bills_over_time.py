"""bills over time: department membership history, department rate periods, and each session's
billing terms (its department and rates when it started)

Existing data keeps its bills: every user's current department becomes a membership from the
beginning, every department's current rates a period from the beginning, and every session gets the
terms those give, which are the terms it was billed with before (so no report row changes).

Revision ID: 0002_bills_over_time
Revises: 0001_initial
Create Date: 2026-12-06
"""
import json

import sqlalchemy as sa
from alembic import op

from labhub_portal.db.models import BEGINNING, UTCDateTime

revision = "0002_bills_over_time"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "department_memberships",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("department_id", sa.Integer, sa.ForeignKey("departments.id", ondelete="SET NULL")),
        sa.Column("valid_from", UTCDateTime, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_department_memberships_user", "department_memberships", ["username", "valid_from"],
                    unique=True)
    op.create_table(
        "department_rate_periods",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("department_id", sa.Integer, sa.ForeignKey("departments.id", ondelete="CASCADE"), nullable=False),
        sa.Column("effective_from", UTCDateTime, nullable=False),
        sa.Column("cpu_core_hour_rate", sa.Numeric(12, 4)),
        sa.Column("gpu_hour_rate", sa.Numeric(12, 4)),
        sa.Column("memory_gib_hour_rate", sa.Numeric(12, 4)),
        sa.Column("gpu_model_rates", sa.JSON, nullable=False, server_default=sa.text("'{}'")),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_department_rate_periods_dept", "department_rate_periods", ["department_id", "effective_from"],
                    unique=True)
    with op.batch_alter_table("container_sessions") as batch:
        batch.add_column(sa.Column("department_id", sa.Integer,
                                   sa.ForeignKey("departments.id", ondelete="SET NULL",
                                                 name="fk_container_sessions_department_id")))
        batch.add_column(sa.Column("cpu_core_hour_rate", sa.Numeric(12, 4)))
        batch.add_column(sa.Column("gpu_hour_rate", sa.Numeric(12, 4)))
        batch.add_column(sa.Column("memory_gib_hour_rate", sa.Numeric(12, 4)))
    op.create_index("ix_container_sessions_department_id", "container_sessions", ["department_id"])

    bind = op.get_bind()
    beginning = sa.bindparam("beginning", BEGINNING, type_=UTCDateTime)
    bind.execute(sa.text("""
INSERT INTO department_memberships (username, department_id, valid_from, created_at)
SELECT username, department_id, :beginning, :beginning FROM users WHERE department_id IS NOT NULL
""").bindparams(beginning))
    bind.execute(sa.text("""
INSERT INTO department_rate_periods (department_id, effective_from, cpu_core_hour_rate, gpu_hour_rate,
                                     memory_gib_hour_rate, gpu_model_rates, created_at)
SELECT id, :beginning, cpu_core_hour_rate, gpu_hour_rate, memory_gib_hour_rate, gpu_model_rates, :beginning
FROM departments
""").bindparams(beginning))
    # each session's terms: its user's department and that department's rates (as billed until now)
    bind.execute(sa.text("""
UPDATE container_sessions SET department_id =
  (SELECT u.department_id FROM users u WHERE u.username = container_sessions.username)
"""))
    bind.execute(sa.text("""
UPDATE container_sessions SET
  cpu_core_hour_rate = (SELECT d.cpu_core_hour_rate FROM departments d WHERE d.id = container_sessions.department_id),
  gpu_hour_rate = (SELECT d.gpu_hour_rate FROM departments d WHERE d.id = container_sessions.department_id),
  memory_gib_hour_rate = (SELECT d.memory_gib_hour_rate FROM departments d
                          WHERE d.id = container_sessions.department_id)
WHERE department_id IS NOT NULL
"""))
    # per-GPU-model rates (a JSON object per department): resolved here as billing.Rates.gpu_rate does
    from labhub_portal.billing import model_rate

    models = {row.id: row.gpu_model_rates for row in bind.execute(sa.text("SELECT id, gpu_model_rates FROM departments"))}
    for department_id, raw in models.items():
        rates = raw if isinstance(raw, dict) else json.loads(raw or "{}")
        for model in rates:
            rate = model_rate(rates, model)
            if rate is not None:
                bind.execute(sa.text("UPDATE container_sessions SET gpu_hour_rate = :rate "
                                     "WHERE department_id = :department AND gpu_model = :model"),
                             {"rate": rate, "department": department_id, "model": model})


def downgrade() -> None:
    op.drop_index("ix_container_sessions_department_id", table_name="container_sessions")
    with op.batch_alter_table("container_sessions") as batch:
        batch.drop_constraint("fk_container_sessions_department_id", type_="foreignkey")
        for column in ("memory_gib_hour_rate", "gpu_hour_rate", "cpu_core_hour_rate", "department_id"):
            batch.drop_column(column)
    op.drop_table("department_rate_periods")
    op.drop_table("department_memberships")

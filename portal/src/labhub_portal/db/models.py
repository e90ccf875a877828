"""ORM models.  PostgreSQL in production (timestamptz, a sequence for change counters); the same
models run on SQLite for the demo only."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

from sqlalchemy import JSON, BigInteger, Boolean, Date, DateTime, Float, ForeignKey, Index, Integer, Numeric, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator



class UTCDateTime(TypeDecorator):
    """timestamptz on PostgreSQL; always returns aware UTC datetimes (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; the portal stores UTC only")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Department(Base):
    __tablename__ = "departments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    cpu_core_hour_rate: Mapped[Decimal | None] = mapped_column(Numeric(12, 4))
    gpu_hour_rate: Mapped[Decimal | None] = mapped_column(Numeric(12, 4))
    memory_gib_hour_rate: Mapped[Decimal | None] = mapped_column(Numeric(12, 4))
    gpu_model_rates: Mapped[dict] = mapped_column(JSON, default=dict, server_default=text("'{}'"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    users: Mapped[list["User"]] = relationship(back_populates="department")


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(255), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(255))
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    department: Mapped[Department | None] = relationship(back_populates="users")


class DepartmentMembership(Base):
    """A user's department from ``valid_from`` until the user's next membership (billing.md).  A
    user's first membership starts at BEGINNING: it applies to every session before it too."""

    __tablename__ = "department_memberships"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(255))
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id", ondelete="SET NULL"))
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_department_memberships_user", "username", "valid_from", unique=True),)


class DepartmentRatePeriod(Base):
    """A department's rates from ``effective_from`` until its next period (NULL = the default rate).
    A department's first period starts at BEGINNING."""

    __tablename__ = "department_rate_periods"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id", ondelete="CASCADE"))
    effective_from: Mapped[datetime] = mapped_column(UTCDateTime)
    cpu_core_hour_rate: Mapped[Decimal | None] = mapped_column(Numeric(12, 4))
    gpu_hour_rate: Mapped[Decimal | None] = mapped_column(Numeric(12, 4))
    memory_gib_hour_rate: Mapped[Decimal | None] = mapped_column(Numeric(12, 4))
    gpu_model_rates: Mapped[dict] = mapped_column(JSON, default=dict, server_default=text("'{}'"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_department_rate_periods_dept", "department_id", "effective_from", unique=True),)


class ContainerSession(Base):
    """One single-user pod's life (pod uid unique).  See README "gap rule" for the time columns."""

    __tablename__ = "container_sessions"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    pod_uid: Mapped[str] = mapped_column(String(64), unique=True)
    pod_name: Mapped[str] = mapped_column(String(253))
    server_name: Mapped[str] = mapped_column(String(255), default="")
    namespace: Mapped[str] = mapped_column(String(63))
    username: Mapped[str] = mapped_column(String(255), index=True)
    image: Mapped[str | None] = mapped_column(String(512))
    profile: Mapped[str | None] = mapped_column(String(255))
    node: Mapped[str | None] = mapped_column(String(253))
    cpu_request: Mapped[float | None] = mapped_column(Float)
    cpu_limit: Mapped[float | None] = mapped_column(Float)
    memory_request: Mapped[int | None] = mapped_column(BigInteger)
    memory_limit: Mapped[int | None] = mapped_column(BigInteger)
    gpu_request: Mapped[int] = mapped_column(Integer, default=0)
    gpu_limit: Mapped[int] = mapped_column(Integer, default=0)
    gpu_model: Mapped[str | None] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    end_reason: Mapped[str | None] = mapped_column(String(32))
    unobserved_seconds: Mapped[float] = mapped_column(Float, default=0.0, server_default=text("0"))
    source: Mapped[str] = mapped_column(String(16), default="recorder", server_default=text("'recorder'"))
    change_seq: Mapped[int] = mapped_column(BigInteger, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Billing terms in force when the session started (billing.py, "Bills over time"): the user's
    # department then and that department's rates then (NULL rate = the configured default; the GPU
    # rate already resolved for gpu_model).  Set on insert, recomputed by billing.rebill.
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id", ondelete="SET NULL"),
                                                      index=True)
    cpu_core_hour_rate: Mapped[Decimal | None] = mapped_column(Numeric(12, 4))
    gpu_hour_rate: Mapped[Decimal | None] = mapped_column(Numeric(12, 4))
    memory_gib_hour_rate: Mapped[Decimal | None] = mapped_column(Numeric(12, 4))

    __table_args__ = (
        Index("ix_container_sessions_open", "namespace", postgresql_where=text("ended_at IS NULL"),
              sqlite_where=text("ended_at IS NULL")),
        # closed sessions overlapping a stretch of time (labhub_portal.rollups; PostgreSQL only)
        Index("ix_container_sessions_span", text("tstzrange(started_at, GREATEST(started_at, ended_at))"),
              postgresql_using="gist", postgresql_where=text("ended_at IS NOT NULL")).ddl_if(dialect="postgresql"),
    )


class AuditLog(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(512))
    result: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict] = mapped_column(JSON, default=dict)


class GpuIdleWarning(Base):
    """A server the GPU idle stop policy warned (labhub_portal.idlestop): its user was told (or not)
    at ``warned_at`` that it stops at ``stop_at`` unless its GPUs are used again. Kept across
    restarts so no server is stopped before its grace period; removed when the server is busy again
    or gone. ``stopped_at``: the policy stopped it (the row stays until the pod is gone)."""

    __tablename__ = "gpu_idle_warnings"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    pod_uid: Mapped[str] = mapped_column(String(64), unique=True)
    namespace: Mapped[str] = mapped_column(String(63))
    pod_name: Mapped[str] = mapped_column(String(253))
    username: Mapped[str] = mapped_column(String(255))
    server_name: Mapped[str] = mapped_column(String(255), default="")
    warned_at: Mapped[datetime] = mapped_column(UTCDateTime)
    stop_at: Mapped[datetime] = mapped_column(UTCDateTime)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    user_told: Mapped[bool] = mapped_column(Boolean, default=False)
    notice: Mapped[str] = mapped_column(String(512), default="")
    figures: Mapped[dict] = mapped_column(JSON, default=dict)


class SyncWatermark(Base):
    """Report sync progress: rows with change_seq <= last_change_seq are in MySQL (advanced after commit)."""

    __tablename__ = "sync_watermarks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_change_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_rows: Mapped[int] = mapped_column(Integer, default=0)
    last_status: Mapped[str] = mapped_column(String(16), default="never")
    last_error: Mapped[str | None] = mapped_column(Text)


class UsageRollup(Base):
    """Closed sessions summed per grain ('d' day, 'w' week from Monday, 'm' month), local period,
    user ('' = every user) and department (dept_key 0 = none): see labhub_portal.rollups."""

    __tablename__ = "usage_rollups"

    grain: Mapped[str] = mapped_column(String(1), primary_key=True)
    period: Mapped[date] = mapped_column(Date, primary_key=True)
    username: Mapped[str] = mapped_column(String(255), primary_key=True)
    dept_key: Mapped[int] = mapped_column(Integer, primary_key=True)
    sessions: Mapped[int] = mapped_column(Integer)
    sessions_started: Mapped[int] = mapped_column(Integer)
    seconds: Mapped[float] = mapped_column(Float)
    cpu_core_seconds: Mapped[float] = mapped_column(Float)
    gpu_seconds: Mapped[float] = mapped_column(Float)
    memory_gib_seconds: Mapped[float] = mapped_column(Float)
    cost_seconds: Mapped[float] = mapped_column(Float)
    cpu_core_seconds_default_rate: Mapped[float] = mapped_column(Float)
    gpu_seconds_default_rate: Mapped[float] = mapped_column(Float)
    memory_gib_seconds_default_rate: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_usage_rollups_empty", "grain", postgresql_where=text("sessions = 0"),
                            sqlite_where=text("sessions = 0")),)


class UsageRollupState(Base):
    """The zone and formula version usage_rollups was built for (one row, id 1; none: not built)."""

    __tablename__ = "usage_rollup_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    zone: Mapped[str | None] = mapped_column(String(64))
    version: Mapped[str | None] = mapped_column(String(64))
    built_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    build_seconds: Mapped[float | None] = mapped_column(Float)


# Where a user's first membership and a department's first rates start: before any session.
BEGINNING = datetime(1970, 1, 1, tzinfo=timezone.utc)

__all__ = ["Base", "BEGINNING", "Department", "DepartmentMembership", "DepartmentRatePeriod", "User",
           "ContainerSession", "AuditLog", "GpuIdleWarning", "SyncWatermark", "UsageRollup", "UsageRollupState", "UTCDateTime", "utcnow"]

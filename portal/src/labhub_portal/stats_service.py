"""Usage aggregation: CPU/GPU/memory hours and cost per user, department, day, month or in total.

PostgreSQL: one SQL statement (days/months cut in the configured zone with generate_series).
SQLite (demo): the same arithmetic in Python (:func:`python_stats`), which is also the oracle the
tests compare the SQL against.  See labhub_portal.billing for the formula.  A session counts for the
department, and costs the rates, of its billing terms (labhub_portal.billing_terms: those in force
when it started), not its user's current department.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

from sqlalchemy import and_, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from .billing import GIB, Usage, billable_seconds, session_rates
from .config import Settings
from .db.engine import dialect_name
from .db.models import ContainerSession, Department

GroupBy = Literal["total", "user", "department", "day", "month"]
NO_DEPARTMENT = "(none)"
MAX_BUCKETS = 3700


def month_start(moment: datetime, settings: Settings) -> datetime:
    local = moment.astimezone(settings.zone)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0).astimezone(moment.tzinfo)


def day_start(moment: datetime, settings: Settings) -> datetime:
    local = moment.astimezone(settings.zone)
    return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(moment.tzinfo)


def buckets(lo: datetime, hi: datetime, unit: str, settings: Settings) -> list[tuple[str, datetime, datetime]]:
    """Local calendar days/months overlapping [lo, hi): (label, start UTC, end UTC)."""
    zone = settings.zone
    cur = lo.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "month":
        cur = cur.replace(day=1)
    out = []
    while cur.astimezone(lo.tzinfo) < hi:
        if unit == "day":
            nxt_naive = cur.replace(tzinfo=None) + timedelta(days=1)
            label = cur.strftime("%Y-%m-%d")
        else:
            y, m = (cur.year + 1, 1) if cur.month == 12 else (cur.year, cur.month + 1)
            nxt_naive = cur.replace(tzinfo=None, year=y, month=m)
            label = cur.strftime("%Y-%m")
        nxt = nxt_naive.replace(tzinfo=zone)
        out.append((label, cur.astimezone(lo.tzinfo), nxt.astimezone(lo.tzinfo)))
        cur = nxt
        if len(out) > MAX_BUCKETS:
            raise ValueError("too many buckets")
    return out


def _filters(user: str | None, department: str | None):
    conds = []
    if user:
        conds.append(ContainerSession.username == user)
    if department:
        if department == NO_DEPARTMENT:
            conds.append(Department.id.is_(None))
        else:
            conds.append(Department.name == department)
    return conds


async def python_stats(session: AsyncSession, settings: Settings, group_by: GroupBy, lo: datetime, hi: datetime,
                       now: datetime, user: str | None = None, department: str | None = None) -> list[dict]:
    stmt = (select(ContainerSession, Department)
            .outerjoin(Department, Department.id == ContainerSession.department_id)
            .where(ContainerSession.started_at < hi,
                   or_(ContainerSession.ended_at.is_(None), ContainerSession.ended_at > lo),
                   *_filters(user, department)))
    rows = (await session.execute(stmt)).all()
    groups: dict[str, Usage] = defaultdict(Usage)
    cuts = buckets(lo, hi, group_by, settings) if group_by in ("day", "month") else [("total", lo, hi)]
    for cs, dept in rows:
        rates = session_rates(cs, settings)
        for label, b_lo, b_hi in cuts:
            seconds = billable_seconds(cs, now, settings.gap_seconds, (b_lo, b_hi))
            if seconds <= 0:
                continue
            key = {"user": cs.username, "department": dept.name if dept else NO_DEPARTMENT}.get(group_by, label)
            groups[key].add(cs, seconds, rates)
    if group_by in ("day", "month"):
        return [{"key": label, **groups[label].as_dict()} for label, _, _ in cuts]
    return [{"key": key, **usage.as_dict()} for key, usage in sorted(groups.items())]


def session_cte(where: list[str]) -> str:
    """The sessions of a question with what billing needs (``b``): requests, rates (the session's
    terms, else the configured default), effective end (gap rule) and span.  Shared by the full
    computation and by labhub_portal.rollups for the part it computes from the sessions."""
    return f"""b AS (
  SELECT cs.username, d.name AS department, cs.started_at, cs.ended_at IS NULL AS open,
         COALESCE(cs.cpu_request, 0) AS cpu, CAST(cs.gpu_request AS double precision) AS gpu, CAST(COALESCE(cs.memory_request, 0) AS double precision) / {GIB} AS mem,
         x.eff_end,
         date_part('epoch', x.eff_end - cs.started_at) AS span,
         cs.unobserved_seconds AS unobserved,
         CAST(COALESCE(cs.cpu_core_hour_rate, :cpu_rate) AS double precision) AS cpu_rate,
         CAST(COALESCE(cs.gpu_hour_rate, :gpu_rate) AS double precision) AS gpu_rate,
         CAST(COALESCE(cs.memory_gib_hour_rate, :mem_rate) AS double precision) AS mem_rate
  FROM container_sessions cs
  LEFT JOIN departments d ON d.id = cs.department_id
  CROSS JOIN LATERAL (SELECT COALESCE(cs.ended_at,
        LEAST(CAST(:now AS timestamptz), cs.last_seen_at + make_interval(secs => :gap))) AS eff_end) x
  WHERE {' AND '.join(where)}
)"""


def filter_conditions(user: str | None, department: str | None) -> list[str]:
    conds = []
    if user:
        conds.append("cs.username = :user")
    if department:
        conds.append("d.id IS NULL" if department == NO_DEPARTMENT else "d.name = :department")
    return conds


def bucketed_source(group_by: GroupBy, rel: str, wlo: str, whi: str) -> tuple[str, str, str, str]:
    """FROM clause, key and window bounds for the rows of ``rel`` (with started_at and eff_end)
    within [wlo, whi): day/month buckets generated per row (only the buckets it overlaps), so the
    cost grows with rows x buckets spanned, not rows x buckets in the range."""
    if group_by in ("day", "month"):
        unit = group_by
        fmt = "YYYY-MM-DD" if unit == "day" else "YYYY-MM"
        source = f"""{rel} CROSS JOIN LATERAL (
    SELECT to_char(g, '{fmt}') AS key, GREATEST(g AT TIME ZONE :zone, {wlo}) AS wlo,
           LEAST((g + interval '1 {unit}') AT TIME ZONE :zone, {whi}) AS whi
    FROM generate_series(date_trunc('{unit}', GREATEST({rel}.started_at, {wlo}) AT TIME ZONE :zone),
                         LEAST({rel}.eff_end, {whi}) AT TIME ZONE :zone, interval '1 {unit}') AS g
  ) AS bk"""
        return source, "bk.key", "bk.wlo", "bk.whi"
    key = {"user": f"{rel}.username", "department": f"COALESCE({rel}.department, '{NO_DEPARTMENT}')",
           "total": "'total'"}[group_by]
    return rel, key, wlo, whi


def billable_seconds_sql(rel: str, wlo: str, whi: str) -> str:
    """A row's billable seconds within [wlo, whi): the overlap, less its share of unobserved time."""
    return f"""CASE WHEN {rel}.span > 0 THEN
           GREATEST(0, date_part('epoch', LEAST({rel}.eff_end, {whi}) - GREATEST({rel}.started_at, {wlo})))
           * GREATEST(0, {rel}.span - {rel}.unobserved) / {rel}.span
         ELSE 0 END"""


def _sql(group_by: GroupBy, user: str | None, department: str | None) -> str:
    """The full computation: one aggregate statement over the sessions of the range."""
    where = ["cs.started_at < :hi", "(cs.ended_at IS NULL OR cs.ended_at > :lo)", *filter_conditions(user, department)]
    source, key, wlo, whi = bucketed_source(group_by, "b", "CAST(:lo AS timestamptz)", "CAST(:hi AS timestamptz)")
    return f"""
WITH {session_cte(where)},
o AS (
  SELECT {key} AS key, b.cpu, b.gpu, b.mem, b.cpu_rate, b.gpu_rate, b.mem_rate,
         {billable_seconds_sql("b", wlo, whi)} AS sec
  FROM {source}
)
SELECT key, COALESCE(SUM(sec), 0) / 3600.0 AS hours,
       COALESCE(SUM(sec * cpu), 0) / 3600.0 AS cpu_core_hours,
       COALESCE(SUM(sec * gpu), 0) / 3600.0 AS gpu_hours,
       COALESCE(SUM(sec * mem), 0) / 3600.0 AS memory_gib_hours,
       COALESCE(SUM(sec / 3600.0 * (cpu * cpu_rate + gpu * gpu_rate + mem * mem_rate)), 0) AS cost,
       COUNT(*) FILTER (WHERE sec > 0) AS sessions
FROM o GROUP BY key
HAVING SUM(sec) > 0
ORDER BY key"""


def sql_params(settings: Settings, lo: datetime, hi: datetime, now: datetime, user: str | None,
               department: str | None) -> dict[str, object]:
    params: dict[str, object] = {
        "lo": lo, "hi": hi, "now": now, "gap": settings.gap_seconds, "zone": settings.timezone,
        "cpu_rate": Decimal(str(settings.default_cpu_core_hour_rate)),
        "gpu_rate": Decimal(str(settings.default_gpu_hour_rate)),
        "mem_rate": Decimal(str(settings.default_memory_gib_hour_rate))}
    if user:
        params["user"] = user
    if department and department != NO_DEPARTMENT:
        params["department"] = department
    return params


def format_rows(rows, settings: Settings, group_by: GroupBy, lo: datetime, hi: datetime) -> list[dict]:
    """Rounded rows; for days and months every bucket of the range, empty ones as zeros."""
    out = [{"key": r["key"], "hours": round(float(r["hours"]), 4), "cpu_core_hours": round(float(r["cpu_core_hours"]), 4),
            "gpu_hours": round(float(r["gpu_hours"]), 4), "memory_gib_hours": round(float(r["memory_gib_hours"]), 4),
            "cost": round(float(r["cost"]), 2), "sessions": int(r["sessions"])} for r in rows]
    if group_by in ("day", "month"):
        found = {r["key"]: r for r in out}
        zero = {"hours": 0.0, "cpu_core_hours": 0.0, "gpu_hours": 0.0, "memory_gib_hours": 0.0, "cost": 0.0,
                "sessions": 0}
        out = [found.get(label, {"key": label, **zero}) for label, _, _ in buckets(lo, hi, group_by, settings)]
    return out


async def sql_stats(session: AsyncSession, settings: Settings, group_by: GroupBy, lo: datetime, hi: datetime,
                    now: datetime, user: str | None = None, department: str | None = None) -> list[dict]:
    """The full computation over the sessions (PostgreSQL)."""
    params = sql_params(settings, lo, hi, now, user, department)
    rows = (await session.execute(text(_sql(group_by, user, department)), params)).mappings().all()
    return format_rows(rows, settings, group_by, lo, hi)


async def stats(session: AsyncSession, settings: Settings, group_by: GroupBy, lo: datetime, hi: datetime,
                now: datetime, user: str | None = None, department: str | None = None) -> list[dict]:
    if group_by in ("day", "month"):
        buckets(lo, hi, group_by, settings)  # raises ValueError when the range is too long
    if dialect_name(session) == "postgresql":
        from . import rollups

        if await rollups.ready(session, settings):
            answer = await rollups.rollup_stats(session, settings, group_by, lo, hi, now, user, department)
            if answer is not None:
                return answer
        return await sql_stats(session, settings, group_by, lo, hi, now, user, department)
    return await python_stats(session, settings, group_by, lo, hi, now, user, department)


__all__ = ["stats", "python_stats", "sql_stats", "month_start", "day_start", "buckets", "NO_DEPARTMENT", "and_"]

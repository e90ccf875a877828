"""Usage rollups: /api/stats over long ranges without reading every session (PostgreSQL).

**What is stored** (table ``usage_rollups``).  Every *closed* session's billable seconds, cut at
local midnights of the configured zone (as /api/stats cuts days), summed per

* grain ``d`` (a local day), ``w`` (a week from Monday) or ``m`` (a month), and period (its first day),
* user (and ``''``: every user), and department (``dept_key``, 0 = none), the session's billing terms:

the billable seconds, the CPU-core-, GPU- and GiB-seconds, the cost-seconds at the rates the
session carries, the resource-seconds of sessions with no rate of their own (the configured default
rates apply when read, so changing them needs no rebuild), the number of sessions with billable time
in the period (``sessions``) and of those that started in it (``sessions_started``).

**How it stays right.**  Statement triggers on ``container_sessions`` apply every change as a delta
in the writer's own transaction: the old row's contribution is subtracted if it was closed, the new
row's added if it is closed.  So in every snapshot the rows are exactly the closed sessions, whoever
writes (the recorder closing or reopening sessions, a rebill after a rate or department change, a
department deleted, a history import).  Open sessions are never in them.

**How a question is answered** (:func:`rollup_stats`).  [lo, hi) is cut into a head [lo, first local
midnight), the full local days, and a tail [last local midnight, hi).  The full days are covered by
the fewest day/week/month pieces (:func:`decompose`), whose rows are summed.  The head, the tail and
every open session are computed from the sessions as the full computation does (few rows).  All in
one statement: one snapshot.

**Session counts** are not additive over time: a session spanning two pieces is one session.  A
session's billable time is one unbroken interval, so within the stretch of time one result row covers,
it is counted in the first piece it touches: the first piece counts every session with billable time
in it (``sessions``), every later piece only those that started in it (``sessions_started``), and the
tail only those that started in the tail.

**Identity of a build.**  The SQL below is generated once; its digest and the zone are recorded in
``usage_rollup_state``.  A portal with another zone or formula rebuilds at start (:func:`ensure`);
until the build matches, /api/stats computes from the sessions.
"""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .billing import GIB
from .config import Settings
from .db.engine import dialect_name
from .stats_service import (NO_DEPARTMENT, GroupBy, billable_seconds_sql, bucketed_source, filter_conditions,
                            format_rows, session_cte, sql_params)

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------
# Planning (pure): which pieces of which grain cover the full days of a range


@dataclass(frozen=True)
class Piece:
    grain: str      # 'd' | 'w' | 'm'
    period: date    # first local day of the piece
    key: str        # the result row's label for group_by day/month; '' for user/department/total
    first: bool     # the first piece of its result row's stretch: counts every session in it


@dataclass(frozen=True)
class Plan:
    head: tuple[datetime, datetime]   # [lo, first full day): computed from the sessions (may be empty)
    tail: tuple[datetime, datetime]   # [end of the last full day, hi): likewise
    tail_counts_all: bool             # the tail is a result row's whole stretch (else: only sessions started in it)
    pieces: tuple[Piece, ...]


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(timezone.utc)


def _month_after(day: date) -> date:
    return date(day.year + 1, 1, 1) if day.month == 12 else date(day.year, day.month + 1, 1)


def decompose(first: date, end: date) -> list[tuple[str, date]]:
    """The fewest pieces covering the days [first, end): a day anywhere, a week on a Monday, a
    month on its first day (each only where it ends by ``end``); in time order."""
    n = (end - first).days
    best = [0] * (n + 1)
    step: list[tuple[int, str]] = [(1, "d")] * (n + 1)
    for i in range(n - 1, -1, -1):
        day = first + timedelta(days=i)
        options = [(1, "d")]
        if day.weekday() == 0 and i + 7 <= n:
            options.append((7, "w"))
        if day.day == 1:
            length = calendar.monthrange(day.year, day.month)[1]
            if i + length <= n:
                options.append((length, "m"))
        # fewest pieces; on a tie the coarser piece (fewer rows to read)
        best[i], step[i] = min(((1 + best[i + length], (length, grain)) for length, grain in options),
                               key=lambda option: (option[0], -option[1][0]))
    out, i = [], 0
    while i < n:
        length, grain = step[i]
        out.append((grain, first + timedelta(days=i)))
        i += length
    return out


def plan(lo: datetime, hi: datetime, group_by: GroupBy, zone: ZoneInfo) -> Plan | None:
    """The pieces answering [lo, hi) grouped by ``group_by``; None when it holds no full local day
    (then the sessions of the range are few and computed directly)."""
    lo_local = lo.astimezone(zone)
    first_day = lo_local.date() if lo_local.time() == datetime.min.time() else lo_local.date() + timedelta(days=1)
    end_day = hi.astimezone(zone).date()
    if first_day >= end_day:
        return None
    f_lo, f_hi = local_midnight(first_day, zone), local_midnight(end_day, zone)
    has_head = lo < f_lo
    pieces: list[Piece] = []
    if group_by == "day":
        day = first_day
        while day < end_day:
            pieces.append(Piece("d", day, day.isoformat(), True))
            day += timedelta(days=1)
        tail_counts_all = True
    elif group_by == "month":
        start = first_day
        while start < end_day:
            stop = min(_month_after(start), end_day)
            # the head belongs to this month's row unless this month starts with the full days
            shares_head = has_head and start == first_day and start.day != 1
            for i, (grain, period) in enumerate(decompose(start, stop)):
                pieces.append(Piece(grain, period, start.strftime("%Y-%m"), i == 0 and not shares_head))
            start = stop
        tail_counts_all = end_day.day == 1
    else:
        pieces = [Piece(grain, period, "", i == 0 and not has_head)
                  for i, (grain, period) in enumerate(decompose(first_day, end_day))]
        tail_counts_all = False
    return Plan(head=(lo, f_lo), tail=(f_hi, hi), tail_counts_all=tail_counts_all, pieces=tuple(pieces))


# --------------------------------------------------------------------------------------------------
# Maintenance SQL: one delta statement, fed by the trigger's transition tables or by the whole table

_TERMS = ("username", "department_id", "started_at", "ended_at", "unobserved_seconds", "cpu_request",
          "gpu_request", "memory_request", "cpu_core_hour_rate", "gpu_hour_rate", "memory_gib_hour_rate")
_SUMS = ("seconds", "cpu_core_seconds", "gpu_seconds", "memory_gib_seconds", "cost_seconds",
         "cpu_core_seconds_default_rate", "gpu_seconds_default_rate", "memory_gib_seconds_default_rate")


def _rows(sign: int, table: str, alias: str, where: str = "") -> str:
    cols = ", ".join(f"{alias}.{c}" for c in ("id", *_TERMS))
    return f"SELECT {sign} AS sign, {cols} FROM {table} {alias} WHERE {alias}.ended_at IS NOT NULL{where}"


def delta_sql(src: str) -> str:
    """Add ``sign`` x each closed row of ``src`` (columns sign, id and _TERMS) to usage_rollups.
    The zone is the build's (usage_rollup_state): nothing happens while none is built."""
    sums = ", ".join(_SUMS)
    added = ",\n  ".join(f"{c} = r.{c} + excluded.{c}" for c in ("sessions", "sessions_started", *_SUMS))
    return f"""
WITH src AS ({src}),
s AS (
  SELECT src.sign, src.id, src.username, COALESCE(src.department_id, 0) AS dept_key, src.started_at,
         src.ended_at, st.zone,
         COALESCE(src.cpu_request, 0) AS cpu, CAST(src.gpu_request AS double precision) AS gpu,
         CAST(COALESCE(src.memory_request, 0) AS double precision) / {GIB} AS mem,
         CAST(src.cpu_core_hour_rate AS double precision) AS cpu_rate,
         CAST(src.gpu_hour_rate AS double precision) AS gpu_rate,
         CAST(src.memory_gib_hour_rate AS double precision) AS mem_rate,
         date_part('epoch', src.ended_at - src.started_at) AS span, src.unobserved_seconds AS unobserved
  FROM src JOIN usage_rollup_state st ON st.id = 1 AND st.zone IS NOT NULL
),
p AS (
  SELECT s.sign, s.id, s.username, s.dept_key, g.day, s.cpu, s.gpu, s.mem, s.cpu_rate, s.gpu_rate, s.mem_rate,
         g.day = date_trunc('day', s.started_at AT TIME ZONE s.zone) AS started_here,
         GREATEST(0, date_part('epoch', LEAST(s.ended_at, (g.day + interval '1 day') AT TIME ZONE s.zone)
                                      - GREATEST(s.started_at, g.day AT TIME ZONE s.zone)))
           * GREATEST(0, s.span - s.unobserved) / s.span AS sec
  FROM s CROSS JOIN LATERAL generate_series(date_trunc('day', s.started_at AT TIME ZONE s.zone),
                                            s.ended_at AT TIME ZONE s.zone, interval '1 day') AS g(day)
  WHERE s.span > 0
),
q AS (
  SELECT p.sign, p.id, p.username, p.dept_key, k.grain, k.period, bool_or(p.started_here) AS started_here,
         SUM(p.sec) AS seconds, SUM(p.sec * p.cpu) AS cpu_core_seconds, SUM(p.sec * p.gpu) AS gpu_seconds,
         SUM(p.sec * p.mem) AS memory_gib_seconds,
         SUM(p.sec * (p.cpu * COALESCE(p.cpu_rate, 0) + p.gpu * COALESCE(p.gpu_rate, 0)
                      + p.mem * COALESCE(p.mem_rate, 0))) AS cost_seconds,
         SUM(CASE WHEN p.cpu_rate IS NULL THEN p.sec * p.cpu ELSE 0 END) AS cpu_core_seconds_default_rate,
         SUM(CASE WHEN p.gpu_rate IS NULL THEN p.sec * p.gpu ELSE 0 END) AS gpu_seconds_default_rate,
         SUM(CASE WHEN p.mem_rate IS NULL THEN p.sec * p.mem ELSE 0 END) AS memory_gib_seconds_default_rate
  FROM p CROSS JOIN LATERAL (VALUES ('d', CAST(p.day AS date)), ('w', CAST(date_trunc('week', p.day) AS date)),
                                    ('m', CAST(date_trunc('month', p.day) AS date))) AS k(grain, period)
  WHERE p.sec > 0
  GROUP BY p.sign, p.id, p.username, p.dept_key, k.grain, k.period
)
INSERT INTO usage_rollups AS r (grain, period, username, dept_key, sessions, sessions_started, {sums})
SELECT q.grain, q.period, u.username, q.dept_key, SUM(q.sign), SUM(CASE WHEN q.started_here THEN q.sign ELSE 0 END),
       {", ".join(f"SUM(q.sign * q.{c})" for c in _SUMS)}
FROM q CROSS JOIN LATERAL (VALUES (q.username), ('')) AS u(username)
GROUP BY q.grain, q.period, u.username, q.dept_key
ON CONFLICT (grain, period, username, dept_key) DO UPDATE SET
  {added}"""


_CHANGED = f"({', '.join('o.' + c for c in _TERMS)}) IS DISTINCT FROM ({', '.join('n.' + c for c in _TERMS)})"
_SOURCES = {
    # an update moves a row's contribution only when something billing reads changed
    "update": (_rows(-1, "old_rows", "o", f" AND EXISTS (SELECT 1 FROM new_rows n WHERE n.id = o.id AND {_CHANGED})")
               + "\n  UNION ALL\n  "
               + _rows(1, "new_rows", "n", f" AND EXISTS (SELECT 1 FROM old_rows o WHERE o.id = n.id AND {_CHANGED})")),
    "insert": _rows(1, "new_rows", "n"),
    "delete": _rows(-1, "old_rows", "o"),
}
_REFERENCING = {"update": "OLD TABLE AS old_rows NEW TABLE AS new_rows", "insert": "NEW TABLE AS new_rows",
                "delete": "OLD TABLE AS old_rows"}
# a closed session's stretch of time, as ix_container_sessions_span indexes it
SPAN = "tstzrange(cs.started_at, GREATEST(cs.started_at, cs.ended_at))"
_PRUNE = "DELETE FROM usage_rollups WHERE sessions = 0"


def _ddl() -> list[str]:
    out = []
    for event, src in _SOURCES.items():
        out.append(f"""CREATE OR REPLACE FUNCTION labhub_rollup_{event}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
{delta_sql(src)};
  {_PRUNE};
  RETURN NULL;
END
$fn$""")
        out.append(f"DROP TRIGGER IF EXISTS labhub_rollup_{event} ON container_sessions")
        out.append(f"CREATE TRIGGER labhub_rollup_{event} AFTER {event.upper()} ON container_sessions "
                   f"REFERENCING {_REFERENCING[event]} FOR EACH STATEMENT EXECUTE FUNCTION labhub_rollup_{event}()")
    # emptying the sessions empties their sums (TRUNCATE fires no row or statement delta); DELETE,
    # as a TRUNCATE of both tables in one statement may not truncate usage_rollups again
    out.append("""CREATE OR REPLACE FUNCTION labhub_rollup_truncate() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  DELETE FROM usage_rollups;
  RETURN NULL;
END
$fn$""")
    out.append("DROP TRIGGER IF EXISTS labhub_rollup_truncate ON container_sessions")
    out.append("CREATE TRIGGER labhub_rollup_truncate AFTER TRUNCATE ON container_sessions "
               "FOR EACH STATEMENT EXECUTE FUNCTION labhub_rollup_truncate()")
    return out


DDL = _ddl()
REBUILD = delta_sql(_rows(1, "container_sessions", "cs"))
VERSION = hashlib.sha256("\n".join([*DDL, REBUILD]).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------------
# Build and readiness


async def ready(session: AsyncSession, settings: Settings) -> bool:
    """The rollups match this portal's zone and formula (PostgreSQL only)."""
    if dialect_name(session) != "postgresql":
        return False
    row = (await session.execute(text("SELECT zone, version FROM usage_rollup_state WHERE id = 1"))).first()
    return row is not None and _matches(row, settings)


def _matches(state: Any, settings: Settings) -> bool:
    """A usage_rollup_state row was built for this portal's zone and formula."""
    return bool(state.zone == settings.timezone and state.version == VERSION)


async def ensure(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> float | None:
    """Install the triggers and (re)build the rollups unless they match this portal's zone and
    formula.  Writers are held off meanwhile (a SHARE lock on container_sessions; readers go on).
    Returns the build's seconds, None when nothing was to do."""
    from .recorder.repository import lock_changes

    async with sessionmaker() as session, session.begin():
        if dialect_name(session) != "postgresql" or await ready(session, settings):
            return None
        started = time.perf_counter()
        await lock_changes(session)
        await session.execute(text("LOCK TABLE container_sessions IN SHARE MODE"))
        if await ready(session, settings):   # another portal process built it meanwhile
            return None
        for statement in DDL:
            await session.execute(text(statement))
        await session.execute(text("TRUNCATE usage_rollups"))
        await session.execute(text(
            "INSERT INTO usage_rollup_state (id, zone, version) VALUES (1, :zone, :version) "
            "ON CONFLICT (id) DO UPDATE SET zone = excluded.zone, version = excluded.version"),
            {"zone": settings.timezone, "version": VERSION})
        await session.execute(text(REBUILD))
        seconds = time.perf_counter() - started
        await session.execute(text("UPDATE usage_rollup_state SET built_at = now(), build_seconds = :s WHERE id = 1"),
                              {"s": seconds})
    log.info("usage rollups built for zone %s in %.1f s", settings.timezone, seconds)
    return seconds


# failures worth another try: the database not up yet, or gone for a moment
_TRANSIENT = (OSError, TimeoutError, OperationalError, InterfaceError)


async def keep_ensuring(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings,
                        first_attempt: asyncio.Event | None = None,
                        delays: Sequence[float] = (5, 15, 30, 60, 120, 300)) -> float | None:
    """:func:`ensure`, tried again after each delay while the database cannot be reached (it may
    start after the portal); any other failure is logged once.  ``first_attempt`` is set after the
    first try, whatever its outcome (the recorder waits for it, so a build never races its first
    cycle)."""
    try:
        for delay in (*delays, None):
            try:
                return await ensure(sessionmaker, settings)
            except _TRANSIENT as exc:
                if delay is None:
                    log.error("usage rollups not built, the database stayed unreachable (/api/stats computes "
                              "from the sessions until the portal restarts): %s", exc)
                    return None
                log.warning("usage rollups not built yet, the database is unreachable (%s); next try in %.0f s",
                            exc, delay)
            except Exception as exc:  # e.g. no right to create the triggers: a restart will not help
                log.error("usage rollups not built (/api/stats computes from the sessions): %s", exc)
                return None
            if first_attempt is not None:
                first_attempt.set()
            await asyncio.sleep(delay)
        return None
    finally:
        if first_attempt is not None:
            first_attempt.set()


async def describe(session: AsyncSession, settings: Settings) -> dict[str, Any]:
    """For /api/status: whether /api/stats answers from the rollups, and their build."""
    if dialect_name(session) != "postgresql":
        return {"state": "not used (SQLite): computed from the sessions"}
    row = (await session.execute(text("SELECT zone, version, built_at, build_seconds FROM usage_rollup_state "
                                      "WHERE id = 1"))).first()
    if row is None or row.zone is None:
        return {"state": "not built: computed from the sessions"}
    return {"state": "ready" if _matches(row, settings) else "built for another zone or formula: computed from the sessions",
            "zone": row.zone, "built_at": row.built_at.isoformat() if row.built_at else None,
            "build_seconds": None if row.build_seconds is None else round(float(row.build_seconds), 1)}


# --------------------------------------------------------------------------------------------------
# Answering


def _sql(group_by: GroupBy, user: str | None, department: str | None) -> str:
    # every open session of the range; closed ones only where they reach into the head or the tail
    # (each arm has its index: ix_container_sessions_open, ix_container_sessions_span twice)
    where = [f"""((cs.ended_at IS NULL AND cs.started_at < :hi)
     OR (cs.ended_at IS NOT NULL AND {SPAN} && tstzrange(CAST(:lo AS timestamptz), CAST(:h_hi AS timestamptz)))
     OR (cs.ended_at IS NOT NULL AND {SPAN} && tstzrange(CAST(:t_lo AS timestamptz), CAST(:hi AS timestamptz))))""", *filter_conditions(user, department)]
    source, key, wlo, whi = bucketed_source(group_by, "w", "w.wlo", "w.whi")
    rkey = {"user": "r.username", "department": f"COALESCE(d.name, '{NO_DEPARTMENT}')", "total": "'total'",
            "day": "pc.key", "month": "pc.key"}[group_by]
    if user:
        who = "r.username = :user"
    elif group_by == "user":
        who = "r.username <> ''"
    else:
        who = "r.username = ''"
    dept = ""
    if department:
        dept = "WHERE r.dept_key = 0" if department == NO_DEPARTMENT else "WHERE d.name = :department"
    return f"""
WITH {session_cte(where)},
w AS (
  SELECT b.*, win.wlo, win.whi, win.count_all FROM b CROSS JOIN LATERAL (VALUES
      (CAST(:lo AS timestamptz), CAST(:hi AS timestamptz), true, b.open),
      (CAST(:lo AS timestamptz), CAST(:h_hi AS timestamptz), true, NOT b.open),
      (CAST(:t_lo AS timestamptz), CAST(:hi AS timestamptz), CAST(:t_all AS boolean), NOT b.open)
    ) AS win(wlo, whi, count_all, applies)
  WHERE win.applies AND win.wlo < win.whi
),
o AS (
  SELECT {key} AS key, w.cpu, w.gpu, w.mem, w.cpu_rate, w.gpu_rate, w.mem_rate,
         w.count_all OR w.started_at >= w.wlo AS counts,
         {billable_seconds_sql("w", wlo, whi)} AS sec
  FROM {source}
),
pc AS (
  SELECT * FROM unnest(CAST(:p_grain AS text[]), CAST(:p_period AS date[]), CAST(:p_key AS text[]),
                       CAST(:p_first AS boolean[])) AS pc(grain, period, key, first)
),
u AS (
  SELECT key, sec, sec * cpu AS cpu_sec, sec * gpu AS gpu_sec, sec * mem AS mem_sec,
         sec * (cpu * cpu_rate + gpu * gpu_rate + mem * mem_rate) AS cost_sec,
         CASE WHEN sec > 0 AND counts THEN 1 ELSE 0 END AS n
  FROM o
  UNION ALL
  SELECT {rkey}, r.seconds, r.cpu_core_seconds, r.gpu_seconds, r.memory_gib_seconds,
         r.cost_seconds + r.cpu_core_seconds_default_rate * CAST(:cpu_rate AS double precision)
           + r.gpu_seconds_default_rate * CAST(:gpu_rate AS double precision)
           + r.memory_gib_seconds_default_rate * CAST(:mem_rate AS double precision),
         CASE WHEN pc.first THEN r.sessions ELSE r.sessions_started END
  FROM pc JOIN usage_rollups r ON r.grain = pc.grain AND r.period = pc.period AND {who}
  LEFT JOIN departments d ON d.id = r.dept_key
  {dept}
)
SELECT key, SUM(sec) / 3600.0 AS hours, SUM(cpu_sec) / 3600.0 AS cpu_core_hours,
       SUM(gpu_sec) / 3600.0 AS gpu_hours, SUM(mem_sec) / 3600.0 AS memory_gib_hours,
       SUM(cost_sec) / 3600.0 AS cost, SUM(n) AS sessions
FROM u GROUP BY key
HAVING SUM(sec) > 0
ORDER BY key"""


async def rollup_stats(session: AsyncSession, settings: Settings, group_by: GroupBy, lo: datetime, hi: datetime,
                       now: datetime, user: str | None = None, department: str | None = None) -> list[dict[str, Any]] | None:
    """/api/stats from the rollups (the caller checked :func:`ready`); None when the range holds no
    full local day."""
    p = plan(lo, hi, group_by, settings.zone)
    if p is None:
        return None
    params = sql_params(settings, lo, hi, now, user, department)
    params.update(h_hi=p.head[1], t_lo=p.tail[0], t_all=p.tail_counts_all,
                  p_grain=[x.grain for x in p.pieces], p_period=[x.period for x in p.pieces],
                  p_key=[x.key for x in p.pieces], p_first=[x.first for x in p.pieces])
    # a few thousand rows: starting parallel workers would cost more than they save
    await session.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))
    rows = (await session.execute(text(_sql(group_by, user, department)), params)).mappings().all()
    return format_rows(rows, settings, group_by, lo, hi)


__all__ = ["DDL", "REBUILD", "VERSION", "Piece", "Plan", "decompose", "describe", "ensure", "keep_ensuring", "plan",
           "ready", "rollup_stats"]

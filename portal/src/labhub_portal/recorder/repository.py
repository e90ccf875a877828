"""Batched writes of the recorder.  One upsert statement per cycle for all observed pods, one
statement closing sessions whose pods are gone, one closing sessions in a gap.

PostgreSQL: the upsert passes one array per column and expands them with ``unnest`` (a single
statement with ~20 parameters whatever the number of pods), the gap rule is computed in SQL.
SQLite (demo only): the same semantics via a multi-row INSERT .. ON CONFLICT.
Every row written gets a new ``change_seq`` (the report sync's watermark column); writers take a
transaction-scoped advisory lock so change_seq values become visible in order (see reportsync).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import CursorResult, TextClause, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..billing_terms import Terms, load_calendar
from ..cluster import PodObservation
from ..db.engine import dialect_name
from ..db.models import ContainerSession

# Advisory lock key shared by every writer of container_sessions.change_seq (PostgreSQL).
CHANGE_LOCK_KEY = 0x4C414248  # "LABH"

_COLUMNS = ("pod_uid", "pod_name", "server_name", "namespace", "username", "image", "profile", "node",
            "cpu_request", "cpu_limit", "memory_request", "memory_limit", "gpu_request", "gpu_limit",
            "gpu_model", "started_at")
_PG_TYPES = ("text", "text", "text", "text", "text", "text", "text", "text",
             "float8", "float8", "int8", "int8", "int4", "int4", "text", "timestamptz")
# The session's billing terms (billing_terms), set on insert only: a session keeps the terms of its start.
_TERMS = ("department_id", "cpu_core_hour_rate", "gpu_hour_rate", "memory_gib_hour_rate")
_TERM_TYPES = ("int4", "numeric", "numeric", "numeric")
_MUTABLE = ("pod_name", "server_name", "namespace", "username", "image", "profile", "node", "cpu_request",
            "cpu_limit", "memory_request", "memory_limit", "gpu_request", "gpu_limit", "gpu_model", "started_at")


def _rowcount(result: object) -> int:
    """Rows an UPDATE matched (session.execute types its result as a plain Result)."""
    return (result.rowcount if isinstance(result, CursorResult) else 0) or 0


async def lock_changes(session: AsyncSession, shared: bool = False) -> None:
    """Serialise change_seq writers (exclusive) against report-sync readers (shared)."""
    if dialect_name(session) == "postgresql":
        fn = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        await session.execute(text(f"SELECT {fn}(:key)"), {"key": CHANGE_LOCK_KEY})


async def next_change_seq_sqlite(session: AsyncSession) -> int:
    current = (await session.execute(select(func.coalesce(func.max(ContainerSession.change_seq), 0)))).scalar_one()
    return int(current) + 1


def _pg_upsert_sql() -> str:
    cols = ", ".join(_COLUMNS + _TERMS)
    arrays = ", ".join(f"CAST(:{c} AS {t}[])" for c, t in zip(_COLUMNS + _TERMS, _PG_TYPES + _TERM_TYPES))
    updates = ",\n  ".join(f"{c} = excluded.{c}" for c in _MUTABLE)
    gap = "EXTRACT(EPOCH FROM (excluded.last_seen_at - container_sessions.last_seen_at))"
    first_gap = "EXTRACT(EPOCH FROM (CAST(:now AS timestamptz) - u.started_at))"
    return f"""
INSERT INTO container_sessions ({cols}, first_seen_at, last_seen_at, unobserved_seconds, source,
                                change_seq, created_at, updated_at)
SELECT u.*, CAST(:now AS timestamptz), CAST(:now AS timestamptz),
       CASE WHEN {first_gap} > :gap THEN {first_gap} ELSE 0 END, 'recorder',
       nextval('container_sessions_change_seq'), CAST(:now AS timestamptz), CAST(:now AS timestamptz)
FROM unnest({arrays}) AS u({cols})
ON CONFLICT (pod_uid) DO UPDATE SET
  {updates},
  unobserved_seconds = container_sessions.unobserved_seconds
      + CASE WHEN {gap} > :gap THEN {gap} ELSE 0 END,
  last_seen_at = GREATEST(excluded.last_seen_at, container_sessions.last_seen_at),
  ended_at = NULL,
  end_reason = NULL,
  change_seq = nextval('container_sessions_change_seq'),
  updated_at = excluded.updated_at
"""


_PG_UPSERT = _pg_upsert_sql()


async def upsert_observations(session: AsyncSession, observations: Sequence[PodObservation], now: datetime,
                              gap_seconds: float) -> None:
    """Insert new sessions / refresh open ones / reopen ones that reappear, in ONE statement.  New
    sessions get the billing terms in force at their start (read in this transaction, under the
    change lock the caller holds)."""
    if not observations:
        return
    calendar = await load_calendar(session, {o.username for o in observations})
    terms = [calendar.terms(o.username, o.started_at, o.gpu_model) for o in observations]
    if dialect_name(session) == "postgresql":
        params: dict[str, object] = {c: [getattr(o, c) for o in observations] for c in _COLUMNS}
        params.update({c: [getattr(t, c) for t in terms] for c in _TERMS})
        params.update(now=now, gap=gap_seconds)
        await session.execute(text(_PG_UPSERT), params)
        return
    await _sqlite_upsert(session, observations, terms, now, gap_seconds)


async def _sqlite_upsert(session: AsyncSession, observations: Sequence[PodObservation], terms: Sequence[Terms],
                         now: datetime, gap_seconds: float) -> None:
    from sqlalchemy.dialects.sqlite import insert

    seq = await next_change_seq_sqlite(session)
    existing = {row.pod_uid: row for row in (await session.execute(
        select(ContainerSession.pod_uid, ContainerSession.last_seen_at, ContainerSession.unobserved_seconds)
        .where(ContainerSession.pod_uid.in_([o.pod_uid for o in observations])))).all()}
    rows = []
    for offset, (obs, obs_terms) in enumerate(zip(observations, terms)):
        row = {c: getattr(obs, c) for c in _COLUMNS}
        row.update({c: getattr(obs_terms, c) for c in _TERMS})
        old = existing.get(obs.pod_uid)
        if old is None:
            first_gap = (now - obs.started_at).total_seconds()
            unobserved = first_gap if first_gap > gap_seconds else 0.0
        else:
            gap = (now - old.last_seen_at).total_seconds()
            unobserved = old.unobserved_seconds + (gap if gap > gap_seconds else 0.0)
        row.update(first_seen_at=now, last_seen_at=now, unobserved_seconds=unobserved, source="recorder",
                   change_seq=seq + offset, created_at=now, updated_at=now, ended_at=None, end_reason=None)
        rows.append(row)
    stmt = insert(ContainerSession).values(rows)
    set_ = {c: stmt.excluded[c] for c in _MUTABLE + ("last_seen_at", "unobserved_seconds", "ended_at",
                                                      "end_reason", "change_seq", "updated_at")}
    await session.execute(stmt.on_conflict_do_update(index_elements=["pod_uid"], set_=set_))


async def close_gone(session: AsyncSession, namespace: str, now: datetime) -> int:
    """End open sessions of the namespace whose pod was not in this (successful) listing, at their
    last observation (time after it was never observed, so it is not billed).

    Must run in the cycle's transaction right after :func:`upsert_observations` with the same
    ``now``: every listed pod then has ``last_seen_at >= now``, so the open sessions with
    ``last_seen_at < now`` are exactly the ones whose pod is gone (no uid list to compare)."""
    seq: TextClause | int
    if dialect_name(session) == "postgresql":
        seq = text("nextval('container_sessions_change_seq')")
    else:
        seq = await next_change_seq_sqlite(session)
    result = await session.execute(
        update(ContainerSession)
        .where(ContainerSession.ended_at.is_(None), ContainerSession.namespace == namespace,
               ContainerSession.source == "recorder", ContainerSession.last_seen_at < now)
        .values(ended_at=ContainerSession.last_seen_at, end_reason="pod_gone", change_seq=seq, updated_at=now)
        .execution_options(synchronize_session=False))
    return _rowcount(result)


async def close_unobserved(session: AsyncSession, namespace: str, now: datetime, gap_seconds: float) -> int:
    """End open sessions not observed for more than the gap window (cluster API failing, portal was
    down) at their last observation, end_reason 'unobserved'.  Reopened if the pod is seen again."""
    cutoff = now.timestamp() - gap_seconds
    from datetime import datetime as _dt, timezone as _tz

    cutoff_dt = _dt.fromtimestamp(cutoff, _tz.utc)
    if dialect_name(session) == "postgresql":
        result = await session.execute(text("""
UPDATE container_sessions SET ended_at = last_seen_at, end_reason = 'unobserved',
       change_seq = nextval('container_sessions_change_seq'), updated_at = :now
WHERE ended_at IS NULL AND namespace = :ns AND source = 'recorder' AND last_seen_at < :cutoff"""),
            {"now": now, "ns": namespace, "cutoff": cutoff_dt})
        return _rowcount(result)
    seq = await next_change_seq_sqlite(session)
    result = await session.execute(update(ContainerSession).where(
        ContainerSession.ended_at.is_(None), ContainerSession.namespace == namespace,
        ContainerSession.source == "recorder", ContainerSession.last_seen_at < cutoff_dt).values(
        ended_at=ContainerSession.last_seen_at, end_reason="unobserved", change_seq=seq, updated_at=now)
        .execution_options(synchronize_session=False))
    return _rowcount(result)


async def count_open(session: AsyncSession) -> int:
    return int((await session.execute(select(func.count()).select_from(ContainerSession)
                                      .where(ContainerSession.ended_at.is_(None)))).scalar_one())

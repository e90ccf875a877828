"""Report sync to MySQL ``pod_report`` (schema in README).

Algorithm (resumable, effectively exactly once):

1. PostgreSQL, short read transaction holding the *shared* change lock (writers hold it exclusively
   while they assign ``change_seq``), so every change_seq below the ones read is committed:
   read the watermark and the next batch of sessions with ``change_seq > watermark`` in order.
2. MySQL: ``INSERT .. ON DUPLICATE KEY UPDATE`` keyed by ``pod_uid`` for the batch (one multi-row
   statement), guarded by ``source_change_seq`` so an older row never overwrites a newer one; COMMIT.
3. PostgreSQL: advance the watermark to the batch's highest change_seq (never backwards); COMMIT.

Pipelined: while batch n is written to MySQL (2.) and its watermark advanced (3.), batch n+1 is
read, projected and rendered as SQL (1.) on another connection.  Only reads overlap; the writes
keep their order (MySQL commit of n, watermark n, MySQL commit of n+1, ...), so the guarantees
below are unchanged.

A crash (kill -9) between 2 and 3 re-sends that batch on the next run: the upsert is idempotent, so
no duplicates; the watermark never passes uncommitted MySQL rows, so no gaps.  MySQL down = the run
fails before step 3 and is retried later; nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Awaitable, Sequence
from datetime import datetime, timezone
from typing import Any, TypeVar

import aiomysql
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .. import metrics
from ..billing import GIB, billable_seconds
from ..config import Settings
from ..db.models import ContainerSession, Department, SyncWatermark, User
from ..recorder.repository import lock_changes

log = logging.getLogger("labhub_portal.reportsync")
WATERMARK = "pod_report"


def create_table_sql(table: str) -> str:
    return f"""CREATE TABLE IF NOT EXISTS `{table}` (
  pod_uid            VARCHAR(64)   NOT NULL,
  pod_name           VARCHAR(253)  NOT NULL,
  server_name        VARCHAR(255)  NOT NULL DEFAULT '',
  namespace          VARCHAR(63)   NOT NULL,
  username           VARCHAR(255)  NOT NULL,
  display_name       VARCHAR(255)  NULL,
  department         VARCHAR(255)  NULL,
  image              VARCHAR(512)  NULL,
  profile            VARCHAR(255)  NULL,
  node               VARCHAR(253)  NULL,
  cpu_request        DECIMAL(10,3) NULL,
  cpu_limit          DECIMAL(10,3) NULL,
  memory_request_gib DECIMAL(12,3) NULL,
  memory_limit_gib   DECIMAL(12,3) NULL,
  gpu_request        INT           NOT NULL DEFAULT 0,
  gpu_limit          INT           NOT NULL DEFAULT 0,
  gpu_model          VARCHAR(255)  NULL,
  started_at         DATETIME(6)   NOT NULL COMMENT 'UTC',
  last_seen_at       DATETIME(6)   NOT NULL COMMENT 'UTC',
  ended_at           DATETIME(6)   NULL     COMMENT 'UTC; NULL while running',
  end_reason         VARCHAR(32)   NULL,
  billed_hours       DECIMAL(14,4) NOT NULL DEFAULT 0,
  cpu_core_hours     DECIMAL(14,4) NOT NULL DEFAULT 0,
  gpu_hours          DECIMAL(14,4) NOT NULL DEFAULT 0,
  memory_gib_hours   DECIMAL(14,4) NOT NULL DEFAULT 0,
  cost               DECIMAL(14,2) NOT NULL DEFAULT 0,
  source_change_seq  BIGINT        NOT NULL,
  synced_at          DATETIME(6)   NOT NULL COMMENT 'UTC',
  PRIMARY KEY (pod_uid),
  KEY ix_{table}_username (username),
  KEY ix_{table}_started_at (started_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""


REPORT_COLUMNS = ("pod_uid", "pod_name", "server_name", "namespace", "username", "display_name", "department",
                  "image", "profile", "node", "cpu_request", "cpu_limit", "memory_request_gib", "memory_limit_gib",
                  "gpu_request", "gpu_limit", "gpu_model", "started_at", "last_seen_at", "ended_at", "end_reason",
                  "billed_hours", "cpu_core_hours", "gpu_hours", "memory_gib_hours", "cost", "source_change_seq",
                  "synced_at")


def upsert_sql(table: str) -> str:
    cols = ", ".join(REPORT_COLUMNS)
    marks = ", ".join(["%s"] * len(REPORT_COLUMNS))
    # Assignments run left to right and see already-updated columns: source_change_seq goes last.
    guard = "VALUES(source_change_seq) >= source_change_seq"
    sets = ",\n  ".join(f"{c} = IF({guard}, VALUES({c}), {c})" for c in REPORT_COLUMNS
                        if c not in ("pod_uid", "source_change_seq"))
    return (f"INSERT INTO `{table}` ({cols}) VALUES ({marks})\nON DUPLICATE KEY UPDATE\n  {sets},\n"
            f"  source_change_seq = GREATEST(VALUES(source_change_seq), source_change_seq)")


def _naive_utc(value: datetime | None) -> datetime | None:
    """MySQL DATETIME takes naive UTC; values already naive are UTC (see ``batch_query``)."""
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(timezone.utc).replace(tzinfo=None)


def _gib(value: int | None) -> float | None:
    return round(value / GIB, 3) if value is not None else None


def _sql_literal(value, escape_string) -> str:
    """One value of a projected report row as a MySQL literal.  The projection only produces these
    types; anything else is a bug and raises instead of being sent in some guessed form."""
    kind = type(value)
    if value is None:
        return "NULL"
    if kind is str:
        return "'" + escape_string(value) + "'"
    if kind is int:
        return str(value)
    if kind is float:
        if not math.isfinite(value):
            raise ValueError(f"cannot send {value!r} to MySQL")
        return repr(value)
    if kind is datetime and value.tzinfo is None:
        return "'" + value.isoformat(" ") + "'"
    raise TypeError(f"unexpected {kind.__name__} value in a report row: {value!r}")


def values_statements(insert_sql: str, rows: list[tuple], escape_string, max_bytes: int = 1_000_000) -> list[str]:
    """The multi-row upserts for ``rows`` (``insert_sql`` as built by :func:`upsert_sql`), each at most
    about ``max_bytes`` long (under MySQL's max_allowed_packet).  Same statements as aiomysql's
    executemany builds, without its generic per-value escaping dispatch (the sync's hot spot)."""
    head, sep, tail = insert_sql.partition(" VALUES (")
    tail = tail[tail.index(")") + 1:]  # the ON DUPLICATE KEY UPDATE clause
    prefix = head + sep.rstrip("(")
    statements: list[str] = []
    chunk: list[str] = []
    size = len(prefix) + len(tail)
    for row in rows:
        literal = "(" + ",".join([_sql_literal(value, escape_string) for value in row]) + ")"
        if chunk and size + len(literal) + 1 > max_bytes:
            statements.append(prefix + ",".join(chunk) + tail)
            chunk, size = [], len(prefix) + len(tail)
        chunk.append(literal)
        size += len(literal) + 1
    if chunk:
        statements.append(prefix + ",".join(chunk) + tail)
    return statements


_T = TypeVar("_T")


class MySQLUnavailable(Exception):
    pass


class ReportSync:
    def __init__(self, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.target = settings.mysql_target
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[int] | None = None
        self._table_ready = False
        self.status: dict = {"enabled": True, "state": "idle", "last_run_at": None, "last_success_at": None,
                             "last_rows": None, "last_error": None, "consecutive_errors": 0}

    async def _connect(self):
        timeout = self.settings.mysql_timeout
        try:
            return await self._bounded(aiomysql.connect(**self.target.connect_kwargs(), connect_timeout=timeout),
                                       "connect")
        except (aiomysql.Error, OSError) as exc:
            raise MySQLUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def _bounded(self, step: Awaitable[_T], what: str) -> _T:
        """One MySQL step, abandoned after mysql_timeout (a frozen server must not hold the sync, and
        with it "Sync now", forever)."""
        timeout = self.settings.mysql_timeout
        try:
            return await asyncio.wait_for(step, timeout)
        except asyncio.TimeoutError as exc:
            raise MySQLUnavailable(f"MySQL did not answer within {timeout:g} s ({what})") from exc

    @property
    def running(self) -> bool:
        """A sync (scheduled or asked for) is in progress."""
        return self._lock.locked()

    def start(self) -> asyncio.Task[int] | None:
        """Start a sync in the background ("Sync now") and return it: the one already asked for while
        it runs; None while the scheduled sync runs (asking would only queue a second one)."""
        if self._task is not None and not self._task.done():
            return self._task
        if self.running:
            return None
        self._task = asyncio.create_task(self.run_once(), name="report-sync-now")
        # its failure is recorded in the status; retrieve it so asyncio does not log it again
        self._task.add_done_callback(lambda task: task.cancelled() or task.exception())
        return self._task

    def batch_query(self, after: int):
        """Core select (no ORM objects: this runs for every row of the report) of one batch.  On
        PostgreSQL the three times come back as naive UTC (``timezone('UTC', ..)``), which is what
        MySQL gets, without a per-value conversion in Python (the sync's second hot spot)."""
        cs = ContainerSession.__table__.c
        started: ColumnElement[Any]
        seen: ColumnElement[Any]
        ended: ColumnElement[Any]
        if self.settings.database_url.startswith("postgresql"):
            started, seen, ended = (func.timezone("UTC", col).label(col.name)
                                    for col in (cs.started_at, cs.last_seen_at, cs.ended_at))
        else:  # SQLite (demo): the column type returns aware UTC, converted in _project
            started, seen, ended = cs.started_at, cs.last_seen_at, cs.ended_at
        return (select(cs.pod_uid, cs.pod_name, cs.server_name, cs.namespace, cs.username, cs.image, cs.profile,
                       cs.node, cs.cpu_request, cs.cpu_limit, cs.memory_request, cs.memory_limit, cs.gpu_request,
                       cs.gpu_limit, cs.gpu_model, started, seen, ended, cs.end_reason,
                       cs.unobserved_seconds, cs.change_seq, cs.department_id, cs.cpu_core_hour_rate,
                       cs.gpu_hour_rate, cs.memory_gib_hour_rate, User.display_name)
                .select_from(ContainerSession.__table__)
                .outerjoin(User, User.username == cs.username)
                .where(cs.change_seq > after)
                .order_by(cs.change_seq)
                .limit(self.settings.report_sync_batch))

    async def _read_batch(self, after: int) -> tuple[int, Sequence[Any]]:
        async with self.sessionmaker() as session:
            async with session.begin():
                await lock_changes(session, shared=True)
                mark = await session.get(SyncWatermark, WATERMARK)
                watermark = max(after, mark.last_change_seq if mark else 0)
                rows = (await session.execute(self.batch_query(watermark))).all()
        return watermark, rows

    async def _next_batch(self, after: int, now: datetime, departments: dict, statement: str,
                          escape_string) -> tuple[Sequence[Any], list[str]]:
        """Read, project and render one batch (runs while the previous batch waits for MySQL)."""
        _, rows = await self._read_batch(after)
        return rows, values_statements(statement, self._project(rows, now, departments), escape_string)

    async def load_departments(self) -> dict[int, str]:
        """department id -> name for the projection."""
        async with self.sessionmaker() as session:
            return {row.id: row.name for row in await session.execute(select(Department.id, Department.name))}

    def _project(self, rows, now: datetime, departments: dict) -> list[tuple]:
        gap = self.settings.gap_seconds
        synced = _naive_utc(now)
        # billing compares the row's times with now: both naive UTC or both aware
        naive_rows = bool(rows) and rows[0].started_at.tzinfo is None
        bill_now = synced if naive_rows and synced is not None else now
        defaults = (float(self.settings.default_cpu_core_hour_rate), float(self.settings.default_gpu_hour_rate),
                    float(self.settings.default_memory_gib_hour_rate))
        out = []
        for r in rows:
            # the session's billing terms (billing_terms): its department and rates when it started
            name = departments.get(r.department_id) if r.department_id is not None else None
            rate = (defaults[0] if r.cpu_core_hour_rate is None else float(r.cpu_core_hour_rate),
                    defaults[1] if r.gpu_hour_rate is None else float(r.gpu_hour_rate),
                    defaults[2] if r.memory_gib_hour_rate is None else float(r.memory_gib_hour_rate))
            hours = billable_seconds(r, bill_now, gap) / 3600.0
            cpu = hours * (r.cpu_request or 0.0)
            gpu = hours * (r.gpu_request or 0)
            mem = hours * (r.memory_request or 0) / GIB
            out.append((
                r.pod_uid, r.pod_name, r.server_name or "", r.namespace, r.username, r.display_name, name,
                r.image, r.profile, r.node, r.cpu_request, r.cpu_limit, _gib(r.memory_request),
                _gib(r.memory_limit), r.gpu_request or 0, r.gpu_limit or 0, r.gpu_model, _naive_utc(r.started_at),
                _naive_utc(r.last_seen_at), _naive_utc(r.ended_at), r.end_reason, round(hours, 4), round(cpu, 4),
                round(gpu, 4), round(mem, 4), round(cpu * rate[0] + gpu * rate[1] + mem * rate[2], 2),
                r.change_seq, synced))
        return out

    async def _advance(self, new_mark: int, rows: int, now: datetime) -> None:
        async with self.sessionmaker() as session:
            async with session.begin():
                mark = await session.get(SyncWatermark, WATERMARK, with_for_update=True)
                if mark is None:
                    mark = SyncWatermark(name=WATERMARK, last_change_seq=0, last_rows=0, last_status="never")
                    session.add(mark)
                mark.last_change_seq = max(mark.last_change_seq or 0, new_mark)
                mark.last_run_at = now

    async def _record(self, status: str, rows: int, error: str | None, now: datetime) -> None:
        try:
            async with self.sessionmaker() as session:
                async with session.begin():
                    mark = await session.get(SyncWatermark, WATERMARK, with_for_update=True)
                    if mark is None:
                        mark = SyncWatermark(name=WATERMARK, last_change_seq=0)
                        session.add(mark)
                    mark.last_run_at = now
                    mark.last_status = status
                    mark.last_error = error
                    mark.last_rows = rows
                    if status == "ok":
                        mark.last_success_at = now
        except (SQLAlchemyError, OSError) as exc:
            log.warning("could not record sync status: %s", exc)

    async def run_once(self) -> int:
        """Sync everything changed since the watermark; returns rows written.  Raises on failure
        (MySQLUnavailable, database errors) after recording the status."""
        async with self._lock:
            now = datetime.now(timezone.utc)
            self.status.update(state="running", last_run_at=now)
            total = 0
            try:
                conn = await self._connect()
                try:
                    async with conn.cursor() as cursor:
                        if not self._table_ready:
                            await self._bounded(cursor.execute(create_table_sql(self.settings.mysql_table)),
                                                "CREATE TABLE")
                            await self._bounded(conn.commit(), "commit")
                            self._table_ready = True
                        statement = upsert_sql(self.settings.mysql_table)
                        departments = await self.load_departments()
                        batch = self.settings.report_sync_batch
                        ahead = (now, departments, statement, conn.escape_string)
                        prefetch: asyncio.Task[tuple[Sequence[Any], list[str]]] | None = asyncio.ensure_future(
                            self._next_batch(0, *ahead))
                        try:
                            while prefetch is not None:  # no read ahead: that batch was the last
                                rows, statements = await prefetch
                                prefetch = None
                                if not rows:
                                    break
                                new_mark = rows[-1].change_seq
                                if len(rows) >= batch:  # read n+1 while n is written
                                    prefetch = asyncio.ensure_future(self._next_batch(new_mark, *ahead))
                                for sql in statements:
                                    await self._bounded(cursor.execute(sql), "INSERT ... ON DUPLICATE KEY UPDATE")
                                await self._bounded(conn.commit(), "commit")
                                await self._advance(new_mark, len(rows), now)
                                total += len(rows)
                                metrics.SYNC_ROWS.inc(len(rows))
                        finally:
                            if prefetch is not None:  # a write failed: drop the read ahead, quietly
                                prefetch.cancel()
                                await asyncio.gather(prefetch, return_exceptions=True)
                finally:
                    conn.close()
            except (aiomysql.Error, MySQLUnavailable, OSError, asyncio.TimeoutError, SQLAlchemyError) as exc:
                message = f"{type(exc).__name__}: {exc}"[:500]
                self.status.update(state="error", last_error=message, last_rows=total,
                                   consecutive_errors=self.status["consecutive_errors"] + 1)
                metrics.SYNC_RUNS.labels("error").inc()
                await self._record("error", total, message, now)
                log.warning("report sync failed after %d rows: %s", total, message)
                raise
            self.status.update(state="ok", last_success_at=now, last_rows=total, last_error=None,
                               consecutive_errors=0)
            metrics.SYNC_RUNS.labels("ok").inc()
            metrics.SYNC_LAST_SUCCESS.set(now.timestamp())
            await self._record("ok", total, None, now)
            return total

    async def run_forever(self) -> None:
        while True:
            try:
                await self.run_once()
                delay = self.settings.report_sync_interval
            except asyncio.CancelledError:
                raise
            except Exception:  # logged in run_once; retry with back-off, never die
                errors = self.status["consecutive_errors"]
                delay = min(self.settings.report_sync_interval, self.settings.retry_max_backoff,
                            5.0 * 2 ** max(errors - 1, 0)) * (0.9 + random.random() * 0.2)
            await asyncio.sleep(delay)

    async def last_status(self) -> dict:
        """In-memory status merged with the persisted watermark row (survives restarts)."""
        status = dict(self.status)
        try:
            async with self.sessionmaker() as session:
                mark = await session.get(SyncWatermark, WATERMARK)
                if mark is not None:
                    status.update(watermark=mark.last_change_seq, last_run_at=status["last_run_at"] or mark.last_run_at,
                                  last_success_at=status["last_success_at"] or mark.last_success_at,
                                  last_rows=status["last_rows"] if status["last_rows"] is not None else mark.last_rows,
                                  persisted_status=mark.last_status)
        except (SQLAlchemyError, OSError):
            pass
        return status

    async def close(self) -> None:
        """Stop a "Sync now" still running (shutdown): its batch is not committed, nothing is lost."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

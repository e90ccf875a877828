"""/api/usage (dashboard cards), /api/stats (aggregates) and /api/status."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from sqlalchemy import func, select

from .. import rollups
from ..db.engine import SessionDep
from ..db.models import ContainerSession
from ..stats_service import day_start, month_start, stats
from .common import CurrentPrincipal, SafeStr, SettingsDep, TimeRange, local_iso
from .schemas import RecorderStatus, StatsResponse, SyncStatus, UsageResponse, UsageTotals

router = APIRouter(prefix="/api", tags=["usage"])
_ZERO = {"hours": 0.0, "cpu_core_hours": 0.0, "gpu_hours": 0.0, "memory_gib_hours": 0.0, "cost": 0.0, "sessions": 0}


def _times(status: dict, settings, keys) -> dict:
    out = dict(status)
    for key in keys:
        if isinstance(out.get(key), datetime):
            out[key] = local_iso(out[key], settings)
    return out


def recorder_status(request: Request) -> RecorderStatus:
    recorder = request.app.state.recorder
    if recorder is None:
        return RecorderStatus(enabled=False, state="not configured")
    return RecorderStatus(**_times(recorder.status, request.app.state.settings,
                                   ("last_cycle_at", "last_success_at", "next_cycle_at")))


async def sync_status(request: Request) -> SyncStatus:
    sync = request.app.state.report_sync
    if sync is None:
        return SyncStatus(enabled=False, state="off (PORTAL_MYSQL_URL not set)")
    status = await sync.last_status()
    return SyncStatus(**_times(status, request.app.state.settings, ("last_run_at", "last_success_at")))


@router.get("/usage", response_model=UsageResponse, summary="Dashboard: active sessions, hours and cost today / this month")
async def usage(request: Request, session: SessionDep, settings: SettingsDep, _: CurrentPrincipal) -> UsageResponse:
    now = datetime.now(timezone.utc)
    active = (await session.execute(select(func.count(), func.coalesce(func.sum(ContainerSession.gpu_request), 0))
                                    .where(ContainerSession.ended_at.is_(None)))).one()
    today = await stats(session, settings, "total", day_start(now, settings), now, now)
    month = await stats(session, settings, "total", month_start(now, settings), now, now)
    return UsageResponse(timezone=settings.timezone, currency=settings.currency, now=local_iso(now, settings),
                         active_sessions=int(active[0]), active_gpus=int(active[1]),
                         today=UsageTotals(**{k: v for k, v in (today[0] if today else _ZERO).items() if k != "key"}),
                         this_month=UsageTotals(**{k: v for k, v in (month[0] if month else _ZERO).items()
                                                   if k != "key"}),
                         recorder=recorder_status(request), report_sync=await sync_status(request))


@router.get("/stats", response_model=StatsResponse, response_model_by_alias=True,
            summary="CPU/GPU/memory hours and cost grouped by user, department, day or month",
            description="Ongoing sessions count up to now.  Days and months are cut in the configured zone. "
                        "Default range: the current month.  Each session counts for the department, and at the rates, "
                        "in force when it started (README, 'Bills over time'); rates a department lacks are the defaults.")
async def get_stats(session: SessionDep, settings: SettingsDep, _: CurrentPrincipal,
                    window: Annotated[TimeRange, Depends()],
                    group_by: Literal["user", "department", "day", "month", "total"] = "user",
                    user: Annotated[SafeStr | None, Query(description="only this user")] = None,
                    department: Annotated[SafeStr | None, Query(description="only this department ('(none)' = none)")] = None,
                    ) -> StatsResponse:
    now = datetime.now(timezone.utc)
    lo = window.lo or month_start(now, settings)
    hi = window.hi or now
    if lo >= hi:
        raise HTTPException(422, detail=[{"loc": ["query", "from"], "field": "from",
                                          "msg": "'from' must be before 'to' (default 'to' is now)", "type": "value_error"}])
    try:
        rows = await stats(session, settings, group_by, lo, hi, now, user, department)
    except ValueError as exc:
        raise HTTPException(422, detail=[{"loc": ["query", "from"], "field": "from",
                                          "msg": f"range too long for group_by={group_by}: {exc}",
                                          "type": "value_error"}]) from exc
    return StatsResponse(group_by=group_by, from_=local_iso(lo, settings), to=local_iso(hi, settings),
                         timezone=settings.timezone, currency=settings.currency, rows=rows)


@router.get("/status", summary="Recorder and report-sync status (last cycle, errors)")
async def status(request: Request, _: CurrentPrincipal) -> dict:
    watch = getattr(request.app.state, "pod_watch", None)
    async with request.app.state.sessionmaker() as session:
        usage_rollups = await rollups.describe(session, request.app.state.settings)
    return {"recorder": recorder_status(request).model_dump(), "report_sync": (await sync_status(request)).model_dump(),
            "pod_watch": None if watch is None else {"synced": watch.synced, "error": watch.error, "lists": watch.lists},
            "usage_rollups": usage_rollups}

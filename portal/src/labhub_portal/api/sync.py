"""POST /api/pod-report-sync and GET /api/pod-report-sync (status)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request

from .common import CurrentPrincipal
from .schemas import SyncResponse, SyncStatus
from .usage import sync_status

router = APIRouter(prefix="/api", tags=["report sync"])


@router.get("/pod-report-sync", response_model=SyncStatus, summary="Report sync status")
async def get_sync(request: Request, _: CurrentPrincipal) -> SyncStatus:
    return await sync_status(request)


@router.post("/pod-report-sync", response_model=SyncResponse, summary="Sync the MySQL pod_report now",
             responses={409: {"description": "report sync is off"}, 503: {"description": "MySQL unavailable"}})
async def run_sync(request: Request, _: CurrentPrincipal) -> SyncResponse:
    sync = request.app.state.report_sync
    if sync is None:
        raise HTTPException(409, detail="report sync is off (PORTAL_MYSQL_URL not set)")
    try:
        rows = await sync.run_once()
    except Exception as exc:  # status already recorded by the service
        raise HTTPException(503, detail=f"report sync failed, will retry: {type(exc).__name__}",
                            headers={"Retry-After": "60"}) from exc
    return SyncResponse(rows=rows, status=await sync_status(request))

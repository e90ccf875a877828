"""POST /api/pod-report-sync ("Sync now") and GET /api/pod-report-sync (status)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse

from .common import CurrentPrincipal
from .schemas import SyncResponse, SyncStatus
from .usage import sync_status

router = APIRouter(prefix="/api", tags=["report sync"])


@router.get("/pod-report-sync", response_model=SyncStatus, summary="Report sync status")
async def get_sync(request: Request, _: CurrentPrincipal) -> SyncStatus:
    return await sync_status(request)


@router.post("/pod-report-sync", response_model=SyncResponse, summary="Sync the MySQL pod_report now",
             description="Starts a sync in the background and waits for it at most `wait` seconds: 200 with the "
                         "rows written when it ended in time, 202 with the state `running` when it is still going "
                         "(also, at once, when a sync was already running), 503 when it failed. Never waits for "
                         "a MySQL server that does not answer: every MySQL step is abandoned after "
                         "PORTAL_MYSQL_TIMEOUT seconds.",
             responses={202: {"model": SyncResponse, "description": "the sync is running (rows: null)"},
                        409: {"description": "report sync is off"},
                        503: {"description": "the sync failed (MySQL unavailable or not answering); it retries"}})
async def run_sync(request: Request, _: CurrentPrincipal,
                   wait: Annotated[float, Query(ge=0, le=60, description="seconds to wait for the result")] = 10.0,
                   ) -> SyncResponse | JSONResponse:
    sync = request.app.state.report_sync
    if sync is None:
        raise HTTPException(409, detail="report sync is off (PORTAL_MYSQL_URL not set)")
    task = sync.start()
    if task is None:  # the scheduled sync is running
        return await _running(request)
    await asyncio.sleep(0)  # let it take the lock (its state is "running" from then on)
    done, _pending = await asyncio.wait({task}, timeout=wait)
    if not done:
        return await _running(request)
    error = task.exception()
    if error is not None:  # status already recorded by the service
        raise HTTPException(503, detail=f"report sync failed, will retry: {type(error).__name__}: {error}"[:300],
                            headers={"Retry-After": "60"})
    return SyncResponse(rows=task.result(), status=await sync_status(request))


async def _running(request: Request) -> JSONResponse:
    body = SyncResponse(rows=None, status=await sync_status(request))
    return JSONResponse(status_code=202, content=body.model_dump(mode="json"))

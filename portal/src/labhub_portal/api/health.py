"""Liveness, readiness and Prometheus metrics (no authentication)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

from .. import metrics
from ..cluster import ClusterError

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: database reachable, cluster reachable when configured",
            responses={503: {"description": "a dependency is down"}})
async def readyz(request: Request) -> JSONResponse:
    state = request.app.state
    checks: dict[str, str] = {}
    ready = True
    try:
        async with state.engine.connect() as conn:
            await asyncio.wait_for(conn.execute(text("SELECT 1")), 5)
        checks["database"] = "ok"
    except Exception as exc:  # any failure means not ready
        checks["database"] = f"error: {type(exc).__name__}"
        ready = False
    if state.cluster is None:
        checks["cluster"] = "not configured"
    else:
        try:
            await asyncio.wait_for(state.cluster.ping(), state.settings.kube_timeout)
            checks["cluster"] = "ok"
        except (ClusterError, asyncio.TimeoutError, OSError) as exc:
            status = getattr(exc, "status", None)  # no API message here: /readyz needs no authentication
            checks["cluster"] = f"error: {type(exc).__name__}" + (f" (HTTP {status})" if status else "")
            ready = False
    return JSONResponse({"status": "ok" if ready else "unavailable", "checks": checks},
                        status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}})
async def prometheus_metrics() -> Response:
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)

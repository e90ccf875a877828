"""Application factory.  The lifespan owns engines, session factories and the background services.

State for routers (also the web UI) lives in ``app.state``:

- ``app.state.settings``     Settings
- ``app.state.engine``       AsyncEngine (portal database)
- ``app.state.sessionmaker`` async_sessionmaker(expire_on_commit=False)
- ``app.state.cluster``      ClusterClient or None (no cluster configured)
- ``app.state.recorder``     Recorder (``.status`` = last cycle) or None
- ``app.state.report_sync``  ReportSync or None (no MySQL configured)
- ``app.state.pod_watch``    PodWatch (the live pod list kept by a watch) or None (no real API server)
- ``app.state.pod_usage``    PodUsage (actual CPU/memory from metrics.k8s.io, read when asked) or None
- ``app.state.gpu_usage``    GpuUsage (GPU utilisation and memory from Prometheus, when configured)
- ``app.state.hub``          HubClient or None (no hub API configured)
- ``app.state.idle_stopper`` GpuIdleStopper (the GPU idle stop policy) or None (off, or no cluster)
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from . import __version__, rollups
from .apidocs import document_common_statuses, mount_api_docs
from .bodylimit import BodyLimitMiddleware
from .hosts import HostCheckMiddleware, allowed_hosts
from .cluster import ClusterClient, KubernetesClusterClient, PodWatch, cluster_from_settings
from .podusage import GpuUsage, PodUsage
from .config import Settings
from .db.engine import make_engine, make_sessionmaker
from .hubapi import HubClient
from .idlestop import GpuIdleStopper
from .metrics import MetricsMiddleware
from .outages import install_outage_handlers
from .recorder.service import Recorder
from .reportsync.service import ReportSync

log = logging.getLogger("labhub_portal")

_UNSET = object()


async def _record_after(first_attempt: asyncio.Event, recorder: Recorder) -> None:
    await first_attempt.wait()
    await recorder.run_forever()


def create_app(settings: Settings | None = None, *, cluster: ClusterClient | None | object = _UNSET,
               start_services: bool = True) -> FastAPI:
    """Build the app.  ``cluster`` overrides the cluster from settings (the demo passes its simulator;
    the tests use the cluster from settings, a real API server); ``start_services=False`` keeps the recorder and report sync
    from running in the background (they can still be run on demand)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine = make_engine(settings.database_url, pool_size=settings.database_pool_size)
        app.state.engine = engine
        app.state.sessionmaker = make_sessionmaker(engine)
        app.state.cluster = cluster_from_settings(settings) if cluster is _UNSET else cluster
        app.state.hub = HubClient(settings) if settings.hub_api_url and settings.hub_api_token else None
        app.state.recorder = (Recorder(settings, app.state.sessionmaker, app.state.cluster)
                              if app.state.cluster is not None else None)
        app.state.report_sync = (ReportSync(settings, app.state.sessionmaker)
                                 if settings.mysql_target is not None else None)
        # the live pod list (/api/pods, Pods page) from a watch on a real API server
        app.state.pod_watch = (PodWatch(app.state.cluster)
                               if isinstance(app.state.cluster, KubernetesClusterClient) else None)
        # actual CPU and memory of the running servers (metrics.k8s.io), read when asked
        app.state.pod_usage = (PodUsage(app.state.cluster, ttl=settings.usage_metrics_ttl, timeout=settings.kube_timeout)
                               if app.state.cluster is not None else None)
        # GPU utilisation and memory of the running servers (Prometheus, the DCGM exporter's metrics)
        app.state.gpu_usage = GpuUsage(settings.prometheus_url, settings.hub_namespace, ttl=settings.usage_metrics_ttl,
                                       timeout=settings.prometheus_timeout, idle_threshold=settings.gpu_idle_threshold,
                                       idle_after=settings.gpu_idle_after)
        # the GPU idle stop policy (off by default): warns, tells the user, stops after the grace period
        app.state.idle_stopper = None
        if settings.gpu_idle_stop:
            if app.state.cluster is None:
                log.warning("PORTAL_GPU_IDLE_STOP is on but no cluster is configured: the policy cannot act")
            else:
                app.state.idle_stopper = GpuIdleStopper(settings, app.state.sessionmaker, app.state.cluster,
                                                        app.state.gpu_usage, app.state.hub)
        tasks: list[asyncio.Task] = []
        if start_services:
            if app.state.pod_watch is not None:
                tasks.append(asyncio.create_task(app.state.pod_watch.run_forever(), name="pod-watch"))
            # the usage rollups are (re)built, when the zone or formula changed, before the recorder
            # starts writing; /api/stats computes from the sessions until they are ready
            first_attempt = asyncio.Event()
            tasks.append(asyncio.create_task(rollups.keep_ensuring(app.state.sessionmaker, settings, first_attempt),
                                             name="usage-rollups"))
            if app.state.recorder is not None:
                tasks.append(asyncio.create_task(_record_after(first_attempt, app.state.recorder), name="recorder"))
            if app.state.report_sync is not None:
                tasks.append(asyncio.create_task(app.state.report_sync.run_forever(), name="report-sync"))
            if app.state.idle_stopper is not None:
                tasks.append(asyncio.create_task(app.state.idle_stopper.run_forever(), name="gpu-idle-stop"))
        log.info("portal %s started (cluster: %s, report sync: %s, GPU idle stop: %s)", __version__,
                 "configured" if app.state.cluster is not None else "not configured",
                 "on" if app.state.report_sync is not None else "off",
                 "on" if app.state.idle_stopper is not None else "off")
        # what start-up built lives as long as the process: keep the collector's full passes off it
        # (with ~150,000 such objects each full pass took ~70 ms, the p95 of /api/stats; bench/README.md)
        gc.freeze()
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for result in results:
                if isinstance(result, Exception) and not isinstance(result, asyncio.CancelledError):
                    log.error("background service failed on shutdown: %r", result)
            closers = [getattr(app.state.cluster, "close", None),
                       getattr(app.state.hub, "close", None),
                       getattr(app.state.report_sync, "close", None)]
            await asyncio.gather(*(c() for c in closers if c is not None), return_exceptions=True)
            await engine.dispose()

    app = FastAPI(
        title="Labhub usage portal",
        version=__version__,
        description="Records JupyterHub single-user pods, bills CPU/GPU/memory hours, stops servers and "
                    "syncs the MySQL `pod_report` table.  Scripts authenticate with `Authorization: Bearer "
                    "<PORTAL_TOKEN>`; browsers log in through JupyterHub (OAuth).",
        lifespan=lifespan,
        root_path=settings.root_path,
        # FastAPI's own /docs and /redoc load their assets from a CDN: /docs is served locally
        # instead (apidocs.py), /redoc not at all
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    mount_api_docs(app)
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(HostCheckMiddleware, allowed=allowed_hosts(settings))  # outermost: first to see a request

    install_outage_handlers(app)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError):
        errors = [{"loc": list(err.get("loc", ())), "field": ".".join(str(p) for p in err.get("loc", ())[1:]),
                   "msg": err.get("msg", ""), "type": err.get("type", "")} for err in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": errors})

    from .api import router as api_router
    from .auth import router as auth_router

    app.include_router(api_router)
    app.include_router(auth_router)
    try:
        web = importlib.import_module("labhub_portal.web.routes")
    except ModuleNotFoundError as exc:
        if exc.name not in ("labhub_portal.web", "labhub_portal.web.routes"):
            raise
    else:
        app.include_router(web.router)
        static = getattr(web, "mount_static", None)
        if static is not None:
            static(app)
    document_common_statuses(app)
    return app

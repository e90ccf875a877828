"""Stopping single-user servers: the one code path of ``POST /api/pods/stop`` (a person or a script)
and of the GPU idle stop policy (labhub_portal.idlestop).

Each target is checked against a fresh list of the hub namespace's single-user pods, stopped
through the hub API (``DELETE /hub/api/users/{name}/server`` or ``/servers/{server_name}``), and
when the hub cannot (no hub API, or it failed) the pod is deleted; every target gets a row in the
audit log (action ``stop_server``) naming who asked: ``token:...``, ``hub:<user>``, ``local:local``
or ``policy:gpu-idle``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import datetime, timezone

from sqlalchemy.ext.asyncio import AsyncSession

from . import metrics
from .api.schemas import StopResult
from .cluster import SERVERNAME_KEY, USERNAME_KEY, ClusterError, PodNotFound, is_singleuser_pod
from .config import Settings
from .db.models import AuditLog
from .hubapi import HubClient, HubError

log = logging.getLogger("labhub_portal.stop")


async def _delete_pod(cluster, name: str, timeout: float, hub_error: str | None) -> StopResult:
    """The fallback when the hub did not stop the server: delete the pod."""
    prefix = f"hub API failed ({hub_error}); " if hub_error else ""
    try:
        await asyncio.wait_for(cluster.delete_pod(name), timeout)
        return StopResult(pod_name=name, result="deleted", method="pod-delete", detail=prefix + "pod deleted")
    except PodNotFound:
        return StopResult(pod_name=name, result="failed", method="pod-delete", detail=prefix + "pod no longer exists")
    except (ClusterError, asyncio.TimeoutError, OSError) as exc:
        return StopResult(pod_name=name, result="failed", method="pod-delete",
                          detail=prefix + f"pod deletion failed: {type(exc).__name__}: {exc}"[:300])


async def stop_servers(settings: Settings, cluster, hub: HubClient | None, session: AsyncSession,
                       live_pods: list[dict], names: Iterable[str], actor: str,
                       details: dict[str, dict] | None = None) -> list[StopResult]:
    """Stop the servers of the pods ``names`` (each checked against ``live_pods``, a fresh list),
    audit each target as done by ``actor`` (with ``details[name]`` added to the audit detail), and
    return the results. The caller commits ``session``."""
    live = {(p.get("metadata") or {}).get("name"): p for p in live_pods
            if is_singleuser_pod(p, settings.hub_namespace)}
    results: list[StopResult] = []
    for name in dict.fromkeys(names):
        pod = live.get(name)
        target = f"{settings.hub_namespace}/{name}"
        if pod is None:
            result = StopResult(pod_name=name, result="refused",
                                detail=f"not a single-user pod of namespace {settings.hub_namespace}")
        else:
            meta = pod.get("metadata") or {}
            annotations, labels = meta.get("annotations") or {}, meta.get("labels") or {}
            username = annotations.get(USERNAME_KEY) or labels.get(USERNAME_KEY)
            server = annotations.get(SERVERNAME_KEY) or labels.get(SERVERNAME_KEY) or ""
            stopped: StopResult | None = None
            hub_error = None
            if hub is not None and username:
                try:
                    code = await hub.stop_server(username, server)
                    stopped = StopResult(pod_name=name, result="stopping", method="hub",
                                         detail=f"hub accepted the stop of {username}'s server"
                                                f"{' ' + repr(server) if server else ''} (HTTP {code})")
                except HubError as exc:
                    hub_error = str(exc)
            result = stopped if stopped is not None else await _delete_pod(cluster, name, settings.kube_timeout,
                                                                           hub_error)
        metrics.POD_STOPS.labels(result.result).inc()
        detail = {"method": result.method, "detail": result.detail, **((details or {}).get(name) or {})}
        session.add(AuditLog(at=datetime.now(timezone.utc), actor=actor, action="stop_server", target=target,
                             result=result.result, detail=detail))
        log.info("stop %s by %s -> %s (%s)", target, actor, result.result, result.detail)
        results.append(result)
    return results

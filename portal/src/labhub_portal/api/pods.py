"""/api/pods (live single-user pods) and POST /api/pods/stop (audited)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

from fastapi import APIRouter, HTTPException, Request, Response

from ..cluster import ClusterError, pods_to_observations
from ..config import Settings
from ..db.engine import SessionDep
from ..podusage import Reading
from .. import stops  # module import: stops uses this package's schemas
from .common import CurrentPrincipal, SettingsDep, local_iso
from .schemas import GpuIdlePolicy, GpuIdleStop, PodItem, PodList, StopRequest, StopResponse, UsageReading

router = APIRouter(prefix="/api", tags=["pods"])


def _cluster(request: Request):
    cluster = request.app.state.cluster
    if cluster is None:
        raise HTTPException(409, detail="no cluster configured (PORTAL_KUBECONFIG or in-cluster)")
    return cluster


async def _live_pods(request: Request, fresh: bool = False) -> list[dict]:
    """The hub namespace's single-user pods: from the pod watch while it is in sync (unless
    ``fresh``: a stop checks its targets against a list made for it), else listed now."""
    cluster = _cluster(request)
    watch = getattr(request.app.state, "pod_watch", None)
    if watch is not None and not fresh:
        pods = watch.pods()
        if pods is not None:
            return pods
    try:
        return await asyncio.wait_for(cluster.list_singleuser_pods(), request.app.state.settings.kube_timeout)
    except ClusterError as exc:  # the API's own reason (401/403 name the credentials or the missing permission)
        raise HTTPException(503, detail=f"cluster unavailable: {exc}", headers={"Retry-After": "10"}) from exc
    except (asyncio.TimeoutError, OSError) as exc:
        settings = request.app.state.settings
        raise HTTPException(503, detail=f"cluster unavailable: Failed to list pods of namespace "
                                        f"'{settings.hub_namespace}' due to: {type(exc).__name__} "
                                        f"(no answer within {settings.kube_timeout:g} s)",
                            headers={"Retry-After": "10"}) from exc


def _node_labels(request: Request) -> dict[str, dict[str, str]]:
    """The node labels the recorder last read (the GPU model of a pod's node)."""
    recorder = request.app.state.recorder
    return recorder.node_labels if recorder is not None else {}


def _watch_key(request: Request) -> tuple[int, int] | None:
    """What the pod list depends on while the watch is in sync (None otherwise): the watch's
    generation and the node labels the recorder last read."""
    watch = getattr(request.app.state, "pod_watch", None)
    return (watch.generation, id(_node_labels(request))) if watch is not None and watch.synced else None


@router.get("/pods", response_model=PodList, summary="Live single-user pods of the hub namespace",
            description="From the portal's watch of the API server while it is in sync (the answer is then "
                        "built at most once a second: ages may be up to 1 s old), else listed now.",
            responses={409: {"description": "no cluster configured"}, 503: {"description": "cluster unavailable"}})
async def list_pods(request: Request, settings: SettingsDep, _: CurrentPrincipal) -> Response:
    key = _watch_key(request)
    if key is None:
        listing = await pod_list(request, settings)
        return Response(listing.model_dump_json(), media_type="application/json")
    second = int(time.time())
    cached = getattr(request.app.state, "pod_list_json", None)
    if cached is None or cached[0] != (key, second):
        listing = await pod_list(request, settings)
        cached = ((key, second), listing.model_dump_json().encode())
        request.app.state.pod_list_json = cached
    return Response(cached[1], media_type="application/json")


async def pod_list(request: Request, settings: Settings) -> PodList:
    """The live single-user pods (see list_pods), ages as of now."""
    node_labels = _node_labels(request)
    # from the watch: the observations are computed once per change of the pods (or node labels)
    key = _watch_key(request)
    cached = getattr(request.app.state, "pod_observations", None)
    if key is not None and cached is not None and cached[0] == key:
        observations = cached[1]
    else:
        pods = await _live_pods(request)
        observations = pods_to_observations(pods, node_labels, settings.hub_namespace)
        if key is not None:
            request.app.state.pod_observations = (key, observations)
    usage = getattr(request.app.state, "pod_usage", None)
    reading = await usage.current() if usage is not None else None
    used = reading.usage if reading is not None else {}
    gpu = getattr(request.app.state, "gpu_usage", None)
    gpu_reading = await gpu.current() if gpu is not None else Reading("not configured", "no Prometheus reader")
    stopper = getattr(request.app.state, "idle_stopper", None)
    pending = stopper.pending if stopper is not None else {}
    now = datetime.now(timezone.utc)
    items = []
    for o in observations:
        warned = pending.get(o.pod_uid)
        idle_stop = GpuIdleStop(state="stopped" if warned.stopped_at else "pending",
                                warned_at=local_iso(warned.warned_at, settings) or "",
                                stop_at=local_iso(warned.stop_at, settings) or "",
                                stopped_at=local_iso(warned.stopped_at, settings), user_told=warned.user_told,
                                notice=warned.notice) if warned is not None else None
        pod_used = used.get(o.pod_name)
        gpu_used = gpu_reading.usage.get(o.pod_name, {})
        items.append(PodItem(pod_name=o.pod_name, pod_uid=o.pod_uid, namespace=o.namespace, username=o.username,
                             server_name=o.server_name, image=o.image, profile=o.profile, node=o.node, phase=o.phase,
                             ready=o.ready, deleting=o.deleting, started_at=local_iso(o.started_at, settings),
                             age_seconds=(now - o.started_at).total_seconds() if o.started_at else None,
                             cpu_request=o.cpu_request, cpu_limit=o.cpu_limit, memory_request=o.memory_request,
                             memory_limit=o.memory_limit, gpu_request=o.gpu_request, gpu_limit=o.gpu_limit,
                             gpu_model=o.gpu_model,
                             cpu_usage=float(pod_used["cpu"]) if pod_used else None,
                             memory_usage=int(pod_used["memory"]) if pod_used else None,
                             gpu_utilization=float(gpu_used["gpu_util"]) if "gpu_util" in gpu_used else None,
                             gpu_memory_usage=int(gpu_used["gpu_memory"]) if "gpu_memory" in gpu_used else None,
                             gpu_idle=bool(gpu_used["gpu_idle"]) if "gpu_idle" in gpu_used else None,
                             gpu_idle_stop=idle_stop))
    items.sort(key=lambda p: (p.username, p.pod_name))
    state = UsageReading(state=reading.state, detail=reading.detail, read_at=local_iso(reading.at, settings)) \
        if reading is not None else UsageReading(state="unknown", detail="no cluster configured")
    gpu_state = UsageReading(state=gpu_reading.state, detail=gpu_reading.detail,
                             read_at=local_iso(gpu_reading.at, settings))
    policy = GpuIdlePolicy(enabled=False)
    if stopper is not None:
        policy = GpuIdlePolicy(enabled=True, grace_seconds=settings.gpu_idle_stop_grace, state=stopper.status["state"],
                               detail=stopper.status["detail"],
                               last_round_at=local_iso(stopper.status["last_round_at"], settings))
    return PodList(namespace=settings.hub_namespace, pods=items, usage=state, gpu_usage=gpu_state,
                   gpu_idle_policy=policy)


@router.post("/pods/stop", response_model=StopResponse,
             summary="Stop several single-user servers (hub API first, pod deletion as fallback)",
             description="Targets are checked against the live list of the hub namespace's single-user pods "
                         "(label component=singleuser-server): the hub, the proxy, other namespaces and unknown "
                         "names are refused.  Every target is written to the audit log.",
             responses={409: {"description": "no cluster configured"}, 503: {"description": "cluster unavailable"}})
async def stop_pods(request: Request, body: StopRequest, session: SessionDep, settings: SettingsDep,
                    principal: CurrentPrincipal) -> StopResponse:
    cluster = _cluster(request)
    pods = await _live_pods(request, fresh=True)
    results = await stops.stop_servers(settings, cluster, request.app.state.hub, session, pods, body.pods,
                                 actor=f"{principal.kind}:{principal.name}")
    await session.commit()
    return StopResponse(results=results, stopped=sum(r.result in ("stopping", "deleted") for r in results),
                        refused=sum(r.result == "refused" for r in results),
                        failed=sum(r.result == "failed" for r in results))

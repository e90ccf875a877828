"""The cluster access seam.

Everything the portal needs from Kubernetes goes through :class:`ClusterClient`: the production
implementation is :class:`KubernetesClusterClient` (kubernetes_asyncio), which the tests run against
a real control plane; the demo ships a simulator speaking the same shapes.  Pods are plain
Kubernetes Pod JSON dicts exactly as the API returns them (camelCase keys), so every implementation
is interchangeable.

:func:`pods_to_observations` is the pure translation from Pod JSON to :class:`PodObservation` rows
used by the recorder (and by ``/api/pods``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol, runtime_checkable

log = logging.getLogger("labhub_portal.cluster")

SINGLEUSER_COMPONENT = "singleuser-server"
COMPONENT_LABEL = "component"
USERNAME_KEY = "hub.jupyter.org/username"
SERVERNAME_KEY = "hub.jupyter.org/servername"
PROFILE_KEYS = ("labhub.io/profile", "hub.jupyter.org/profile")
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
NOTEBOOK_CONTAINER = "notebook"


class ClusterError(Exception):
    """The cluster could not be reached or answered with an error (``status``: its HTTP status, if any)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class PodNotFound(ClusterError):
    """The pod to act on does not exist (any more)."""


@runtime_checkable
class ClusterClient(Protocol):
    """What the portal needs from a cluster.  Implementations raise :class:`ClusterError` on failure."""

    async def list_singleuser_pods(self) -> list[dict]:
        """Pod JSON of every single-user pod of the hub namespace (label component=singleuser-server)."""

    async def node_labels(self) -> dict[str, dict[str, str]]:
        """Node name -> labels (for the GPU model); may be empty when nodes cannot be read."""

    async def delete_pod(self, name: str) -> None:
        """Delete one pod of the hub namespace; :class:`PodNotFound` when it does not exist."""

    async def ping(self) -> None:
        """Raise :class:`ClusterError` unless the cluster API answers."""


# ---------------------------------------------------------------------------------------------
# quantities
_SUFFIX: dict[str, int | Decimal] = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([A-Za-z]{0,2})$")


def parse_quantity(value: Any) -> Decimal | None:
    """Parse a Kubernetes resource quantity ("500m", "2", "1Gi", "1e9") into a Decimal; None if absent/bad."""
    if value is None:
        return None
    if isinstance(value, (int, float, Decimal)):
        return Decimal(str(value))
    match = _QUANTITY.match(str(value).strip())
    if not match:
        return None
    number, suffix = match.groups()
    try:
        base = Decimal(number)
    except InvalidOperation:
        return None
    if suffix == "":
        return base
    if suffix not in _SUFFIX:
        return None
    return base * Decimal(_SUFFIX[suffix])


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PodObservation:
    """One single-user pod as the recorder stores it (CPU in cores, memory in bytes)."""

    pod_uid: str
    pod_name: str
    namespace: str
    username: str
    server_name: str
    image: str | None
    profile: str | None
    node: str | None
    phase: str | None
    ready: bool
    started_at: datetime  # pods not started yet are not observed
    cpu_request: float | None
    cpu_limit: float | None
    memory_request: int | None
    memory_limit: int | None
    gpu_request: int
    gpu_limit: int
    gpu_model: str | None
    deleting: bool = False
    labels: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def _resources(pod: dict) -> dict[str, dict[str, Decimal]]:
    """Sum requests/limits over the pod's containers (init containers do not hold resources later)."""
    totals: dict[str, dict[str, Decimal]] = {"requests": {}, "limits": {}}
    for container in (pod.get("spec") or {}).get("containers") or []:
        resources = container.get("resources") or {}
        for kind in ("requests", "limits"):
            for name, raw in (resources.get(kind) or {}).items():
                quantity = parse_quantity(raw)
                if quantity is not None:
                    totals[kind][name] = totals[kind].get(name, Decimal(0)) + quantity
    return totals


def _main_image(pod: dict) -> str | None:
    containers = (pod.get("spec") or {}).get("containers") or []
    for container in containers:
        if container.get("name") == NOTEBOOK_CONTAINER:
            return container.get("image")
    return containers[0].get("image") if containers else None


def _ready(pod: dict) -> bool:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return False


def is_singleuser_pod(pod: dict, namespace: str) -> bool:
    meta = pod.get("metadata") or {}
    return meta.get("namespace") == namespace and (meta.get("labels") or {}).get(COMPONENT_LABEL) == SINGLEUSER_COMPONENT


def pods_to_observations(pods: list[dict], node_labels: dict[str, dict[str, str]],
                         namespace: str | None = None) -> list[PodObservation]:
    """Translate Pod JSON into observations.

    Pods are skipped when they are not single-user pods (label component=singleuser-server, and
    the hub namespace when ``namespace`` is given), have no uid or user, have not started yet
    (no ``status.startTime``) or have finished (phase Succeeded/Failed).  The user comes from the
    ``hub.jupyter.org/username`` annotation (unescaped) or label; GPUs from the ``nvidia.com/gpu``
    request (or limit) and the GPU model from the node's ``nvidia.com/gpu.product`` label, or the
    pod's nodeSelector for that label when the node is unknown.
    """
    observations: list[PodObservation] = []
    seen: set[str] = set()
    for pod in pods:
        meta = pod.get("metadata") or {}
        labels = meta.get("labels") or {}
        annotations = meta.get("annotations") or {}
        status = pod.get("status") or {}
        spec = pod.get("spec") or {}
        if labels.get(COMPONENT_LABEL) != SINGLEUSER_COMPONENT:
            continue
        if namespace is not None and meta.get("namespace") != namespace:
            continue
        uid = meta.get("uid")
        username = annotations.get(USERNAME_KEY) or labels.get(USERNAME_KEY)
        started = parse_time(status.get("startTime"))
        phase = status.get("phase")
        if not uid or not username or started is None or phase in ("Succeeded", "Failed") or uid in seen:
            continue
        seen.add(uid)
        res = _resources(pod)
        gpu_req = res["requests"].get(GPU_RESOURCE) or res["limits"].get(GPU_RESOURCE) or Decimal(0)
        gpu_lim = res["limits"].get(GPU_RESOURCE) or gpu_req
        node = spec.get("nodeName")
        gpu_model = None
        if gpu_req > 0:
            gpu_model = (node_labels.get(node) or {}).get(GPU_PRODUCT_LABEL) if node else None
            gpu_model = gpu_model or (spec.get("nodeSelector") or {}).get(GPU_PRODUCT_LABEL)
        profile = next((annotations.get(k) or labels.get(k) for k in PROFILE_KEYS
                        if annotations.get(k) or labels.get(k)), None)

        def _num(kind: str, name: str, as_int: bool = False):
            value = res[kind].get(name)
            if value is None:
                return None
            return int(value) if as_int else float(value)

        observations.append(PodObservation(
            pod_uid=uid,
            pod_name=meta.get("name") or "",
            namespace=meta.get("namespace") or "",
            username=username,
            server_name=annotations.get(SERVERNAME_KEY) or labels.get(SERVERNAME_KEY) or "",
            image=_main_image(pod),
            profile=profile,
            node=node,
            phase=phase,
            ready=_ready(pod),
            started_at=started,
            cpu_request=_num("requests", "cpu"),
            cpu_limit=_num("limits", "cpu"),
            memory_request=_num("requests", "memory", True),
            memory_limit=_num("limits", "memory", True),
            gpu_request=int(gpu_req),
            gpu_limit=int(gpu_lim),
            gpu_model=gpu_model,
            deleting=bool(meta.get("deletionTimestamp")),
            labels=dict(labels),
        ))
    return observations


# ---------------------------------------------------------------------------------------------
_HINTS = {
    401: "the API server does not accept the portal's credentials (ServiceAccount token revoked or expired?"
         " the portal role writes a new kubeconfig)",
    403: "the portal's ServiceAccount lacks this permission (the portal role's Role/ClusterRole)",
}


def _window_seconds(value: Any) -> Decimal | None:
    """A metav1.Duration as metrics-server writes it (Go's time.Duration text: "15s", "1m0s", "30.5s")."""
    if not isinstance(value, str):
        return None
    seconds: dict[str, Decimal] = {"h": Decimal(3600), "m": Decimal(60), "s": Decimal(1), "ms": Decimal("0.001")}
    total, matched = Decimal(0), 0
    for number, unit in re.findall(r"([0-9.]+)(h|ms|m|s)", value):
        total += Decimal(number) * seconds[unit]
        matched += len(number) + len(unit)
    return total if matched == len(value) and matched else None


def podmetrics_to_usage(items: list[dict]) -> dict[str, dict[str, Decimal]]:
    """PodMetrics items -> pod name -> {"cpu": cores, "memory": bytes[, "window": seconds]}: the
    containers' usage summed (k8s.io/metrics pkg/apis/metrics/v1beta1 types.go: PodMetrics has
    timestamp, window and containers[].usage, a ResourceList of cpu and memory quantities)."""
    out: dict[str, dict[str, Decimal]] = {}
    for item in items:
        name = (item.get("metadata") or {}).get("name")
        if not name:
            continue
        cpu, memory = Decimal(0), Decimal(0)
        for container in item.get("containers") or []:
            usage = container.get("usage") or {}
            cpu += parse_quantity(usage.get("cpu")) or 0
            memory += parse_quantity(usage.get("memory")) or 0
        entry = {"cpu": cpu, "memory": memory}
        window = _window_seconds(item.get("window"))
        if window is not None:
            entry["window"] = window
        out[name] = entry
    return out


def http_error(what: str, status: int, body: bytes) -> ClusterError:
    """"Failed to <what> due to: HTTP <status> <reason>: <message of the API's Status>" (+ a hint for 401/403)."""
    reason, message = "", ""
    try:
        data = json.loads(body)
        if isinstance(data, dict):
            reason, message = str(data.get("reason") or ""), str(data.get("message") or "")
    except ValueError:
        message = body[:200].decode(errors="replace")
    detail = " ".join(part for part in (f"HTTP {status}", reason) if part)
    if message:
        detail += f": {message}"
    if status in _HINTS:
        detail += f" ({_HINTS[status]})"
    return ClusterError(f"Failed to {what} due to: {detail}"[:1000], status=status)


class KubernetesClusterClient:
    """ClusterClient over kubernetes_asyncio for the hub namespace.

    Needs (least privilege): list pods and delete pods in the hub namespace; optionally
    list nodes (cluster scope) for the GPU model label, otherwise the pod's nodeSelector is used.
    """

    def __init__(self, namespace: str, *, kubeconfig: str | None = None, context: str | None = None,
                 in_cluster: bool = False, selector: str = f"{COMPONENT_LABEL}={SINGLEUSER_COMPONENT}",
                 timeout: float = 10.0) -> None:
        self.namespace = namespace
        self.kubeconfig = kubeconfig
        self.context = context
        self.in_cluster = in_cluster
        self.selector = selector
        self.timeout = timeout
        self._api_client = None
        self._nodes_forbidden = False

    async def _client(self):
        if self._api_client is None:
            from kubernetes_asyncio import client, config

            configuration = client.Configuration()
            try:
                if self.in_cluster:
                    config.load_incluster_config(client_configuration=configuration)
                else:
                    await config.load_kube_config(config_file=self.kubeconfig, context=self.context,
                                                  client_configuration=configuration)
            except Exception as exc:  # bad/missing kubeconfig: report as a cluster error, retried later
                source = "the in-cluster service account" if self.in_cluster else f"kubeconfig '{self.kubeconfig}'"
                raise ClusterError(f"Failed to load cluster credentials from {source} due to: "
                                   f"{type(exc).__name__}: {exc}") from exc
            self._api_client = client.ApiClient(configuration)
        return self._api_client

    async def _request(self, method: str, path: str, query: list[tuple[str, str]] | None = None) -> tuple[int, bytes]:
        """Send one request; returns (status, body).  Connection errors and timeouts -> ClusterError."""
        api = await self._client()
        try:
            response = await api.call_api(path, method, query_params=query or [],
                                          header_params={"Accept": "application/json"},
                                          auth_settings=["BearerToken"], _preload_content=False,
                                          _request_timeout=self.timeout)
            if isinstance(response, tuple):
                response = response[0]
            try:
                body = await response.read()
            finally:
                response.release()
        except ClusterError:
            raise
        except asyncio.TimeoutError as exc:
            raise ClusterError(f"Failed to {method} {path} due to: TimeoutError (no answer within "
                               f"{self.timeout:g} s)") from exc
        except Exception as exc:  # aiohttp/connection errors
            raise ClusterError(f"Failed to {method} {path} due to: {type(exc).__name__}: {exc}") from exc
        return response.status, body

    async def _get_json(self, path: str, what: str, query: list[tuple[str, str]] | None = None) -> dict:
        """GET a path and return the raw JSON body (no model deserialisation: fast and exact)."""
        status, body = await self._request("GET", path, query)
        if not 200 <= status <= 299:
            raise http_error(what, status, body)
        try:
            return json.loads(body)
        except ValueError as exc:
            raise ClusterError(f"Failed to {what} due to: the answer is not JSON") from exc

    async def list_singleuser_pods(self) -> list[dict]:
        return (await self.list_singleuser_pods_versioned())[0]

    async def list_singleuser_pods_versioned(self) -> tuple[list[dict], str]:
        """The single-user pods and the list's resourceVersion (where a watch starts)."""
        data = await self._get_json(f"/api/v1/namespaces/{self.namespace}/pods",
                                    f"list pods of namespace '{self.namespace}'", [("labelSelector", self.selector)])
        pods = [pod for pod in data.get("items") or [] if is_singleuser_pod(pod, self.namespace)]
        return pods, str((data.get("metadata") or {}).get("resourceVersion") or "")

    async def watch_singleuser_pods(self, resource_version: str,
                                    timeout_seconds: int = 60) -> AsyncIterator[tuple[str, dict]]:
        """Watch events (type, object) of the selected pods from ``resource_version``, bookmarks
        included; the API server ends the stream after ``timeout_seconds`` (the client gives up 30 s
        later: a stream that went silent is noticed).  An ERROR event is yielded as it comes (410
        Gone: the version is too old, list again)."""
        api = await self._client()
        path = f"/api/v1/namespaces/{self.namespace}/pods"
        query = [("labelSelector", self.selector), ("watch", "true"), ("resourceVersion", resource_version),
                 ("allowWatchBookmarks", "true"), ("timeoutSeconds", str(timeout_seconds))]
        try:
            response = await api.call_api(path, "GET", query_params=query, header_params={"Accept": "application/json"},
                                          auth_settings=["BearerToken"], _preload_content=False,
                                          _request_timeout=timeout_seconds + 30)
        except Exception as exc:  # aiohttp/connection errors
            raise ClusterError(f"Failed to watch pods of namespace '{self.namespace}' due to: "
                               f"{type(exc).__name__}: {exc}") from exc
        if isinstance(response, tuple):
            response = response[0]
        try:
            if not 200 <= response.status <= 299:
                raise http_error(f"watch pods of namespace '{self.namespace}'", response.status, await response.read())
            pending = b""
            try:
                async for chunk in response.content.iter_any():
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        if line.strip():
                            event = json.loads(line)
                            yield str(event.get("type") or ""), event.get("object") or {}
            except (asyncio.TimeoutError, OSError, ValueError) as exc:
                raise ClusterError(f"Failed to watch pods of namespace '{self.namespace}' due to: "
                                   f"{type(exc).__name__}: {exc}") from exc
            except Exception as exc:  # aiohttp payload errors
                if isinstance(exc, ClusterError):
                    raise
                raise ClusterError(f"Failed to watch pods of namespace '{self.namespace}' due to: "
                                   f"{type(exc).__name__}: {exc}") from exc
        finally:
            response.release()

    async def node_labels(self) -> dict[str, dict[str, str]]:
        if self._nodes_forbidden:
            return {}
        try:
            data = await self._get_json("/api/v1/nodes", "list nodes")
        except ClusterError as exc:
            if exc.status == 403:
                self._nodes_forbidden = True  # RBAC does not grant nodes: use the pods' nodeSelector
                return {}
            raise
        return {(item.get("metadata") or {}).get("name", ""): (item.get("metadata") or {}).get("labels") or {}
                for item in data.get("items") or []}

    async def pod_usage(self) -> dict[str, dict[str, Decimal]]:
        """Actual use of each single-user pod from the resource metrics API (metrics.k8s.io/v1beta1
        PodMetrics, served by metrics-server, MicroK8s' metrics-server addon): pod name ->
        ``{"cpu": cores, "memory": bytes}`` summed over its containers, with ``"window"`` (the
        seconds the CPU rate is averaged over). ClusterError with ``status`` 404 when the cluster
        does not serve the API, 503 while its backend is unavailable, 403 without the Role's rule."""
        data = await self._get_json(f"/apis/metrics.k8s.io/v1beta1/namespaces/{self.namespace}/pods",
                                    f"read pod metrics of namespace '{self.namespace}'",
                                    [("labelSelector", self.selector)])
        return podmetrics_to_usage(data.get("items") or [])

    async def delete_pod(self, name: str) -> None:
        status, body = await self._request("DELETE", f"/api/v1/namespaces/{self.namespace}/pods/{name}")
        if status == 404:
            raise PodNotFound(name)
        if not 200 <= status <= 299:
            raise http_error(f"delete pod '{self.namespace}/{name}'", status, body)

    async def ping(self) -> None:
        await self._get_json(f"/api/v1/namespaces/{self.namespace}/pods",
                             f"list pods of namespace '{self.namespace}'", [("limit", "1")])

    async def close(self) -> None:
        if self._api_client is not None:
            await self._api_client.close()
            self._api_client = None


class PodWatch:
    """The hub namespace's single-user pods kept by a watch (list once, then the API server's
    events), so /api/pods and the Pods page answer from memory instead of listing pods from the
    API server on every request.  ``pods()`` is None while the watch is not in sync (starting, the
    API server unreachable, a stream broken): callers then list pods themselves.  A stream ends
    after ``timeout_seconds`` and is resumed from the last resourceVersion (bookmarks keep it
    current); 410 Gone or any error means list again, after a back-off of 1 s doubling to 30 s."""

    def __init__(self, cluster: KubernetesClusterClient, timeout_seconds: int = 60) -> None:
        self.cluster = cluster
        self.timeout_seconds = timeout_seconds
        self._pods: dict[str, dict] = {}
        self.synced = False
        self.error: str | None = None
        self.lists = 0  # full lists made (the first, then after errors or 410 Gone)
        self.generation = 0  # changes with every change of the pods held (caches key on it)

    def pods(self) -> list[dict] | None:
        if not self.synced:
            return None
        return [pod for pod in self._pods.values() if is_singleuser_pod(pod, self.cluster.namespace)]

    async def _relist(self) -> str:
        pods, version = await self.cluster.list_singleuser_pods_versioned()
        self.lists += 1
        self._pods = {(pod.get("metadata") or {}).get("uid", ""): pod for pod in pods}
        self.generation += 1
        self.synced, self.error = True, None
        return version

    async def run_forever(self) -> None:
        backoff = 1.0
        while True:
            try:
                version = await self._relist()
                backoff = 1.0
                gone = False
                loop = asyncio.get_running_loop()
                while not gone:  # one stream after the other from the last version seen
                    opened, events = loop.time(), 0
                    async for kind, obj in self.cluster.watch_singleuser_pods(version, self.timeout_seconds):
                        events += 1
                        meta = obj.get("metadata") or {}
                        if kind == "ERROR":
                            if obj.get("code") == 410:
                                gone = True
                                break
                            raise ClusterError(f"Failed to watch pods of namespace '{self.cluster.namespace}' "
                                               f"due to: {obj.get('message') or obj}")
                        version = str(meta.get("resourceVersion") or version)
                        if kind in ("ADDED", "MODIFIED", "DELETED"):
                            self.generation += 1
                        if kind == "DELETED":
                            self._pods.pop(meta.get("uid", ""), None)
                        elif kind in ("ADDED", "MODIFIED"):
                            self._pods[meta.get("uid", "")] = obj
                    if not events and loop.time() - opened < 1:  # closed at once: not a busy loop
                        await asyncio.sleep(1)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the API server unreachable or refusing: list per request meanwhile
                self.synced, self.error = False, f"{type(exc).__name__}: {exc}"
                log.warning("pod watch: %s (retry in %.0f s)", self.error, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)


def cluster_from_settings(settings) -> KubernetesClusterClient | None:
    """The production cluster client, or None when no cluster is configured (recorder off)."""
    if not settings.cluster_configured:
        return None
    return KubernetesClusterClient(settings.hub_namespace, kubeconfig=settings.kubeconfig,
                                   context=settings.kube_context, in_cluster=settings.in_cluster,
                                   selector=settings.singleuser_selector, timeout=settings.kube_timeout)

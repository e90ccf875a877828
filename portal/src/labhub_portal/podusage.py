"""Actual CPU and memory use of the running servers, from the cluster's resource metrics API, and
their GPU utilisation and GPU memory from Prometheus (the DCGM exporter's metrics), where configured.

MicroK8s' ``metrics-server`` addon (enabled by Labhub) serves ``metrics.k8s.io/v1beta1``: per pod,
the CPU rate averaged over a short window and the memory working set, refreshed every scrape
(15-60 s). The portal reads the hub namespace's PodMetrics when a page or ``/api/pods`` asks,
at most once per ``ttl`` seconds (one read at a time; others use the last one), within the
cluster timeout. It never fails a request: when the API is not served (404), its backend is
down (503), the portal's Role lacks the rule (403) or the call fails, the reading says so and
the pods are listed without usage.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal

import httpx

from .cluster import ClusterError

#: the states of a reading (what the pods page says about the usage lines)
STATES = ("unknown", "ok", "not served", "forbidden", "unavailable", "not configured")


@dataclass
class Reading:
    state: str = "unknown"
    detail: str = ""
    at: datetime | None = None
    usage: dict[str, dict[str, Decimal]] = field(default_factory=dict)


class _Reader:
    """A reading refreshed when asked, at most once per ``ttl`` seconds, one read at a time (other
    requests meanwhile get the last reading); subclasses say how to read."""

    def __init__(self, ttl: float, reading: Reading, enabled: bool = True) -> None:
        self.ttl = ttl
        self.reading = reading
        self.enabled = enabled
        self._read_at = float("-inf")
        self._lock = asyncio.Lock()

    async def current(self) -> Reading:
        """The last reading, refreshed first when it is older than ``ttl``."""
        if not self.enabled or time.monotonic() - self._read_at < self.ttl or self._lock.locked():
            return self.reading
        async with self._lock:
            self.reading = await self._read()
            self._read_at = time.monotonic()
        return self.reading

    async def _read(self) -> Reading:
        raise NotImplementedError


class PodUsage(_Reader):
    def __init__(self, cluster: object, *, ttl: float = 15.0, timeout: float = 10.0) -> None:
        super().__init__(ttl, Reading())
        self.cluster = cluster
        self.timeout = timeout

    async def _read(self) -> Reading:
        now = datetime.now(timezone.utc)
        read = getattr(self.cluster, "pod_usage", None)
        if read is None:
            return Reading("not served", "this cluster client has no resource metrics", now)
        try:
            usage = await asyncio.wait_for(read(), self.timeout)
        except ClusterError as exc:
            if exc.status == 404:
                return Reading("not served", "the cluster does not serve metrics.k8s.io (enable MicroK8s' "
                                             "metrics-server addon)", now)
            if exc.status == 403:
                return Reading("forbidden", f"{exc} (the portal's Role needs get/list on pods.metrics.k8s.io)", now)
            return Reading("unavailable", str(exc), now)
        except (asyncio.TimeoutError, OSError) as exc:
            return Reading("unavailable", f"Failed to read pod metrics due to: {type(exc).__name__} "
                                          f"(no answer within {self.timeout:g} s)", now)
        return Reading("ok", "", now, usage)


#: What the GPU Operator's DCGM exporter (dcgm-exporter 4.4.2-4.7.0) reports per GPU, labelled with
#: the pod, namespace and container holding it (internal/pkg/transformation/const.go: "pod",
#: "namespace", "container"), kept by a scrape with honor_labels: the GPU utilisation in % and the
#: frame buffer in use in MiB (etc/default-counters.csv: DCGM_FI_DEV_GPU_UTIL, DCGM_FI_DEV_FB_USED).
#: A MIG instance reports no DCGM_FI_DEV_GPU_UTIL: its busy measure is the graphics engine's
#: activity (DCGM_FI_PROF_GR_ENGINE_ACTIVE, a ratio, on the series with a GPU_I_ID) x 100, as in
#: the collection's recording rule labhub:gpu_busy:percent (plugins/module_utils/_monitoring_rules.py):
#: ``DCGM_FI_DEV_GPU_UTIL or (DCGM_FI_PROF_GR_ENGINE_ACTIVE{GPU_I_ID!=""} * 100)``.
GPU_UTIL = 'DCGM_FI_DEV_GPU_UTIL{{namespace="{ns}",pod!=""}}'
MIG_ACTIVE = 'DCGM_FI_PROF_GR_ENGINE_ACTIVE{{namespace="{ns}",pod!="",GPU_I_ID!=""}}'


def busy_peak_query(window: str) -> str:
    """The busiest of each pod's GPUs and MIG instances (%) over ``window`` (a PromQL duration
    such as ``3600s``; ``{ns}`` still to fill in): the maximum of the raw samples, full GPUs and
    MIG instances alike (the recording rule's union, taken per series before the maximum)."""
    return (f'max by (pod) (max_over_time({GPU_UTIL}[{window}]) '
            f'or max_over_time({MIG_ACTIVE}[{window}]) * 100)')


GPU_QUERIES = {
    "gpu_util": f'avg by (pod) ({GPU_UTIL} or {MIG_ACTIVE} * 100)',
    "gpu_memory": 'sum by (pod) (DCGM_FI_DEV_FB_USED{{namespace="{ns}",pod!=""}}) * 1048576',
    # held idle: the busiest of the pod's GPUs over the last `idle` seconds, and how long its GPUs
    # have been reported (oldest sample within twice that): a pod seen for less is not judged yet
    "gpu_peak": busy_peak_query("{idle}s"),
    "gpu_seen": f'time() - min by (pod) (min_over_time(timestamp({GPU_UTIL})[{{twice}}s:]) '
                f'or min_over_time(timestamp({MIG_ACTIVE})[{{twice}}s:]))',
}


class GpuUsage(_Reader):
    """Each running server's GPU utilisation (average over its GPUs, %) and GPU memory in use
    (bytes) from Prometheus, read when asked at most once per ``ttl`` seconds, never failing a
    request: ``not configured`` without ``PORTAL_PROMETHEUS_URL``, ``unavailable`` with the reason
    when Prometheus does not answer or refuses the query."""

    def __init__(self, url: str | None, namespace: str, *, ttl: float = 15.0, timeout: float = 10.0,
                 idle_threshold: float = 5.0, idle_after: float = 3600.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(ttl, Reading() if url else Reading("not configured", "PORTAL_PROMETHEUS_URL is not set"),
                         enabled=url is not None)
        self.url = url or ""
        self.namespace = namespace
        self.idle_threshold = Decimal(str(idle_threshold))
        self.idle_after = idle_after
        self.timeout = timeout
        self.transport = transport

    async def _query(self, client: httpx.AsyncClient, url: str, query: str) -> dict[str, Decimal]:
        response = await client.get(f"{url}/api/v1/query", params={"query": query})
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or body.get("status") != "success":
            reason = body.get("error") or response.reason_phrase
            raise PrometheusError(f"HTTP {response.status_code} {reason}")
        out: dict[str, Decimal] = {}
        for series in (body.get("data") or {}).get("result") or []:
            pod = (series.get("metric") or {}).get("pod")
            value = (series.get("value") or [None, None])[1]
            try:
                number = Decimal(str(value))
            except ArithmeticError:
                continue
            if pod and number.is_finite():
                out[pod] = number
        return out

    async def peak_since(self, seconds: float) -> dict[str, Decimal]:
        """The busiest of each pod's GPUs and MIG instances (%) over the last ``seconds``, read now
        (not the cached reading): what the GPU idle stop policy checks before it stops a server.
        Raises PrometheusError or httpx.HTTPError."""
        window = f"{max(1, math.ceil(seconds))}s"
        async with httpx.AsyncClient(timeout=self.timeout, transport=self.transport) as client:
            return await self._query(client, self.url, busy_peak_query(window).format(ns=self.namespace))

    async def _read(self) -> Reading:
        url = self.url
        now = datetime.now(timezone.utc)
        usage: dict[str, dict[str, Decimal]] = {}
        try:
            async with httpx.AsyncClient(timeout=self.timeout, transport=self.transport) as client:
                for key, query in GPU_QUERIES.items():
                    expr = query.format(ns=self.namespace, idle=int(self.idle_after), twice=int(2 * self.idle_after))
                    for pod, value in (await self._query(client, url, expr)).items():
                        usage.setdefault(pod, {})[key] = value
        except PrometheusError as exc:
            return Reading("unavailable", f"Failed to query Prometheus at {url} due to: {exc}", now)
        except httpx.HTTPError as exc:
            hint = f" (no answer within {self.timeout:g} s)" if isinstance(exc, httpx.TimeoutException) else ""
            return Reading("unavailable", f"Failed to query Prometheus at {url} due to: {type(exc).__name__}: "
                                          f"{exc}{hint}", now)
        for values in usage.values():  # busy within the window: 0; quiet for all of it: 1; else unknown
            if "gpu_peak" not in values:
                continue
            if values["gpu_peak"] > self.idle_threshold:
                values["gpu_idle"] = Decimal(0)
            elif values.get("gpu_seen", Decimal(0)) >= Decimal(str(self.idle_after)):
                values["gpu_idle"] = Decimal(1)
        return Reading("ok", "", now, usage)


class PrometheusError(Exception):
    """Prometheus answered the query with an error."""

"""Actual CPU and memory use of the running servers, from the cluster's resource metrics API.

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
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal

from .cluster import ClusterError

#: state -> what the pods page says about the usage columns
STATES = ("unknown", "ok", "not served", "forbidden", "unavailable")


@dataclass
class Reading:
    state: str = "unknown"
    detail: str = ""
    at: datetime | None = None
    usage: dict[str, dict[str, Decimal]] = field(default_factory=dict)


class PodUsage:
    def __init__(self, cluster: object, *, ttl: float = 15.0, timeout: float = 10.0) -> None:
        self.cluster = cluster
        self.ttl = ttl
        self.timeout = timeout
        self.reading = Reading()
        self._read_at = float("-inf")
        self._lock = asyncio.Lock()

    async def current(self) -> Reading:
        """The last reading, refreshed first when it is older than ``ttl``."""
        if time.monotonic() - self._read_at < self.ttl:
            return self.reading
        if self._lock.locked():  # another request is reading: use the last one
            return self.reading
        async with self._lock:
            self.reading = await self._read()
            self._read_at = time.monotonic()
        return self.reading

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

"""The recorder service: one cycle every PORTAL_RECORD_INTERVAL seconds, back-off on errors."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from datetime import datetime, timezone

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .. import metrics
from ..cluster import ClusterClient, ClusterError, pods_to_observations
from ..config import Settings
from . import repository

log = logging.getLogger("labhub_portal.recorder")


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Recorder:
    def __init__(self, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], cluster: ClusterClient,
                 clock: Callable[[], datetime] = _utcnow) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.cluster = cluster
        self.clock = clock
        self._node_labels: dict[str, dict[str, str]] = {}
        self._lock = asyncio.Lock()
        self.status: dict = {
            "enabled": True, "state": "starting", "last_cycle_at": None, "last_success_at": None,
            "last_error": None, "consecutive_errors": 0, "observed_pods": None, "closed_sessions": None,
            "open_sessions": None, "duration_ms": None, "next_cycle_at": None, "cycles": 0, "errors": 0,
        }

    @property
    def node_labels(self) -> dict[str, dict[str, str]]:
        """Node labels from the last cycle (for the GPU model of live pods)."""
        return self._node_labels

    def _fail(self, stage: str, exc: BaseException, now: datetime, started: float) -> dict:
        message = f"{stage}: {type(exc).__name__}: {exc}"[:500]
        self.status.update(state="error", last_cycle_at=now, last_error=message,
                           consecutive_errors=self.status["consecutive_errors"] + 1,
                           errors=self.status["errors"] + 1, cycles=self.status["cycles"] + 1,
                           duration_ms=round((time.perf_counter() - started) * 1000, 2))
        metrics.RECORDER_CYCLES.labels("error").inc()
        metrics.RECORDER_UP.set(0)
        metrics.RECORDER_LAST_CYCLE.set(now.timestamp())
        metrics.RECORDER_CONSECUTIVE_ERRORS.set(self.status["consecutive_errors"])
        log.warning("recorder cycle failed (%s)", message)
        return dict(self.status)

    async def run_once(self) -> dict:
        """One cycle.  Never raises for cluster or database failures: they are recorded in ``status``."""
        async with self._lock:
            return await self._cycle()

    async def _cycle(self) -> dict:
        started = time.perf_counter()
        now = self.clock()
        settings = self.settings
        try:
            pods = await asyncio.wait_for(self.cluster.list_singleuser_pods(), settings.kube_timeout)
        except (ClusterError, asyncio.TimeoutError, OSError) as exc:
            await self._sweep_unobserved(now)
            return self._fail("cluster", exc, now, started)
        try:
            self._node_labels = await asyncio.wait_for(self.cluster.node_labels(), settings.kube_timeout)
        except (ClusterError, asyncio.TimeoutError, OSError) as exc:
            # Only the GPU model depends on node labels: keep the previous ones and carry on.
            log.warning("node labels unavailable, using cached ones: %s", exc)
        observations = pods_to_observations(pods, self._node_labels, settings.hub_namespace)
        try:
            async with self.sessionmaker() as session:
                async with session.begin():
                    await repository.lock_changes(session)
                    await repository.upsert_observations(session, observations, now, settings.gap_seconds)
                    closed = await repository.close_gone(session, settings.hub_namespace, now)
                    open_count = await repository.count_open(session)
        except (SQLAlchemyError, OSError, asyncio.TimeoutError) as exc:
            return self._fail("database", exc, now, started)
        duration = time.perf_counter() - started
        self.status.update(state="ok", last_cycle_at=now, last_success_at=now, last_error=None,
                           consecutive_errors=0, observed_pods=len(observations), closed_sessions=closed,
                           open_sessions=open_count, duration_ms=round(duration * 1000, 2),
                           cycles=self.status["cycles"] + 1)
        metrics.RECORDER_CYCLES.labels("ok").inc()
        metrics.RECORDER_UP.set(1)
        metrics.RECORDER_LAST_CYCLE.set(now.timestamp())
        metrics.RECORDER_LAST_SUCCESS.set(now.timestamp())
        metrics.RECORDER_CONSECUTIVE_ERRORS.set(0)
        metrics.RECORDER_DURATION.observe(duration)
        metrics.OPEN_SESSIONS.set(open_count)
        metrics.OBSERVED_PODS.set(len(observations))
        return dict(self.status)

    async def _sweep_unobserved(self, now: datetime) -> None:
        """While the cluster cannot be read, end sessions that fell out of the gap window."""
        try:
            async with self.sessionmaker() as session:
                async with session.begin():
                    await repository.lock_changes(session)
                    closed = await repository.close_unobserved(session, self.settings.hub_namespace, now,
                                                               self.settings.gap_seconds)
            if closed:
                log.warning("ended %d sessions unobserved for more than %.0f s", closed, self.settings.gap_seconds)
        except (SQLAlchemyError, OSError, asyncio.TimeoutError) as exc:
            log.warning("gap sweep skipped, database unavailable: %s", exc)

    def next_delay(self) -> float:
        """Regular interval after success; after errors an exponential back-off (1 s, 2 s, 4 s ...)
        that never waits longer than one interval (nor retry_max_backoff): an outage costs at most
        one interval of observation more than it lasted."""
        errors = self.status["consecutive_errors"]
        if errors == 0:
            return self.settings.record_interval
        base = min(self.settings.record_interval, 1.0)
        delay = min(self.settings.retry_max_backoff, base * 2 ** (errors - 1)) * (0.9 + random.random() * 0.2)
        return min(delay, self.settings.record_interval)

    async def run_forever(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not kill the service: log, count, back off
                log.exception("unexpected recorder error")
                self.status["consecutive_errors"] += 1
                self.status["state"] = "error"
                metrics.RECORDER_CYCLES.labels("error").inc()
            delay = self.next_delay()
            self.status["next_cycle_at"] = datetime.fromtimestamp(time.time() + delay, timezone.utc)
            await asyncio.sleep(delay)

"""The GPU idle stop policy (PORTAL_GPU_IDLE_STOP, off by default): one round every
PORTAL_GPU_IDLE_CHECK_INTERVAL seconds.

Each round reads the servers' GPU use (GpuUsage: Prometheus, the same reading the Pods page shows)
and a fresh list of the hub namespace's single-user pods, then for each running server:

* **flagged GPU idle** (its GPUs at or below PORTAL_GPU_IDLE_THRESHOLD % for PORTAL_GPU_IDLE_AFTER s)
  and not warned yet: a warning is recorded (table ``gpu_idle_warnings``: time, pod, user, the idle
  figures, when it stops) and audited (``gpu_idle_warning`` / ``warned``), and the user is told on
  their hub page (POST /hub/api/labhub/notices/<user>; a hub without that endpoint answers 404 and
  the warning says "user not told: the hub has no notice endpoint"; the policy goes on all the same);
* **warned, grace over** (PORTAL_GPU_IDLE_STOP_GRACE s after the warning) and still flagged: the
  busiest of its GPUs since the warning is read fresh from Prometheus; at or below the threshold,
  the server is stopped through the manual stop's own code (labhub_portal.stops: hub API first, pod
  deletion as fallback), audited as ``stop_server`` by ``policy:gpu-idle`` with the figures, and its
  notice removed;
* **busy again** (or its GPUs busier since the warning): the warning is cleared (audited
  ``cleared``) and the notice removed; a server whose pod is gone loses its warning too.

It never acts while Prometheus is unavailable or not configured, nor while the pods cannot be
listed: the log says so once per change of that state. The warnings are in the database, so a
restart of the portal never stops a server before its grace period. No secret reaches the log or
the audit detail (hub answers are cut to their first 200 characters, as for manual stops).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import httpx
from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..cluster import ClusterError, PodObservation, pods_to_observations
from ..config import Settings
from ..db.models import AuditLog, GpuIdleWarning
from ..hubapi import HubClient, HubError, NoNoticeEndpoint
from ..podusage import GpuUsage, PrometheusError
from ..stops import stop_servers

log = logging.getLogger("labhub_portal.idlestop")

POLICY = "gpu-idle"
ACTOR = f"policy:{POLICY}"
WARNING_ACTION = "gpu_idle_warning"
TOLD = "told on the hub page"
NO_ENDPOINT = "user not told: the hub has no notice endpoint"
NO_HUB = "user not told: no hub API configured (PORTAL_HUB_API_URL)"
#: a notice that reached the hub is posted again after this many seconds (a restarted hub forgot it)
RETELL_SECONDS = 300.0


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"


def _number(value: Decimal | None) -> float | None:
    return None if value is None else round(float(value), 2)


@dataclass(frozen=True)
class PendingStop:
    """A warned server as /api/pods and the Pods page show it."""

    pod_uid: str
    pod_name: str
    username: str
    server_name: str
    warned_at: datetime
    stop_at: datetime
    stopped_at: datetime | None
    user_told: bool
    notice: str

    @classmethod
    def of(cls, row: GpuIdleWarning) -> "PendingStop":
        return cls(row.pod_uid, row.pod_name, row.username, row.server_name, row.warned_at, row.stop_at,
                   row.stopped_at, row.user_told, row.notice)


class GpuIdleStopper:
    """The policy's rounds (see the module docstring); ``pending`` (by pod uid) and ``status`` are
    what the API and the pages show."""

    def __init__(self, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], cluster,
                 gpu: GpuUsage, hub: HubClient | None, clock: Callable[[], datetime] = _utcnow) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.cluster = cluster
        self.gpu = gpu
        self.hub = hub
        self.clock = clock
        self.pending: dict[str, PendingStop] = {}
        self._told_at: dict[str, float] = {}  # pod uid -> monotonic time of the last notice the hub took
        self._lock = asyncio.Lock()
        self.status: dict = {"enabled": True, "state": "starting", "detail": "", "last_round_at": None,
                             "warned": 0, "stopped": 0, "cleared": 0, "consecutive_errors": 0}

    # -- state of the inputs, logged once per change ---------------------------------------------
    def _hold(self, reason: str, now: datetime) -> dict:
        if self.status["state"] != "paused" or self.status["detail"] != reason:
            log.warning("GPU idle stop policy not acting: %s", reason)
        self.status.update(state="paused", detail=reason, last_round_at=now)
        return dict(self.status)

    def _acting(self, now: datetime) -> None:
        if self.status["state"] == "paused":
            log.warning("GPU idle stop policy acting again (was: %s)", self.status["detail"])
        elif self.status["state"] == "starting":
            log.info("GPU idle stop policy on: servers flagged GPU idle are stopped %s after their user is told",
                     _duration(self.settings.gpu_idle_stop_grace))
        self.status.update(state="acting", detail="", last_round_at=now)

    # -- a round ---------------------------------------------------------------------------------
    async def run_once(self) -> dict:
        """One round. Never raises for Prometheus, cluster, hub or database failures."""
        async with self._lock:
            now = self.clock()
            reading = await self.gpu.current()
            if reading.state != "ok":
                return self._hold(f"Prometheus {reading.state}: {reading.detail}", now)
            settings = self.settings
            try:
                pods = await asyncio.wait_for(self.cluster.list_singleuser_pods(), settings.kube_timeout)
            except (ClusterError, asyncio.TimeoutError, OSError) as exc:
                return self._hold(f"cluster unavailable: {type(exc).__name__}: {exc}"[:500], now)
            try:
                await self._round(now, reading.usage, pods)
            except (SQLAlchemyError, OSError) as exc:
                return self._hold(f"database unavailable: {type(exc).__name__}: {exc}"[:500], now)
            self._acting(now)
            return dict(self.status)

    async def _round(self, now: datetime, usage: dict[str, dict[str, Decimal]], pods: list[dict]) -> None:
        settings = self.settings
        live = {o.pod_uid: o for o in pods_to_observations(pods, {}, settings.hub_namespace)}
        async with self.sessionmaker() as session:
            warnings = {w.pod_uid: w for w in (await session.execute(select(GpuIdleWarning).where(
                GpuIdleWarning.namespace == settings.hub_namespace))).scalars().all()}
            for uid, gone in warnings.items():
                if uid not in live:  # the server is gone (stopped by the policy, its user or the hub)
                    if gone.stopped_at is None:
                        await self._clear(session, gone, "the server is gone", now)
                    else:
                        await session.execute(delete(GpuIdleWarning).where(GpuIdleWarning.id == gone.id))
                    await session.commit()
            for uid, pod in sorted(live.items(), key=lambda item: item[1].pod_name):
                if pod.deleting:
                    continue  # already stopping: its warning goes with the pod
                values = usage.get(pod.pod_name) or {}
                idle = values.get("gpu_idle")
                row = warnings.get(uid)
                if row is None:
                    if idle == 1:
                        await self._warn(session, pod, values, now)
                        await session.commit()
                    continue
                if idle == 0 and row.stopped_at is None:
                    await self._clear(session, row, "its GPUs are busy again (busiest "
                                      f"{_number(values.get('gpu_peak'))} % within "
                                      f"{_duration(settings.gpu_idle_after)})", now)
                elif idle == 1 and now >= row.stop_at:
                    await self._stop(session, pod, row, pods, now)
                elif idle == 1 and row.stopped_at is None:
                    await self._retell(session, row, now)
                await session.commit()
            self.pending = {w.pod_uid: PendingStop.of(w) for w in (await session.execute(select(GpuIdleWarning).where(
                GpuIdleWarning.namespace == settings.hub_namespace))).scalars().all()}
        for uid in set(self._told_at) - set(self.pending):
            del self._told_at[uid]

    # -- the steps -------------------------------------------------------------------------------
    def _figures(self, values: dict[str, Decimal], pod: PodObservation) -> dict:
        return {"gpu_peak_percent": _number(values.get("gpu_peak")),
                "gpu_utilization_percent": _number(values.get("gpu_util")),
                "reported_seconds": _number(values.get("gpu_seen")),
                "threshold_percent": self.settings.gpu_idle_threshold,
                "idle_after_seconds": self.settings.gpu_idle_after, "gpus": pod.gpu_request}

    def _notice_text(self, row: GpuIdleWarning) -> str:
        settings = self.settings
        server = f"Your server {row.server_name!r}" if row.server_name else "Your server"
        at = row.stop_at.astimezone(settings.zone).strftime("%Y-%m-%d %H:%M %Z")
        return (f"{server} has held its GPUs idle (at or below {settings.gpu_idle_threshold:g} % for more than "
                f"{_duration(settings.gpu_idle_after)}). It will be stopped at {at} unless its GPUs are used "
                f"again before then: save your work. GPUs are shared; start a new server when you need one.")

    async def _tell(self, row: GpuIdleWarning) -> tuple[bool, str]:
        if self.hub is None:
            return False, NO_HUB
        try:
            await self.hub.post_notice(row.username, row.server_name, self._notice_text(row))
        except NoNoticeEndpoint:
            return False, NO_ENDPOINT
        except HubError as exc:
            return False, f"user not told: the hub refused the notice ({exc})"[:500]
        self._told_at[row.pod_uid] = time.monotonic()
        return True, TOLD

    async def _untell(self, row: GpuIdleWarning) -> None:
        self._told_at.pop(row.pod_uid, None)
        if self.hub is None or row.notice == NO_ENDPOINT:
            return
        try:
            await self.hub.delete_notice(row.username, row.server_name)
        except HubError as exc:  # the notice stays on the hub page until the hub restarts
            log.warning("could not remove the GPU idle notice of %s on the hub: %s", row.username, exc)

    def _audit(self, session: AsyncSession, row: GpuIdleWarning, result: str, detail: dict, now: datetime) -> None:
        session.add(AuditLog(at=now, actor=ACTOR, action=WARNING_ACTION, target=f"{row.namespace}/{row.pod_name}",
                             result=result, detail={"user": row.username, "server_name": row.server_name, **detail}))

    async def _warn(self, session: AsyncSession, pod: PodObservation, values: dict[str, Decimal],
                    now: datetime) -> None:
        row = GpuIdleWarning(pod_uid=pod.pod_uid, namespace=pod.namespace, pod_name=pod.pod_name,
                             username=pod.username, server_name=pod.server_name, warned_at=now,
                             stop_at=now + timedelta(seconds=self.settings.gpu_idle_stop_grace), stopped_at=None,
                             user_told=False, notice="", figures=self._figures(values, pod))
        row.user_told, row.notice = await self._tell(row)
        session.add(row)
        self._audit(session, row, "warned", {"stop_at": row.stop_at.isoformat(),
                                             "grace_seconds": self.settings.gpu_idle_stop_grace,
                                             "notice": row.notice, "figures": row.figures}, now)
        self.status["warned"] += 1
        log.info("GPU idle: %s/%s (%s) warned, stops at %s unless busy again; %s", pod.namespace, pod.pod_name,
                 pod.username, row.stop_at.isoformat(), row.notice)

    async def _retell(self, session: AsyncSession, row: GpuIdleWarning, now: datetime) -> None:
        """Post the notice again when it did not reach the hub for a passing reason, or now and then
        (a restarted hub forgot it); never to a hub without the endpoint."""
        if row.notice in (NO_ENDPOINT, NO_HUB):
            return
        told_at = self._told_at.get(row.pod_uid)
        if row.user_told and told_at is not None and time.monotonic() - told_at < RETELL_SECONDS:
            return
        told, notice = await self._tell(row)
        if told or not row.user_told:  # a user told once stays told even if a repeat fails
            row.user_told, row.notice = told, notice

    async def _clear(self, session: AsyncSession, row: GpuIdleWarning, reason: str, now: datetime) -> None:
        await self._untell(row)
        await session.execute(delete(GpuIdleWarning).where(GpuIdleWarning.id == row.id))
        self._audit(session, row, "cleared", {"reason": reason, "warned_at": row.warned_at.isoformat()}, now)
        self.status["cleared"] += 1
        log.info("GPU idle: warning of %s/%s (%s) cleared: %s", row.namespace, row.pod_name, row.username, reason)

    async def _stop(self, session: AsyncSession, pod: PodObservation, row: GpuIdleWarning, pods: list[dict],
                    now: datetime) -> None:
        settings = self.settings
        since = max(1.0, (now - row.warned_at).total_seconds())
        try:
            peaks = await self.gpu.peak_since(since)
        except (PrometheusError, httpx.HTTPError) as exc:
            log.warning("GPU idle: %s/%s not stopped this round: Prometheus did not confirm (%s: %s)",
                        pod.namespace, pod.pod_name, type(exc).__name__, exc)
            return
        peak = peaks.get(pod.pod_name)
        if peak is None:  # no GPU samples since the warning: no evidence, no stop
            log.warning("GPU idle: %s/%s not stopped this round: no GPU samples since the warning",
                        pod.namespace, pod.pod_name)
            return
        if peak > Decimal(str(settings.gpu_idle_threshold)):
            await self._clear(session, row, f"its GPUs were busy since the warning (busiest {_number(peak)} %)", now)
            return
        details = {pod.pod_name: {"policy": POLICY, "user": row.username, "warned_at": row.warned_at.isoformat(),
                                  "grace_seconds": settings.gpu_idle_stop_grace, "notice": row.notice,
                                  "figures": {**(row.figures or {}), "peak_since_warning_percent": _number(peak)}}}
        (result,) = await stop_servers(settings, self.cluster, self.hub, session, pods, [pod.pod_name], ACTOR,
                                       details)
        if result.result in ("stopping", "deleted"):
            row.stopped_at = now
            self.status["stopped"] += 1
            await self._untell(row)
        # stopped: the row stays until the pod is gone; failed: tried again after another grace period
        row.stop_at = now + timedelta(seconds=settings.gpu_idle_stop_grace)
        log.info("GPU idle: %s/%s (%s) stop -> %s (%s)", pod.namespace, pod.pod_name, row.username, result.result,
                 result.detail)

    # -- the service -----------------------------------------------------------------------------
    async def load(self) -> None:
        """The warnings kept in the database (what /api/pods shows before the first round)."""
        try:
            async with self.sessionmaker() as session:
                rows = (await session.execute(select(GpuIdleWarning).where(
                    GpuIdleWarning.namespace == self.settings.hub_namespace))).scalars().all()
            self.pending = {row.pod_uid: PendingStop.of(row) for row in rows}
        except (SQLAlchemyError, OSError) as exc:
            log.warning("GPU idle stop policy: warnings not loaded yet, database unavailable: %s", exc)

    async def run_forever(self) -> None:
        await self.load()
        while True:
            try:
                await self.run_once()
                self.status["consecutive_errors"] = 0
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not kill the service: log and go on at the next round
                log.exception("unexpected error in the GPU idle stop policy")
                self.status["consecutive_errors"] += 1
            interval = self.settings.gpu_idle_check_interval
            await asyncio.sleep(interval * (0.95 + random.random() * 0.1))

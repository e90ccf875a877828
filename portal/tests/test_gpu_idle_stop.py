"""The GPU idle stop policy (issue 14, item 5; labhub_portal/idlestop): warn, tell the user on their
hub page, stop after the grace period through the manual stop's own code, audited as the policy.

Real: Prometheus (Debian's, tests/prom.py) scraping SYNTHETIC DCGM exporter metrics, the Kubernetes
control plane (the pods, the pod-delete fallback), PostgreSQL with real commits (``clean_db``: the
warnings must survive a restart of the portal). The hub is the suite's FAKE hub (tests/fakes.py:
server DELETE and the notice endpoint of files/hub labhub_hub/notices.py, whose real-hub behaviour
files/hub/tests/test_notices.py and tests/integration/test_hub_oauth_real.py test). The rounds are
driven with ``run_once`` (the lifespan's background loop is off in these tests, as for the recorder).
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from fakes import FakeHub
from kube import H100, singleuser_pod
from labhub_portal.api.common import local_iso
from labhub_portal.config import Settings
from labhub_portal.db.models import AuditLog, GpuIdleWarning
from labhub_portal.idlestop.service import NO_ENDPOINT, TOLD
from prom import MIG, dcgm_line
from servers import free_port
from labhub_portal.app import create_app
from testlib import AUTH, async_wait_for, make_settings, running_app

GPU = {"gpus": 1, "gpu_product": H100}
HEAD = ["# TYPE DCGM_FI_DEV_GPU_UTIL gauge", "# TYPE DCGM_FI_PROF_GR_ENGINE_ACTIVE gauge"]


def metrics(ns: str, util: dict[str, float], mig: dict[str, float] | None = None) -> str:
    lines = list(HEAD)
    for gpu, (user, value) in enumerate(sorted(util.items())):
        lines.append(dcgm_line("DCGM_FI_DEV_GPU_UTIL", gpu, value, "gpu-h100-0", ns, f"jupyter-{user}"))
    for gpu, (user, ratio) in enumerate(sorted((mig or {}).items()), start=len(util)):
        lines.append(dcgm_line("DCGM_FI_PROF_GR_ENGINE_ACTIVE", gpu, ratio, "gpu-h100-0", ns, f"jupyter-{user}",
                               mig=MIG))
    return "\n".join(lines) + "\n"


def policy_settings(settings_factory, prometheus_url: str, hub, grace: float, **more):
    return settings_factory(prometheus_url=prometheus_url, usage_metrics_ttl=0.01, gpu_idle_after=2,
                            gpu_idle_threshold=5, gpu_idle_stop=True, gpu_idle_stop_grace=grace,
                            hub_api_url=hub.api_url, hub_api_token=FakeHub.API_TOKEN, **more)


async def wait_judged(app, want: dict[str, int], timeout: float = 30) -> dict:
    """Wait until the GPU reading flags each pod as wanted (1 idle, 0 busy)."""
    deadline = time.monotonic() + timeout
    while True:
        reading = await app.state.gpu_usage.current()
        got = {pod: int(reading.usage.get(pod, {}).get("gpu_idle", -1)) for pod in want}
        if got == want or time.monotonic() > deadline:
            assert got == want, (reading.state, reading.detail, reading.usage)
            return reading.usage
        await asyncio.sleep(0.3)


async def db_rows(url: str, model, *where):
    engine = create_async_engine(url)
    try:
        async with async_sessionmaker(engine)() as session:
            return list((await session.execute(select(model).where(*where).order_by(model.id))).scalars())
    finally:
        await engine.dispose()


async def pods_api(client) -> tuple[dict, dict]:
    response = await client.get("/api/pods", headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    return body["gpu_idle_policy"], {p["pod_name"]: p for p in body["pods"]}


async def test_idle_servers_are_warned_told_and_stopped_after_the_grace_period(
        kube, exporter, prometheus, hub, settings_factory, clean_db):
    kube.start(*(singleuser_pod(user, **GPU) for user in ("alice", "bob", "carol", "dave")))
    ns = kube.name
    exporter.text = metrics(ns, {"alice": 0, "bob": 80, "dave": 0}, mig={"carol": 0.01})  # carol: a MIG instance
    prometheus.wait_for(f'DCGM_FI_PROF_GR_ENGINE_ACTIVE{{namespace="{ns}"}}')
    grace = 7.0
    settings = policy_settings(settings_factory, prometheus.url, hub, grace)
    url = settings.database_url
    async with running_app(settings) as (app, client):
        stopper = app.state.idle_stopper
        assert stopper is not None
        policy, _ = await pods_api(client)
        assert policy["enabled"] is True and policy["grace_seconds"] == grace and policy["state"] == "starting"
        await wait_judged(app, {"jupyter-alice": 1, "jupyter-bob": 0, "jupyter-carol": 1, "jupyter-dave": 1})

        # round 1: the three idle servers are warned and their users told; bob (busy) is not
        status = await stopper.run_once()
        assert status["state"] == "acting" and status["warned"] == 3, status
        warnings = {w.username: w for w in await db_rows(url, GpuIdleWarning)}
        assert sorted(warnings) == ["alice", "carol", "dave"]
        alice = warnings["alice"]
        assert alice.pod_name == "jupyter-alice" and alice.namespace == ns and alice.stopped_at is None
        assert (alice.stop_at - alice.warned_at).total_seconds() == pytest.approx(grace)
        assert alice.user_told and alice.notice == TOLD
        assert alice.figures["gpu_peak_percent"] == 0.0 and alice.figures["threshold_percent"] == 5
        assert alice.figures["idle_after_seconds"] == 2 and alice.figures["gpus"] == 1
        assert warnings["carol"].figures["gpu_peak_percent"] == pytest.approx(1.0)  # the MIG instance: 0.01 x 100
        # told on the hub page: the stop time in the portal's zone
        stop_local = alice.stop_at.astimezone(settings.zone).strftime("%Y-%m-%d %H:%M")
        assert set(hub.notices) == {"alice", "carol", "dave"}
        assert f"It will be stopped at {stop_local}" in hub.notices["alice"][""]
        assert "at or below 5 %" in hub.notices["alice"][""]
        warned = await db_rows(url, AuditLog, AuditLog.action == "gpu_idle_warning")
        assert [(a.actor, a.target, a.result) for a in warned] == [
            ("policy:gpu-idle", f"{ns}/jupyter-{user}", "warned") for user in ("alice", "carol", "dave")]
        assert warned[0].detail["notice"] == TOLD and warned[0].detail["figures"]["gpu_peak_percent"] == 0.0

        # /api/pods and the Pods page show the pending stop
        policy, pods = await pods_api(client)
        assert policy["state"] == "acting"
        assert pods["jupyter-alice"]["gpu_idle_stop"] == {
            "state": "pending", "warned_at": local_iso(alice.warned_at, settings),
            "stop_at": local_iso(alice.stop_at, settings), "stopped_at": None, "user_told": True, "notice": TOLD}
        assert pods["jupyter-bob"]["gpu_idle_stop"] is None
        page = (await client.get("/pods", headers={**AUTH, "Accept": "text/html"})).text
        assert f"will stop at {stop_local} unless its GPUs are used" in page
        assert "GPU idle stop policy on" in page and "is stopped 0m 7s after its user is told" in page

        # a second round at once changes nothing: no second warning, no stop
        await stopper.run_once()
        assert len(await db_rows(url, AuditLog, AuditLog.action == "gpu_idle_warning")) == 3
        assert hub.deletes == []

        # dave's GPU is used again within the grace period: his warning is cleared, his notice removed
        exporter.text = metrics(ns, {"alice": 0, "bob": 80, "dave": 90}, mig={"carol": 0.01})
        await wait_judged(app, {"jupyter-dave": 0})
        await stopper.run_once()
        assert sorted(w.username for w in await db_rows(url, GpuIdleWarning)) == ["alice", "carol"]
        assert "dave" not in hub.notices and ("DELETE", "dave", "") in hub.notice_calls, hub.notice_calls
        (cleared,) = await db_rows(url, AuditLog, AuditLog.result == "cleared")
        assert cleared.target == f"{ns}/jupyter-dave" and "busy again" in cleared.detail["reason"]
    assert hub.deletes == []

    # the portal restarts before the grace period is over: nothing is stopped early
    async with running_app(settings) as (app, client):
        stopper = app.state.idle_stopper
        await wait_judged(app, {"jupyter-alice": 1, "jupyter-carol": 1})
        assert datetime.now(timezone.utc) < alice.stop_at, "the test took longer than the grace period"
        await stopper.run_once()
        assert hub.deletes == [] and kube.pod("jupyter-carol") is not None
        _, pods = await pods_api(client)
        assert pods["jupyter-alice"]["gpu_idle_stop"]["stop_at"] == local_iso(alice.stop_at, settings)  # kept

        # the grace period is over, still idle: stopped like a manual stop (carol's hub stop fails:
        # the pod is deleted, the manual stop's fallback)
        await asyncio.sleep(max(0.0, (alice.stop_at - datetime.now(timezone.utc)).total_seconds()) + 0.2)
        hub.delete_status_for["carol"] = 500
        status = await stopper.run_once()
        assert status["stopped"] == 2, status
        assert [d["path"] for d in hub.deletes] == ["/hub/api/users/alice/server", "/hub/api/users/carol/server"]
        assert all(d["authorization"] == f"token {FakeHub.API_TOKEN}" for d in hub.deletes)
        carol_pod = kube.pod("jupyter-carol")
        assert carol_pod is None or carol_pod["metadata"].get("deletionTimestamp")  # deleted by the fallback
        assert kube.pod("jupyter-alice") is not None  # the hub stops it (KubeSpawner deletes the pod)
        assert "alice" not in hub.notices and "carol" not in hub.notices  # notices removed on stop
        stops = {a.target: a for a in await db_rows(url, AuditLog, AuditLog.action == "stop_server")}
        policy_stop = stops[f"{ns}/jupyter-alice"]
        assert policy_stop.actor == "policy:gpu-idle" and policy_stop.result == "stopping"
        assert policy_stop.detail["method"] == "hub" and policy_stop.detail["policy"] == "gpu-idle"
        assert policy_stop.detail["figures"]["peak_since_warning_percent"] == 0.0
        assert policy_stop.detail["warned_at"] == alice.warned_at.isoformat()
        fallback = stops[f"{ns}/jupyter-carol"]
        assert (fallback.result, fallback.detail["method"]) == ("deleted", "pod-delete")
        assert "hub API failed (HTTP 500" in fallback.detail["detail"]
        assert FakeHub.API_TOKEN not in str([a.detail for a in stops.values()])
        _, pods = await pods_api(client)
        assert pods["jupyter-alice"]["gpu_idle_stop"]["state"] == "stopped"

        # a manual stop, for comparison: same action, the person or script as actor
        manual = await client.post("/api/pods/stop", json={"pods": ["jupyter-bob"]}, headers=AUTH)
        assert manual.status_code == 200 and manual.json()["stopped"] == 1
        audit = await client.get("/api/audit", params={"action": "stop_server"}, headers=AUTH)
        assert audit.status_code == 200
        assert [(e["actor"], e["target"]) for e in audit.json()["items"]] == [
            ("token:token", f"{ns}/jupyter-bob"), ("policy:gpu-idle", f"{ns}/jupyter-carol"),
            ("policy:gpu-idle", f"{ns}/jupyter-alice")]
        only_policy = (await client.get("/api/audit", params={"actor": "policy", "target": "jupyter-alice"},
                                        headers=AUTH)).json()
        assert [(e["action"], e["result"]) for e in only_policy["items"]] == [("stop_server", "stopping"),
                                                                             ("gpu_idle_warning", "warned")]
        page = (await client.get("/audit", params={"action": "stop_server"},
                                 headers={**AUTH, "Accept": "text/html"})).text
        assert page.count('data-action="stop_server"') == 3 and page.count('data-actor="policy:gpu-idle"') == 2
        assert "figures.peak_since_warning_percent</strong>: 0.0" in page

        # the next round: alice (stopping) is not stopped twice; carol's warning goes with her pod
        kube.wait_count(3)
        await stopper.run_once()
        assert [d["path"] for d in hub.deletes][2:] == ["/hub/api/users/bob/server"]  # only the manual stop
        assert [w.username for w in await db_rows(url, GpuIdleWarning)] == ["alice"]


async def test_a_hub_without_the_notice_endpoint_does_not_stop_the_policy(
        kube, exporter, prometheus, hub, settings_factory, clean_db):
    """An older hub (no labhub notice endpoint: JupyterHub's own 404): the warning says the user was
    not told, and the server is stopped all the same after the grace period."""
    kube.start(singleuser_pod("erin", **GPU))
    exporter.text = metrics(kube.name, {}, mig={"erin": 0.0})
    prometheus.wait_for(f'DCGM_FI_PROF_GR_ENGINE_ACTIVE{{namespace="{kube.name}"}}')
    hub.notice_endpoint = False
    settings = policy_settings(settings_factory, prometheus.url, hub, 2.0)
    async with running_app(settings) as (app, client):
        await wait_judged(app, {"jupyter-erin": 1})
        await app.state.idle_stopper.run_once()
        (warning,) = await db_rows(settings.database_url, GpuIdleWarning)
        assert not warning.user_told and warning.notice == NO_ENDPOINT
        assert warning.notice == "user not told: the hub has no notice endpoint"
        _, pods = await pods_api(client)
        assert pods["jupyter-erin"]["gpu_idle_stop"]["notice"] == NO_ENDPOINT
        await asyncio.sleep(max(0.0, (warning.stop_at - datetime.now(timezone.utc)).total_seconds()) + 0.2)
        await app.state.idle_stopper.run_once()
    assert [d["path"] for d in hub.deletes] == ["/hub/api/users/erin/server"]
    (stop,) = await db_rows(settings.database_url, AuditLog, AuditLog.action == "stop_server")
    assert stop.actor == "policy:gpu-idle" and stop.result == "stopping" and stop.detail["notice"] == NO_ENDPOINT
    assert hub.notices == {}  # nothing was ever shown


async def test_no_stop_while_prometheus_is_unavailable_said_once(kube, hub, settings_factory, clean_db, caplog):
    """A warning whose grace period is over (left by an earlier run) and Prometheus not answering:
    nothing is stopped, nothing cleared; the log says why once, not every round."""
    kube.start(singleuser_pod("frank", **GPU))
    pod = kube.pod("jupyter-frank")
    settings = policy_settings(settings_factory, f"http://127.0.0.1:{free_port()}", hub, 60.0)
    engine = create_async_engine(settings.database_url)
    past = datetime.now(timezone.utc) - timedelta(hours=1)
    async with async_sessionmaker(engine)() as session:
        session.add(GpuIdleWarning(pod_uid=pod["metadata"]["uid"], namespace=kube.name, pod_name="jupyter-frank",
                                   username="frank", server_name="", warned_at=past, stop_at=past + timedelta(minutes=1),
                                   stopped_at=None, user_told=True, notice=TOLD, figures={}))
        await session.commit()
    await engine.dispose()
    caplog.set_level(logging.WARNING, logger="labhub_portal.idlestop")
    async with running_app(settings) as (app, client):
        for _ in range(3):
            status = await app.state.idle_stopper.run_once()
        assert status["state"] == "paused" and status["detail"].startswith("Prometheus unavailable: "), status
        policy, pods = await pods_api(client)
        assert policy["state"] == "paused" and "ConnectError" in policy["detail"]
        page = (await client.get("/pods", headers={**AUTH, "Accept": "text/html"})).text
        assert "Not acting now: Prometheus unavailable" in page
    assert hub.deletes == [] and kube.pod("jupyter-frank") is not None
    assert len(await db_rows(settings.database_url, GpuIdleWarning)) == 1
    said = [r.getMessage() for r in caplog.records if "not acting" in r.getMessage()]
    assert len(said) == 1 and "Prometheus unavailable" in said[0], said

    # the lifespan owns the policy's task: started with the services, rounds every check interval,
    # cancelled on shutdown; still nothing stopped and still said once per process
    caplog.clear()
    app = create_app(settings.model_copy(update={"gpu_idle_check_interval": 0.1}), start_services=True)
    async with app.router.lifespan_context(app):
        stopper = app.state.idle_stopper
        assert "gpu-idle-stop" in {task.get_name() for task in asyncio.all_tasks()}
        assert await async_wait_for(lambda: _rounds_done(stopper, 3), timeout=15)
        assert stopper.status["state"] == "paused"
    assert "gpu-idle-stop" not in {task.get_name() for task in asyncio.all_tasks() if not task.done()}
    assert hub.deletes == [] and kube.pod("jupyter-frank") is not None
    said = [r.getMessage() for r in caplog.records if "not acting" in r.getMessage()]
    assert len(said) == 1, said


async def _rounds_done(stopper, count: int) -> bool:
    stopper.rounds_seen = getattr(stopper, "rounds_seen", set()) | {stopper.status["last_round_at"]}
    return len(stopper.rounds_seen - {None}) >= count


def test_policy_settings_are_validated_naming_the_field(pg_server, tmp_path):
    with pytest.raises(ValidationError) as error:
        make_settings(pg_server, gpu_idle_stop=True)
    assert [e["loc"] for e in error.value.errors()] == [("gpu_idle_stop",)]
    assert "needs PORTAL_PROMETHEUS_URL" in str(error.value)
    for field, value in (("gpu_idle_stop_grace", 0), ("gpu_idle_stop_grace", 8 * 86400),
                         ("gpu_idle_check_interval", 0), ("gpu_idle_stop", "maybe")):
        with pytest.raises(ValidationError) as error:
            make_settings(pg_server, prometheus_url="http://prometheus:9090", **{field: value})
        assert [e["loc"] for e in error.value.errors()] == [(field,)], (field, value)
    on = make_settings(pg_server, prometheus_url="http://prometheus:9090", gpu_idle_stop="true")
    assert on.gpu_idle_stop is True and on.gpu_idle_stop_grace == 900 and on.gpu_idle_check_interval == 60
    assert Settings.model_fields["gpu_idle_stop"].default is False  # off by default

    # the service refuses to start, naming the setting (exit 2, no traceback, no secret)
    env_file = tmp_path / "portal.env"
    env_file.write_text(f"PORTAL_DATABASE_URL={pg_server.url()}\nPORTAL_TOKEN=idle-stop-token-0123456789\n"
                        "PORTAL_GPU_IDLE_STOP=true\n")
    result = subprocess.run([sys.executable, "-m", "labhub_portal.cli", "migrate", "--check"],
                            env={"PORTAL_ENV_FILE": str(env_file), "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result
    assert "gpu_idle_stop" in result.stderr and "needs PORTAL_PROMETHEUS_URL" in result.stderr
    assert "idle-stop-token" not in result.stderr and "Traceback" not in result.stderr

"""Recorder against real PostgreSQL and the fake Kubernetes API (test fake)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from testlib import AUTH, running_app
from fakes import make_node, make_pod
from labhub_portal.billing import billable_seconds
from labhub_portal.db.models import ContainerSession

UTC = dt.timezone.utc


class Clock:
    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


async def _sessions(maker) -> dict[str, ContainerSession]:
    async with maker() as s:
        return {cs.pod_name: cs for cs in (await s.execute(select(ContainerSession))).scalars()}


async def test_sessions_open_and_close_across_cycles(kube, settings_factory, tx_sessionmaker):
    t0 = dt.datetime.now(UTC).replace(microsecond=0)
    kube.nodes = [make_node("gpu-1", "NVIDIA-A100-SXM4-80GB"), make_node("cpu-1")]
    kube.pods = [
        make_pod("jupyter-alice", "alice", node="gpu-1", gpu=2, cpu="4", memory="16Gi", started=t0 - dt.timedelta(seconds=20)),
        make_pod("jupyter-bob--gpu", "bob", server_name="gpu", node="cpu-1", cpu="500m", memory="1Gi",
                 started=t0 - dt.timedelta(seconds=10), profile="cpu-small"),
        make_pod("hub-7d9f", "nobody", component="hub"),                      # not a user pod
        make_pod("jupyter-eve", "eve", namespace="other"),                    # other namespace
        make_pod("jupyter-pending", "carol", phase="Pending", started=None),  # startTime set by maker; see below
    ]
    kube.pods[-1]["status"].pop("startTime")  # a pod not started yet has no startTime
    clock = Clock(t0)
    async with running_app(settings_factory(), sessionmaker=tx_sessionmaker) as (app, client):
        app.state.recorder.clock = clock
        status = await app.state.recorder.run_once()
        assert status["state"] == "ok" and status["observed_pods"] == 2 and status["open_sessions"] == 2
        rows = await _sessions(tx_sessionmaker)
        assert set(rows) == {"jupyter-alice", "jupyter-bob--gpu"}
        alice, bob = rows["jupyter-alice"], rows["jupyter-bob--gpu"]
        assert alice.gpu_request == 2 and alice.gpu_model == "NVIDIA-A100-SXM4-80GB"
        assert alice.cpu_request == 4.0 and alice.memory_request == 16 * 2**30
        assert alice.started_at == t0 - dt.timedelta(seconds=20) and alice.ended_at is None
        assert bob.server_name == "gpu" and bob.profile == "cpu-small" and bob.cpu_request == 0.5
        assert bob.gpu_model is None and bob.gpu_request == 0
        first_seq = alice.change_seq

        # next cycle: bob's pod is gone -> ended at its last observation
        clock.advance(30)
        kube.pods = [p for p in kube.pods if p["metadata"]["name"] != "jupyter-bob--gpu"]
        status = await app.state.recorder.run_once()
        assert status["closed_sessions"] == 1 and status["open_sessions"] == 1
        rows = await _sessions(tx_sessionmaker)
        assert rows["jupyter-bob--gpu"].ended_at == t0 and rows["jupyter-bob--gpu"].end_reason == "pod_gone"
        assert rows["jupyter-alice"].last_seen_at == t0 + dt.timedelta(seconds=30)
        assert rows["jupyter-alice"].change_seq > first_seq
        assert rows["jupyter-alice"].unobserved_seconds == 0

        # the API shows the zone offset (+08:00) and the open session
        resp = await client.get("/api/sessions", params={"state": "running"}, headers=AUTH)
        assert resp.status_code == 200
        items = resp.json()["items"]
        assert [i["pod_name"] for i in items] == ["jupyter-alice"]
        assert items[0]["started_at"].endswith("+08:00")
        local = dt.datetime.fromisoformat(items[0]["started_at"])
        assert local == t0 - dt.timedelta(seconds=20)


async def test_one_statement_for_many_pods(kube, settings_factory, pg_server, clean_db):
    """2,000 pods are written with a constant number of statements (not one per pod)."""
    from sqlalchemy import event

    kube.pods = [make_pod(f"jupyter-u{i}", f"u{i}") for i in range(2000)]
    async with running_app(settings_factory()) as (app, _client):
        statements: list[str] = []
        event.listen(app.state.engine.sync_engine, "before_cursor_execute",
                     lambda *a: statements.append(a[2]))
        status = await app.state.recorder.run_once()
        assert status["state"] == "ok" and status["open_sessions"] == 2000
        first = len(statements)
        kube.pods = kube.pods[:1500]
        statements.clear()
        status = await app.state.recorder.run_once()
        assert status["closed_sessions"] == 500
        assert first <= 5 and len(statements) <= 5, statements


async def test_api_errors_and_timeouts_back_off_and_recover(kube, settings_factory, tx_sessionmaker):
    t0 = dt.datetime.now(UTC).replace(microsecond=0)
    kube.pods = [make_pod("jupyter-alice", "alice", started=t0)]
    clock = Clock(t0)
    async with running_app(settings_factory(kube_timeout=0.5), sessionmaker=tx_sessionmaker) as (app, client):
        recorder = app.state.recorder
        recorder.clock = clock
        assert (await recorder.run_once())["state"] == "ok"

        kube.mode = "error"
        clock.advance(30)
        status = await recorder.run_once()
        assert status["state"] == "error" and "HTTP 500" in status["last_error"]
        assert status["consecutive_errors"] == 1
        first_delay = recorder.next_delay()

        kube.mode = "hang"
        clock.advance(30)
        status = await recorder.run_once()
        assert status["state"] == "error" and status["consecutive_errors"] == 2
        assert "Timeout" in status["last_error"] or "timeout" in status["last_error"].lower()
        assert recorder.next_delay() > first_delay  # exponential back-off

        # the session is still open (failed listings never close sessions within the gap window)
        rows = await _sessions(tx_sessionmaker)
        assert rows["jupyter-alice"].ended_at is None

        # status is visible in the API and in /metrics
        resp = await client.get("/api/status", headers=AUTH)
        assert resp.json()["recorder"]["state"] == "error"
        assert resp.json()["recorder"]["consecutive_errors"] == 2
        metrics = (await client.get("/metrics")).text
        assert "portal_recorder_last_cycle_ok 0.0" in metrics
        assert 'portal_recorder_cycles_total{result="error"}' in metrics
        readyz = await client.get("/readyz")
        assert readyz.status_code == 503 and readyz.json()["checks"]["database"] == "ok"

        kube.mode = "ok"
        clock.advance(30)
        status = await recorder.run_once()
        assert status["state"] == "ok" and status["consecutive_errors"] == 0
        assert recorder.next_delay() == 30.0
        rows = await _sessions(tx_sessionmaker)
        assert rows["jupyter-alice"].unobserved_seconds == 0  # 60 s without observation < W = 90 s: billed


async def test_gap_rule_outage_and_restart(kube, settings_factory, tx_sessionmaker):
    """Unobserved stretches longer than W = 3 x 30 s are never billed (README: gap rule)."""
    t0 = dt.datetime.now(UTC).replace(microsecond=0) - dt.timedelta(hours=3)
    kube.pods = [make_pod("jupyter-alice", "alice", started=t0, uid="uid-alice"),
                 make_pod("jupyter-bob", "bob", started=t0, uid="uid-bob")]
    clock = Clock(t0 + dt.timedelta(seconds=10))
    settings = settings_factory()
    async with running_app(settings, sessionmaker=tx_sessionmaker) as (app, _):
        app.state.recorder.clock = clock
        await app.state.recorder.run_once()
        # the cluster API fails for 5 minutes: sessions fall out of the window and end at last observation
        kube.mode = "error"
        for _ in range(10):
            clock.advance(30)
            await app.state.recorder.run_once()
        rows = await _sessions(tx_sessionmaker)
        assert rows["jupyter-alice"].end_reason == "unobserved"
        assert rows["jupyter-alice"].ended_at == t0 + dt.timedelta(seconds=10)
    # the portal is down for an hour; alice's pod is still there, bob's is gone
    kube.mode = "ok"
    kube.pods = kube.pods[:1]
    clock.advance(3600)
    async with running_app(settings, sessionmaker=tx_sessionmaker) as (app, _):
        app.state.recorder.clock = clock
        await app.state.recorder.run_once()
        rows = await _sessions(tx_sessionmaker)
        alice, bob = rows["jupyter-alice"], rows["jupyter-bob"]
        gap = (clock.now - (t0 + dt.timedelta(seconds=10))).total_seconds()
        assert alice.ended_at is None and alice.unobserved_seconds == pytest.approx(gap)
        assert bob.ended_at == t0 + dt.timedelta(seconds=10)  # not billed beyond the last observation
        # billed: 10 s before the first observation + nothing of the gap
        assert billable_seconds(alice, clock.now, settings.gap_seconds) == pytest.approx(10)
        assert billable_seconds(bob, clock.now, settings.gap_seconds) == pytest.approx(10)
        clock.advance(30)
        await app.state.recorder.run_once()
        alice = (await _sessions(tx_sessionmaker))["jupyter-alice"]
        assert billable_seconds(alice, clock.now, settings.gap_seconds) == pytest.approx(40)


async def test_pod_started_while_portal_was_down_is_billed_from_first_observation(kube, settings_factory,
                                                                                  tx_sessionmaker):
    now = dt.datetime.now(UTC).replace(microsecond=0)
    started = now - dt.timedelta(hours=2)
    kube.pods = [make_pod("jupyter-late", "dave", started=started)]
    settings = settings_factory()
    async with running_app(settings, sessionmaker=tx_sessionmaker) as (app, _):
        app.state.recorder.clock = lambda: now
        await app.state.recorder.run_once()
        row = (await _sessions(tx_sessionmaker))["jupyter-late"]
        assert row.started_at == started  # the pod's status.startTime is kept as a fact
        assert row.unobserved_seconds == pytest.approx(7200)
        assert billable_seconds(row, now, settings.gap_seconds) == pytest.approx(0)


async def test_postgres_restart_mid_run(kube, settings_factory, clean_db, pg_server):
    kube.pods = [make_pod("jupyter-alice", "alice")]
    async with running_app(settings_factory()) as (app, client):
        assert (await app.state.recorder.run_once())["state"] == "ok"
        pg_server.stop()
        try:
            status = await app.state.recorder.run_once()
            assert status["state"] == "error" and status["last_error"].startswith("database")
            assert (await client.get("/readyz")).status_code == 503
            assert (await client.get("/healthz")).status_code == 200
        finally:
            pg_server.start()
        kube.pods.append(make_pod("jupyter-bob", "bob"))
        status = await app.state.recorder.run_once()
        assert status["state"] == "ok" and status["open_sessions"] == 2
        assert (await client.get("/readyz")).status_code == 200


async def test_nodes_forbidden_falls_back_to_node_selector(kube, settings_factory, tx_sessionmaker):
    kube.nodes_forbidden = True
    pod = make_pod("jupyter-gpu", "gina", gpu=1)
    pod["spec"]["nodeSelector"] = {"nvidia.com/gpu.product": "Tesla-T4"}
    kube.pods = [pod]
    async with running_app(settings_factory(), sessionmaker=tx_sessionmaker) as (app, _):
        assert (await app.state.recorder.run_once())["state"] == "ok"
        assert (await _sessions(tx_sessionmaker))["jupyter-gpu"].gpu_model == "Tesla-T4"


async def test_lifespan_runs_and_stops_the_background_services(kube, settings_factory, clean_db, mysql_clean):
    """With start_services=True the recorder and the report sync run on their own and stop cleanly."""
    import asyncio

    from testlib import async_wait_for
    from labhub_portal.app import create_app

    kube.pods = [make_pod("jupyter-alice", "alice")]
    settings = settings_factory(record_interval=0.2, report_sync_interval=0.3, mysql_url=mysql_clean.url)
    app = create_app(settings, start_services=True)
    async with app.router.lifespan_context(app):
        assert await async_wait_for(lambda: _n_open(app), timeout=10)
        assert await async_wait_for(lambda: _synced(mysql_clean), timeout=10)
        cycles = app.state.recorder.status["cycles"]
        await asyncio.sleep(0.6)
        assert app.state.recorder.status["cycles"] > cycles  # keeps cycling
    tasks = [t for t in asyncio.all_tasks() if t.get_name() in ("recorder", "report-sync")]
    assert all(t.done() for t in tasks)


async def _n_open(app) -> bool:
    return (app.state.recorder.status.get("open_sessions") or 0) == 1


async def _synced(mariadb) -> bool:
    conn = mariadb.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() "
                        "AND table_name = 'pod_report'")
            if cur.fetchone()[0] == 0:
                return False
            cur.execute("SELECT COUNT(*) FROM pod_report")
            return cur.fetchone()[0] == 1
    finally:
        conn.close()


def test_serve_refuses_public_bind_without_auth(pg_server):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env.update(PORTAL_DATABASE_URL=pg_server.url(), PORTAL_ENV_FILE="/nonexistent")
    result = subprocess.run([sys.executable, "-m", "labhub_portal.cli", "serve", "--host", "0.0.0.0", "--port", "18299"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "refusing to listen on '0.0.0.0'" in result.stderr
    env["PORTAL_TOKEN"] = "changeme"
    result = subprocess.run([sys.executable, "-m", "labhub_portal.cli", "serve", "--host", "0.0.0.0"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "default or short secret" in result.stderr

"""Recorder against real PostgreSQL and the real Kubernetes control plane (kube.py): real pods,
scheduled onto KWOK nodes, read as the portal's ServiceAccount; API failures and hangs come from the
test fault injector in front of the real API server."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select

from testlib import AUTH, running_app
from kube import A100, H100, kubeconfig_with, singleuser_pod
from labhub_portal.billing import billable_seconds
from labhub_portal.cluster import parse_time
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


def _started(pod: dict) -> dt.datetime:
    """The pod's status.startTime as KWOK (the kubelet's stand-in) set it."""
    started = parse_time(pod["status"]["startTime"])
    assert started is not None
    return started


async def test_sessions_open_and_close_across_cycles(kube, settings_factory, tx_sessionmaker):
    hub_pod = singleuser_pod("nobody", component="hub")
    hub_pod["metadata"]["name"] = "hub-7d9f"
    running = kube.start(
        singleuser_pod("alice", gpus=2, gpu_product=A100, cpu_guarantee="4", cpu_limit="8", mem_guarantee="16Gi",
                       mem_limit="16Gi"),
        singleuser_pod("bob", "gpu", cpu_guarantee="500m", mem_guarantee="1Gi", profile="cpu-small"),
        hub_pod)                                                                  # not a user pod
    kube.create_pod(singleuser_pod("eve"), namespace=kube.other_namespace())      # other namespace
    kube.create_pod(singleuser_pod("carol", gpus=1, gpu_product="NVIDIA-B200"))  # unschedulable: no startTime
    t0 = dt.datetime.now(UTC).replace(microsecond=0)
    clock = Clock(t0)
    async with running_app(settings_factory(), sessionmaker=tx_sessionmaker) as (app, client):
        app.state.recorder.clock = clock
        status = await app.state.recorder.run_once()
        assert status["state"] == "ok" and status["observed_pods"] == 2 and status["open_sessions"] == 2
        rows = await _sessions(tx_sessionmaker)
        assert set(rows) == {"jupyter-alice", "jupyter-bob--gpu"}
        alice, bob = rows["jupyter-alice"], rows["jupyter-bob--gpu"]
        assert alice.pod_uid == running["jupyter-alice"]["metadata"]["uid"] and alice.namespace == kube.name
        # placed by the scheduler on the A100 node; the model from that node's GPU Feature Discovery label
        assert alice.node == "gpu-a100-0" and alice.gpu_request == 2 and alice.gpu_model == A100
        assert alice.cpu_request == 4.0 and alice.memory_request == 16 * 2**30
        assert alice.started_at == _started(running["jupyter-alice"]) and alice.ended_at is None
        assert bob.server_name == "gpu" and bob.profile == "cpu-small" and bob.cpu_request == 0.5
        assert bob.node == "cpu-0" and bob.gpu_model is None and bob.gpu_request == 0
        first_seq = alice.change_seq

        # next cycle: bob's server was stopped (pod deleted) -> ended at its last observation
        kube.stop_server("jupyter-bob--gpu")
        clock.advance(30)
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
        assert dt.datetime.fromisoformat(items[0]["started_at"]) == _started(running["jupyter-alice"])
        # the live pods as the API lists them, node and GPU model included
        live = (await client.get("/api/pods", headers=AUTH)).json()
        assert live["namespace"] == kube.name
        assert [(p["pod_name"], p["node"], p["gpu_model"]) for p in live["pods"]] == [
            ("jupyter-alice", "gpu-a100-0", A100)]


async def test_one_statement_for_many_pods(kube, settings_factory, pg_server, clean_db):
    """Many real pods are written with a constant number of statements (not one per pod)."""
    from sqlalchemy import event

    n, gone = 48, 12
    names = kube.create_pods([singleuser_pod(f"u{i}", cpu_guarantee="100m", mem_guarantee="256Mi")
                              for i in range(n)])
    kube.wait_count(n)
    async with running_app(settings_factory()) as (app, _client):
        statements: list[str] = []
        event.listen(app.state.engine.sync_engine, "before_cursor_execute",
                     lambda *a: statements.append(a[2]))
        status = await app.state.recorder.run_once()
        assert status["state"] == "ok" and status["open_sessions"] == n
        first = len(statements)
        kube.stop_servers(names[:gone])
        statements.clear()
        status = await app.state.recorder.run_once()
        assert status["closed_sessions"] == gone and status["open_sessions"] == n - gone
        # per cycle, whatever the number of pods: the change lock, the billing terms (memberships of
        # the users seen, rate periods), the upsert, closing gone and unobserved sessions, the count
        assert first <= 7 and len(statements) <= 7, statements


async def test_api_errors_and_timeouts_back_off_and_recover(kube, kube_faults, settings_factory, tx_sessionmaker):
    """500s and hangs come from the test fault injector in front of the real API server."""
    kube.start(singleuser_pod("alice"))
    t0 = dt.datetime.now(UTC).replace(microsecond=0)
    clock = Clock(t0)
    async with running_app(settings_factory(kube_timeout=1.0), sessionmaker=tx_sessionmaker) as (app, client):
        recorder = app.state.recorder
        recorder.clock = clock
        assert (await recorder.run_once())["state"] == "ok"
        # the answer was the real API server's, through the proxy
        assert ("ok", "GET", f"/api/v1/namespaces/{kube.name}/pods?labelSelector=component%3Dsingleuser-server") \
            in kube_faults.requests

        kube_faults.mode = "error"
        clock.advance(30)
        status = await recorder.run_once()
        assert status["state"] == "error" and "HTTP 500" in status["last_error"], status
        assert f"Failed to list pods of namespace '{kube.name}'" in status["last_error"]
        assert status["consecutive_errors"] == 1
        first_delay = recorder.next_delay()

        kube_faults.mode = "hang"
        clock.advance(30)
        status = await recorder.run_once()
        assert status["state"] == "error" and status["consecutive_errors"] == 2
        assert "Timeout" in status["last_error"] or "timeout" in status["last_error"].lower()
        assert recorder.next_delay() > first_delay  # exponential back-off
        recorder.status["consecutive_errors"] = 12  # ... but never longer than one interval (30 s)
        assert all(recorder.next_delay() <= 30.0 for _ in range(50))
        recorder.status["consecutive_errors"] = 2

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
        pods = await client.get("/api/pods", headers=AUTH)  # a hang is a clear 503, not a 500
        assert pods.status_code == 503 and "no answer within 1 s" in pods.json()["detail"], pods.text
        assert pods.json()["detail"].startswith("cluster unavailable: Failed to ")

        kube_faults.mode = "ok"
        clock.advance(30)
        status = await recorder.run_once()
        assert status["state"] == "ok" and status["consecutive_errors"] == 0
        assert recorder.next_delay() == 30.0
        rows = await _sessions(tx_sessionmaker)
        assert rows["jupyter-alice"].unobserved_seconds == 0  # 60 s without observation < W = 90 s: billed


async def test_gap_rule_outage_and_restart(kube, kube_faults, settings_factory, tx_sessionmaker):
    """Unobserved stretches longer than W = 3 x 30 s are never billed (README: gap rule)."""
    running = kube.start(singleuser_pod("alice"), singleuser_pod("bob"))
    started_a, started_b = _started(running["jupyter-alice"]), _started(running["jupyter-bob"])
    first = max(started_a, started_b) + dt.timedelta(seconds=10)  # the portal's first look
    clock = Clock(first)
    settings = settings_factory()
    async with running_app(settings, sessionmaker=tx_sessionmaker) as (app, _):
        app.state.recorder.clock = clock
        await app.state.recorder.run_once()
        # the cluster API fails for 5 minutes: sessions fall out of the window and end at last observation
        kube_faults.mode = "error"
        for _ in range(10):
            clock.advance(30)
            await app.state.recorder.run_once()
        rows = await _sessions(tx_sessionmaker)
        assert rows["jupyter-alice"].end_reason == "unobserved"
        assert rows["jupyter-alice"].ended_at == first
    # the portal is down for an hour; alice's pod is still there, bob's server was stopped
    kube_faults.mode = "ok"
    kube.stop_server("jupyter-bob")
    clock.advance(3600)
    async with running_app(settings, sessionmaker=tx_sessionmaker) as (app, _):
        app.state.recorder.clock = clock
        await app.state.recorder.run_once()
        rows = await _sessions(tx_sessionmaker)
        alice, bob = rows["jupyter-alice"], rows["jupyter-bob"]
        gap = (clock.now - first).total_seconds()
        assert alice.ended_at is None and alice.unobserved_seconds == pytest.approx(gap)
        assert bob.ended_at == first  # not billed beyond the last observation
        # billed: the time before the first observation + nothing of the gap
        before_a, before_b = (first - started_a).total_seconds(), (first - started_b).total_seconds()
        assert billable_seconds(alice, clock.now, settings.gap_seconds) == pytest.approx(before_a)
        assert billable_seconds(bob, clock.now, settings.gap_seconds) == pytest.approx(before_b)
        clock.advance(30)
        await app.state.recorder.run_once()
        alice = (await _sessions(tx_sessionmaker))["jupyter-alice"]
        assert billable_seconds(alice, clock.now, settings.gap_seconds) == pytest.approx(before_a + 30)


async def test_pod_started_while_portal_was_down_is_billed_from_first_observation(kube, settings_factory,
                                                                                  tx_sessionmaker):
    started = _started(kube.start(singleuser_pod("dave"))["jupyter-dave"])
    now = started + dt.timedelta(hours=2)  # the portal looks for the first time two hours later
    settings = settings_factory()
    async with running_app(settings, sessionmaker=tx_sessionmaker) as (app, _):
        app.state.recorder.clock = lambda: now
        await app.state.recorder.run_once()
        row = (await _sessions(tx_sessionmaker))["jupyter-dave"]
        assert row.started_at == started  # the pod's status.startTime is kept as a fact
        assert row.unobserved_seconds == pytest.approx(7200)
        assert billable_seconds(row, now, settings.gap_seconds) == pytest.approx(0)


async def test_postgres_restart_mid_run(kube, settings_factory, clean_db, pg_server):
    kube.start(singleuser_pod("alice"))
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
        kube.start(singleuser_pod("bob"))
        status = await app.state.recorder.run_once()
        assert status["state"] == "ok" and status["open_sessions"] == 2
        assert (await client.get("/readyz")).status_code == 200


async def test_nodes_forbidden_falls_back_to_node_selector(kube, kube_cluster, settings_factory, tx_sessionmaker):
    """The role with portal_kube_node_access: false (no node reader): listing nodes is a real 403."""
    identity = kube.own_identity()
    status, body = kube_cluster.client_for(identity).request("GET", "/api/v1/nodes")
    assert status == 403 and body["reason"] == "Forbidden", body
    running = kube.start(singleuser_pod("gina", gpus=1, gpu_product=H100))
    assert running["jupyter-gina"]["spec"]["nodeName"] == "gpu-h100-0"
    async with running_app(settings_factory(), sessionmaker=tx_sessionmaker) as (app, _):
        assert app.state.settings.kubeconfig == str(identity.kubeconfig)
        assert (await app.state.recorder.run_once())["state"] == "ok"
        assert app.state.recorder.node_labels == {}
        assert (await _sessions(tx_sessionmaker))["jupyter-gina"].gpu_model == H100


async def test_lifespan_runs_and_stops_the_background_services(kube, settings_factory, clean_db, mysql_clean):
    """With start_services=True the recorder and the report sync run on their own and stop cleanly."""
    import asyncio

    from testlib import async_wait_for
    from labhub_portal.app import create_app

    kube.start(singleuser_pod("alice"))
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


def _record_cli(pg_server, **env_values: str):
    """`labhub-portal record` as the uninstall role runs it: its own process, settings from the environment."""
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env.update(PORTAL_DATABASE_URL=pg_server.url(), PORTAL_ENV_FILE="/nonexistent",
               PORTAL_TOKEN="record-cli-token-0123456789abcdef", **env_values)
    result = subprocess.run([sys.executable, "-m", "labhub_portal.cli", "record"], env=env, capture_output=True,
                            text=True, timeout=120, check=False)
    lines = result.stdout.strip().splitlines()
    return result.returncode, (json.loads(lines[-1]) if lines else None), result.stderr


async def test_record_command_ends_the_sessions_of_pods_that_are_gone(kube, clean_db, tmp_path):
    """One cycle from the command line (roles/uninstall runs it once the user servers are stopped
    and the service is down): the session of a stopped server ends, the running one stays open."""
    import asyncio

    kube.start(singleuser_pod("alice"), singleuser_pod("bob"))
    env = {"PORTAL_KUBECONFIG": kube.kubeconfig, "PORTAL_HUB_NAMESPACE": kube.name}
    code, status, err = await asyncio.to_thread(_record_cli, clean_db, **env)
    assert code == 0, err
    assert status == {"state": "ok", "observed_pods": 2, "closed_sessions": 0, "open_sessions": 2, "last_error": None}

    kube.stop_server("jupyter-alice")
    code, status, err = await asyncio.to_thread(_record_cli, clean_db, **env)
    assert (code, status["closed_sessions"], status["open_sessions"]) == (0, 1, 1), (status, err)

    # the API server unreachable: the cycle fails, the command says why and exits 1
    bad = kubeconfig_with(Path(kube.kubeconfig), tmp_path / "unreachable.kubeconfig", server="https://127.0.0.1:1")
    code, status, _err = await asyncio.to_thread(_record_cli, clean_db, **{**env, "PORTAL_KUBECONFIG": str(bad)})
    assert code == 1 and status["state"] == "error" and status["last_error"].startswith("cluster: ")

    # no cluster configured (the recorder is off): nothing recorded, nothing to end
    code, status, err = await asyncio.to_thread(_record_cli, clean_db, PORTAL_HUB_NAMESPACE=kube.name)
    assert code == 0 and status["state"] == "off" and status["closed_sessions"] == 0 and "recorder is off" in err

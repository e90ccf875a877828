"""Web pages' access rules, the SIMULATED cluster, the chart geometry and the `demo` command
(no browser here).  The app runs on the demo's SQLite database; PostgreSQL-backed API behaviour is
covered by ../test_api.py."""

from __future__ import annotations

import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from ui_support import free_ui_port

from labhub_portal.app import create_app
from labhub_portal.auth import SESSION_COOKIE, sign
from labhub_portal.cluster import PodNotFound, pods_to_observations
from labhub_portal.config import Settings
from labhub_portal.db.migrate import upgrade
from labhub_portal.demo.simulator import NODES, SimulatedCluster
from labhub_portal.web.charts import axis_ticks, horizontal_bars, nice_ceiling, vertical_bars

TOKEN = "ui-test-token-0123456789abcdef"


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory):
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('web') / 'portal.sqlite3'}"
    upgrade(url)
    return url


@asynccontextmanager
async def _client(sqlite_url, **overrides):
    """The app with its lifespan, called in-process over ASGI (as from 127.0.0.1)."""
    settings = Settings(_env_file=None, demo=True, database_url=sqlite_url, cookie_secure=False, kubeconfig=None,
                        kube_in_cluster=False, mysql_url=None, **overrides)
    cluster = SimulatedCluster(churn=False)
    cluster.populate(fraction=0.5)
    app = create_app(settings, cluster=cluster, start_services=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1",
                                     follow_redirects=False) as client:
            yield client


async def test_pages_without_auth_configured_run_as_local_user(sqlite_url):
    async with _client(sqlite_url, token=None) as client:
        for path in ("/usage", "/pods", "/pods/cards", "/sync", "/sync/panel"):
            response = await client.get(path)
            assert response.status_code == 200, path
            assert response.headers["cache-control"] == "no-store"
        page = (await client.get("/pods")).text
        token = re.search(r'<meta name="csrf-token" content="([^"]+)"', page).group(1)
        assert client.cookies.get("labhub_portal_csrf") == token  # double-submit pair for the page's JS
        assert re.search(r'<meta name="csrf-header" content="X-CSRF-Token">', page)
        assert (await client.get("/")).headers["location"].endswith("/usage")
        assert (await client.get("/static/portal.css")).status_code == 200
        assert (await client.get("/static/portal.js")).headers["content-type"].startswith(("text/javascript",
                                                                                    "application/javascript"))


async def test_pages_need_a_login_when_a_token_is_configured(sqlite_url):
    async with _client(sqlite_url, token=TOKEN) as client:
        response = await client.get("/usage")
        assert response.status_code == 401
        assert "Sign-in required" in response.text
        assert (await client.get("/pods/cards")).status_code == 401
        ok = await client.get("/usage", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and "Usage" in ok.text
        assert (await client.get("/usage", headers={"Authorization": "Bearer wrong-token-0123456789"})).status_code == 401


async def test_pages_redirect_to_hub_login_when_oauth_is_configured(sqlite_url):
    async with _client(sqlite_url, hub_api_url="http://127.0.0.1:9/hub/api", hub_api_token="hub-token-0123456789abcdef",
                 cookie_secret="cookie-secret-0123456789abcdef") as client:
        response = await client.get("/usage?department=Physics")
        assert response.status_code == 302
        location = response.headers["location"]
        assert "/login?" in location and "next=%2Fusage%3Fdepartment%3DPhysics" in location
        # after the hub login (a signed session cookie, as /oauth_callback sets it) the pages render
        session = sign({"u": "hubadmin", "csrf": "c" * 32, "exp": time.time() + 600},
                       b"cookie-secret-0123456789abcdef")
        client.cookies.set(SESSION_COOKIE, session)
        page = await client.get("/usage")
        assert page.status_code == 200
        assert "Signed in as <strong>hubadmin</strong>" in page.text and 'id="logout"' in page.text
        assert 'content="' + "c" * 32 + '"' in page.text  # the CSRF token is the one signed into the session


async def test_bad_filter_values_are_reported_not_crashing(sqlite_url):
    async with _client(sqlite_url) as client:
        response = await client.get("/usage?start=2026-13-45")
        assert response.status_code == 200
        assert "expected a day as YYYY-MM-DD" in response.text
        assert (await client.get("/usage?page=0")).status_code == 422
        assert "out of range" in (await client.get("/usage?start=0001-01-01&end=0001-01-01")).text
        assert (await client.get("/usage", params={"q": "a\x00b"})).status_code == 422
        # user input is escaped where it is echoed back
        echoed = (await client.get("/usage", params={"q": '"><script>alert(1)</script>'})).text
        assert "<script>alert(1)" not in echoed and "&lt;script&gt;alert(1)" in echoed


# --- the simulator (a labelled test double of the Kubernetes API) ---------------------------------
async def test_simulated_pods_parse_like_real_pods():
    cluster = SimulatedCluster(churn=False)
    name = cluster.start_server("farid", "gpu-a100x2")
    cluster.start_server("alice", "cpu-small", servername="analysis")
    pods = await cluster.list_singleuser_pods()
    observations = {o.pod_name: o for o in pods_to_observations(pods, await cluster.node_labels(), "jhub")}
    gpu = observations[name]
    assert gpu.username == "farid" and gpu.gpu_request == 2 and gpu.gpu_model == "NVIDIA-A100-SXM4-80GB"
    assert gpu.cpu_request == 16 and gpu.memory_request == 128 * 2**30 and gpu.profile == "gpu-a100x2"
    assert gpu.ready and gpu.phase == "Running" and gpu.node.startswith("gpu-node-a100")
    named = observations["jupyter-alice--analysis"]
    assert named.server_name == "analysis" and named.gpu_request == 0 and named.gpu_model is None
    assert pods[0]["status"]["startTime"].endswith("Z")  # API server timestamp format
    await cluster.delete_pod(name)
    assert cluster.deleted_pods == [name]
    with pytest.raises(PodNotFound):
        await cluster.delete_pod(name)
    with pytest.raises(PodNotFound):
        await cluster.delete_pod("hub-7d9c6b5f4-abcde")


async def test_simulation_moves_over_time_within_node_capacity():
    state = {"now": datetime(2026, 11, 18, 1, 0, tzinfo=timezone.utc)}  # a Wednesday, 09:00 in Taipei
    from zoneinfo import ZoneInfo

    cluster = SimulatedCluster(clock=lambda: state["now"], tick_seconds=600, zone=ZoneInfo("Asia/Taipei"),
                               start_probability=0.3, stop_probability=0.2)
    seen: set[str] = set()
    snapshots = []
    for _ in range(60):
        state["now"] += timedelta(minutes=10)
        pods = await cluster.list_singleuser_pods()
        uids = {p["metadata"]["uid"] for p in pods}
        snapshots.append(uids)
        seen |= uids
        gpus: dict[str, int] = {}
        for pod in pods:
            requested = int(pod["spec"]["containers"][0]["resources"]["requests"].get("nvidia.com/gpu", 0))
            gpus[pod["spec"]["nodeName"]] = gpus.get(pod["spec"]["nodeName"], 0) + requested
        for node in NODES:
            assert gpus.get(node.name, 0) <= node.gpus
    assert len(seen) > max(len(s) for s in snapshots)  # servers came and went
    assert any(a - b for a, b in itertools.pairwise(snapshots))
    assert any(b - a for a, b in itertools.pairwise(snapshots))


# --- charts -----------------------------------------------------------------------------------------
def test_chart_geometry():
    assert [nice_ceiling(v) for v in (0, 0.7, 3, 17, 26, 99, 101)] == [1.0, 1.0, 5.0, 20.0, 50.0, 100.0, 200.0]
    chart = vertical_bars("x", [("2026-11-01", 10.0), ("2026-11-02", 20.0), ("2026-11-03", 0.0)], height=200)
    heights = [bar.height for bar in chart.bars]
    assert heights[0] * 2 == pytest.approx(heights[1]) and heights[2] == 0
    assert all(bar.y + bar.height == pytest.approx(chart.plot_bottom) for bar in chart.bars)
    assert vertical_bars("x", []).empty
    # every tick label says its value exactly (a quarter of 10 is 2.5, once labelled "2")
    for top in (0.3, 1, 2, 2.5, 4, 5, 7, 10, 17, 25, 40, 99, 250, 1234, 0.004):
        chart = vertical_bars("x", [("a", float(top)), ("b", top / 3)])
        maximum = nice_ceiling(top)
        assert [t.value for t in chart.ticks] == axis_ticks(maximum) and chart.ticks[-1].value == maximum
        assert [float(t.display.replace(",", "")) for t in chart.ticks] == pytest.approx([t.value for t in chart.ticks])
        assert chart.ticks[0].pos == pytest.approx(chart.plot_bottom) and chart.ticks[-1].pos == pytest.approx(chart.plot_top)
        assert len(chart.ticks) in (5, 6)
    assert [t.display for t in vertical_bars("x", [("a", 10.0)]).ticks] == ["0", "2", "4", "6", "8", "10"]
    assert [t.display for t in vertical_bars("x", [("a", 2.5)]).ticks] == ["0.0", "0.5", "1.0", "1.5", "2.0", "2.5"]
    assert [t.display for t in vertical_bars("x", [("a", 20.0)]).ticks] == ["0", "5", "10", "15", "20"]
    rows = horizontal_bars("y", [("B", 5.0), ("A", 10.0)])
    assert [bar.label for bar in rows.bars] == ["A", "B"]
    assert rows.bars[0].width == pytest.approx(rows.bars[1].width * 2)


# --- the demo command ---------------------------------------------------------------------------------
def test_demo_command_serves_the_portal_on_demo_data(tmp_path):
    port = free_ui_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("PORTAL_MYSQL_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "labhub_portal.demo", "--port", str(port), "--history-days", "2",
                             "--record-interval", "1", "--mariadb"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=tmp_path)
    output = []
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                raise AssertionError("demo exited early:\n" + "".join(output))
            output.append(line)
            if "Serving on" in line:
                break
        assert f"Serving on http://127.0.0.1:{port}/" in "".join(output)
        for _ in range(100):
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/usage", timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert response.status_code == 200 and "Demo data" in response.text
        # the recorder keeps observing the simulator: last_cycle moves
        first = httpx.get(f"http://127.0.0.1:{port}/api/status").json()["recorder"]["last_cycle_at"]
        time.sleep(2.5)
        second = httpx.get(f"http://127.0.0.1:{port}/api/status").json()["recorder"]["last_cycle_at"]
        assert first and second and second > first
        pods = httpx.get(f"http://127.0.0.1:{port}/api/pods").json()["pods"]
        assert len(pods) >= 5  # the simulator keeps at least five servers running
        # --mariadb: "sync now" writes pod_report into the demo's private MariaDB (CSRF double submit)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as browserish:
            browserish.get("/sync")
            csrf = browserish.cookies["labhub_portal_csrf"]
            refused = browserish.post("/api/pod-report-sync")
            assert refused.status_code == 403
            synced = browserish.post("/api/pod-report-sync", headers={"X-CSRF-Token": csrf})
            assert synced.status_code == 200, synced.text
            assert synced.json()["status"]["state"] == "ok"
            sessions = browserish.get("/api/sessions", params={"page_size": 1}).json()["total"]
            assert synced.json()["status"]["watermark"] >= sessions > 0
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        output.append(proc.stdout.read())
    # the temporary database is removed on exit
    text = "".join(output)
    database = re.search(r"Database:\s+(\S+) \(temporary\)", text).group(1)
    assert not os.path.exists(database)
    socket_path = re.search(r"private MariaDB at (\S+)", text).group(1)
    assert not os.path.exists(os.path.dirname(socket_path))
    assert proc.returncode == 0, text


def test_demo_on_a_busy_port_says_so_at_once_and_exits():
    """A taken port is reported before any data is prepared; no "Serving on" line, exit code 2."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "labhub_portal.demo", "--port", str(port)],
                                capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"cannot listen on 127.0.0.1 port {port}" in result.stderr and "--port" in result.stderr
    assert "Serving on" not in result.stdout and "Preparing demo data" not in result.stdout
    assert time.monotonic() - started < 30


def test_demo_stops_on_sigterm_while_preparing_and_while_serving(tmp_path):
    for wait_for_line in ("Preparing demo data", "Serving on"):
        port = free_ui_port()
        proc = subprocess.Popen([sys.executable, "-m", "labhub_portal.demo", "--port", str(port), "--history-days", "3"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
                                env=dict(os.environ, PYTHONUNBUFFERED="1"))
        output = []
        try:
            deadline = time.time() + 180
            while time.time() < deadline:
                line = proc.stdout.readline()
                output.append(line)
                if wait_for_line in line or (not line and proc.poll() is not None):
                    break
            assert wait_for_line in "".join(output), "".join(output)
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        text = "".join(output) + proc.stdout.read()
        # 130 ("interrupted") when the signal lands before uvicorn serves, 0 after its graceful shutdown
        assert proc.returncode in (0, 130), (wait_for_line, proc.returncode, text)
        database = re.search(r"Database:\s+(\S+) \(temporary\)", text)
        assert database is None or not os.path.exists(database.group(1)), text  # cleaned up
        with socket.socket() as again:  # the port is free again
            again.bind(("127.0.0.1", port))


def test_demo_refuses_non_loopback_bind():
    result = subprocess.run([sys.executable, "-m", "labhub_portal.demo", "--host", "0.0.0.0"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "loopback" in result.stderr



def test_cli_demo_subcommand_passes_its_options_to_the_demo():
    """`labhub-portal demo --host ... --port ...` (the README's command) reaches the demo's own parser."""
    result = subprocess.run([sys.executable, "-m", "labhub_portal.cli", "demo", "--host", "0.0.0.0", "--port", "8781"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "loopback" in result.stderr, result.stderr


def test_timeline_geometry():
    """Lanes sorted by key; spans clipped to the window, at least 2 units wide, in time order;
    ticks outside the window dropped."""
    from labhub_portal.web.charts import timeline

    chart = timeline([("bob", "p3", "t3", False, True, 50.0, 150.0),  # running past the window's end
                      ("alice", "p2", "t2", True, False, -20.0, 10.0),  # started before it
                      ("alice", "p1", "t1", False, False, 40.0, 40.01),  # a moment: 2 units wide
                      ("carol", "p4", "t4", False, False, 120.0, 130.0)],  # outside: no span, but a lane
                     0.0, 100.0, [(0.0, "start"), (50.0, "mid"), (150.0, "after")], width=1100, label_width=100)
    assert [lane.key for lane in chart.lanes] == ["alice", "bob", "carol"]
    alice, bob, carol = chart.lanes
    scale = (1100 - 12 - 100) / 100
    assert [(s.pod, s.x, s.width, s.gpu) for s in alice.spans] == [
        ("p2", 100.0, round(10 * scale, 2), True), ("p1", round(100 + 40 * scale, 2), 2.0, False)]
    assert [(s.pod, s.x, s.width, s.running) for s in bob.spans] == [
        ("p3", round(100 + 50 * scale, 2), round(50 * scale, 2), True)]
    assert carol.spans == [] and chart.spans == 3
    assert [(t.display, t.pos) for t in chart.ticks] == [("start", 100.0), ("mid", round(100 + 50 * scale, 2))]
    assert chart.height == 24 + 8 + 3 * 22


def test_stacked_bars_geometry():
    """Segments stack in series order from the axis up, zero ones left out; totals and the data
    table per series and column; the axis reaches the tallest column."""
    from labhub_portal.web.charts import stacked_bars

    chart = stacked_bars("c", ["2026-11", "2026-12"], [("A", [10.0, 0.0]), ("B", [5.0, 20.0])], unit="TWD",
                         width=400, height=200)
    assert [(s.column, chart.series[s.series], s.value) for s in chart.segments] == [
        ("2026-11", "A", 10.0), ("2026-11", "B", 5.0), ("2026-12", "B", 20.0)]
    a, b, c = chart.segments
    assert b.y + b.height == a.y and a.y + a.height == chart.plot_bottom  # stacked from the axis up
    assert c.height == chart.plot_bottom - chart.plot_top  # 20 is the axis maximum
    assert chart.totals == ["15", "20"] and chart.rows == [["10", "0"], ["5", "20"]]
    assert [t.display for t in chart.ticks][-1] == "20"
    assert stacked_bars("c", ["2026-12"], [("A", [0.0])]).empty

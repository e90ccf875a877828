"""The web pages on the production database: PostgreSQL (the throwaway server of ../conftest.py),
history written by the portal's recorder observing the SIMULATED cluster (the demo's, to replay days
of history), pages fetched with the bearer token.  (The browser tests use the demo's SQLite; this
covers the SQL statistics path.)  The Pods page is also checked on the REAL control plane (../kube.py)."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from kube import H100, singleuser_pod
from testlib import AUTH as TEST_AUTH
from testlib import running_app

from labhub_portal.app import create_app
from labhub_portal.config import Settings
from labhub_portal.db.models import ContainerSession
from labhub_portal.demo.seed import replay_history, seed_directory
from labhub_portal.demo.simulator import SimulatedCluster

TOKEN = "ui-pg-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TABLES = "audit_log, container_sessions, users, departments, sync_watermarks"


@pytest.fixture
async def empty_pg(clean_db):
    yield clean_db
    engine = create_async_engine(clean_db.url())  # leave nothing behind for other suites
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
    await engine.dispose()


async def test_pages_render_from_postgresql(empty_pg):
    settings = Settings(_env_file=None, database_url=empty_pg.url(), token=TOKEN, cookie_secure=False,
                        allowed_hosts="portal.test",
                        cookie_secret="ui-pg-cookie-secret-0123456789", kubeconfig=None, kube_in_cluster=False,
                        timezone="Asia/Taipei", record_interval=30.0)
    cluster = SimulatedCluster(churn=False, min_running=5)
    app = create_app(settings, cluster=cluster, start_services=False)
    async with app.router.lifespan_context(app):
        maker = app.state.sessionmaker
        await seed_directory(maker, cluster)
        cycles = await replay_history(settings, maker, cluster, days=4, step=timedelta(hours=2))
        assert cycles >= 48
        async with maker() as session:
            total = (await session.execute(select(func.count()).select_from(ContainerSession))).scalar_one()
            open_ = (await session.execute(select(func.count()).select_from(ContainerSession)
                                           .where(ContainerSession.ended_at.is_(None)))).scalar_one()
        assert total > open_ >= 5
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://portal.test", headers=AUTH) as client:
            usage = await client.get("/usage")
            assert usage.status_code == 200
            html = usage.text
            assert "Demo data" not in html  # the banner is the demo's only
            assert re.search(r'data-card="active">\s*<p class="label">Active sessions</p>\s*<p class="value">'
                             + str(open_) + "<", html)
            assert len(re.findall(r'<rect class="bar-gpu"', html)) == 30
            assert f"{total} sessions" in html
            api = (await client.get("/api/stats", params={"group_by": "department"})).json()
            shown = {label: float(value) for label, value in
                     re.findall(r'<rect class="bar-cost"[^>]*data-label="([^"]+)" data-value="([^"]+)"', html)}
            # the cost chart shows the API's numbers (ongoing sessions keep counting between the two calls)
            assert set(shown) == {row["key"] for row in api["rows"]}
            for row in api["rows"]:
                assert shown[row["key"]] == pytest.approx(row["cost"], rel=0.01, abs=0.5)
            physics = await client.get("/usage", params={"department": "Physics"})
            count = int(re.search(r"(\d+) sessions? match the filters", physics.text).group(1))
            api_count = (await client.get("/api/sessions", params={"department": "Physics"})).json()["total"]
            assert 0 < count == api_count < total
            pods = await client.get("/pods")
            assert pods.status_code == 200
            assert sorted(re.findall(r'data-pod="([^"]+)"', pods.text)) == cluster.running_pod_names()
            sync = await client.get("/sync")
            assert sync.status_code == 200 and "Report sync is off" in sync.text


async def test_pods_page_on_the_real_cluster(kube, settings_factory, tx_sessionmaker):
    """The Pods page lists the real pods (node and GPU model as scheduled); a namespace the portal's
    ServiceAccount may not read is a readable error on the page, not a server error."""
    kube.start(singleuser_pod("alice", gpus=1, gpu_product=H100, profile="gpu-h100"), singleuser_pod("bob"))
    async with running_app(settings_factory(), sessionmaker=tx_sessionmaker) as (app, client):
        assert (await app.state.recorder.run_once())["state"] == "ok"  # node labels for the GPU model
        page = await client.get("/pods", headers=TEST_AUTH)
        assert page.status_code == 200
        assert sorted(re.findall(r'data-pod="([^"]+)"', page.text)) == ["jupyter-alice", "jupyter-bob"]
        assert f"1 × {H100}" in page.text and "<dd>gpu-h100-0</dd>" in page.text and "<dd>cpu-0</dd>" in page.text
        assert "<dd>gpu-h100</dd>" in page.text  # the profile annotation
    other = kube.other_namespace()
    async with running_app(settings_factory(hub_namespace=other), sessionmaker=tx_sessionmaker) as (_app, client):
        page = await client.get("/pods", headers=TEST_AUTH)
        assert page.status_code == 200
        alert = re.search(r'<p class="status err" role="alert">([^<]*)</p>', page.text)
        assert alert is not None, page.text[:2000]
        assert alert.group(1).startswith(f"Cluster unavailable: Failed to list pods of namespace &#39;{other}&#39; "
                                         "due to: HTTP 403 Forbidden"), alert.group(1)

"""Helpers shared by the portal tests (kept out of conftest.py so test modules can import them
without clashing with other conftest modules, e.g. tests/ui/conftest.py)."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager

import httpx

from labhub_portal.app import create_app
from labhub_portal.config import Settings

TOKEN = "test-portal-token-0123456789abcdef"
COOKIE_SECRET = "test-cookie-secret-0123456789abcdef"


def make_settings(pg_server, **overrides) -> Settings:
    values = dict(database_url=pg_server.url(), token=TOKEN, cookie_secret=COOKIE_SECRET, cookie_secure=False,
                  hub_namespace="jhub", kube_timeout=10.0, record_interval=30.0, gap_intervals=3,
                  timezone="Asia/Taipei", allowed_hosts="portal.test")  # the test clients' host
    values.update(overrides)
    return Settings(_env_file=None, **values)


@asynccontextmanager
async def running_app(settings: Settings, *, sessionmaker=None, **kwargs):
    """The portal with its lifespan running (background loops off: tests drive cycles explicitly)."""
    app = create_app(settings, start_services=False, **kwargs)
    async with app.router.lifespan_context(app):
        if sessionmaker is not None:
            app.state.sessionmaker = sessionmaker
            for service in (app.state.recorder, app.state.report_sync, app.state.idle_stopper):
                if service is not None:
                    service.sessionmaker = sessionmaker
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://portal.test") as client:
            yield app, client


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


async def async_wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(interval)
    return False


async def pod_listing(client, reading: str):
    """GET /api/pods: one of its readings ("usage" or "gpu_usage") and the pods by name."""
    response = await client.get("/api/pods", headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    return body[reading], {p["pod_name"]: p for p in body["pods"]}


async def assign_terms(session, now, users: dict, rates: dict) -> int:
    """Seed departments the way the API does (billing_terms): ``rates`` (department id ->
    RatePeriod) and ``users`` (username -> department id), both from the beginning, and give the
    recorded sessions the terms that follow.  Returns the sessions re-billed."""
    from labhub_portal.billing_terms import rebill, set_memberships, set_rates

    changed_rates = {}
    for department_id, period in rates.items():
        start = await set_rates(session, department_id, period, None, now)
        if start is not None:
            changed_rates[department_id] = start
    moved = await set_memberships(session, users, None, now)
    return await rebill(session, now, users=moved, departments=changed_rates)

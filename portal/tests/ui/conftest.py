"""Browser-test fixtures: the demo portal (embedded SQLite + the SIMULATED cluster, the real app and
recorder, report sync to the real throwaway MariaDB of ../conftest.py) served by uvicorn in a
thread on a free loopback port, and Debian's Chromium driven by Playwright.

Playwright never downloads a browser here: it launches /usr/bin/chromium (override with
LABHUB_CHROMIUM).  Every request the browser makes is logged; ``page`` fails the test if one of
them left 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import pytest_asyncio
from ui_support import free_ui_port

CHROMIUM = os.environ.get("LABHUB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "output" / "screenshots"
class DemoPortal:
    """`labhub-portal demo`'s app (build_demo) served in a background thread."""

    def __init__(self, mysql_url: str | None) -> None:
        from labhub_portal.demo import DemoOptions

        self.tmp = tempfile.mkdtemp(prefix="labhub-portal-ui-")
        self.database = os.path.join(self.tmp, "demo.sqlite3")
        self.port = free_ui_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        # churn off: the simulated users keep their servers, so the tests see a stable set of pods;
        # the history (and >= 5 running servers) still comes from the simulator through the recorder.
        self.options = DemoOptions(port=self.port, history_days=6, record_interval=1.0, churn=False,
                                   mysql_url=mysql_url, report_sync_interval=3600.0)
        self.cluster = None
        self.settings = None
        self.extra_pods: list[str] = []
        self._server = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="demo-portal", daemon=True)

    def _run(self) -> None:
        import uvicorn

        from labhub_portal.demo import build_demo

        try:
            self.settings, self.cluster, app = build_demo(self.options, self.database)
            # two extra servers (a CPU and a GPU one), for the stop test: of users who have none, or,
            # when the simulated day left fewer than two such users, a named server of a user
            running = {name.removeprefix("jupyter-") for name in self.cluster.running_pod_names()}
            owners = [(u.username, "") for u in self.cluster.users if u.username not in running]
            owners += [(u.username, "extra") for u in self.cluster.users if u.username in running]
            self.extra_pods = [self.cluster.start_server(user, profile, servername=server)
                               for (user, server), profile in zip(owners, ("cpu-large", "gpu-l40s"))]
            config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
            self._server = uvicorn.Server(config)
            asyncio.run(self._server.serve())
        except BaseException as exc:  # noqa: BLE001 - surfaced by start() in the test thread
            self._error = exc

    def start(self) -> DemoPortal:
        self._thread.start()
        deadline = time.time() + 240
        while time.time() < deadline:
            if self._error is not None:
                raise RuntimeError(f"demo portal failed to start: {self._error!r}") from self._error
            if (self._server is not None and self._server.started
                    and httpx.get(self.base_url + "/healthz", timeout=5).status_code == 200):
                return self
            time.sleep(0.2)
        raise RuntimeError("demo portal did not start within 240 s")

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(30)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def sql(self, query: str, *args) -> list[tuple]:
        """Read the demo's SQLite database directly (what the portal really stored)."""
        conn = sqlite3.connect(self.database, timeout=10)
        try:
            return conn.execute(query, args).fetchall()
        finally:
            conn.close()


@pytest.fixture(scope="session")
def demo_portal(mariadb_server):
    # The MariaDB server is shared with the backend tests, which leave their own pod_report
    # rows behind; this portal (fresh SQLite, watermark 0) must start from an empty report.
    conn = mariadb_server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS pod_report")
    finally:
        conn.close()
    portal = DemoPortal(mariadb_server.url).start()
    yield portal
    portal.stop()


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest_asyncio.fixture(scope="session")
async def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"Chromium not found at {CHROMIUM} (Debian package 'chromium')")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        await chromium.close()


@pytest_asyncio.fixture
async def page(browser, demo_portal):
    """A fresh browser context with the network cut: every request that would leave loopback is
    aborted (as on an air-gapped site) and fails the test, as does a JavaScript error on the page."""
    context = await browser.new_context(viewport={"width": 1360, "height": 900}, base_url=demo_portal.base_url,
                                        # not the portal's zone (Asia/Taipei): every time shown must
                                        # be the portal's, whatever the browser's zone
                                        locale="en-US", timezone_id="America/Los_Angeles")
    requests: list[str] = []
    errors: list[str] = []
    context.on("request", lambda request: requests.append(request.url))
    await context.route(lambda url: urlsplit(url).hostname != "127.0.0.1", lambda route: route.abort("internetdisconnected"))
    pg = await context.new_page()
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.requests = requests
    yield pg
    await context.close()
    outside = [url for url in requests if urlsplit(url).hostname != "127.0.0.1"]
    assert requests, "the browser made no request at all"
    assert not outside, f"requests left loopback: {outside}"
    assert not errors, f"JavaScript errors on the page: {errors}"

"""The web UI in real headless Chromium (Debian's /usr/bin/chromium driven by Playwright) against
the demo portal: embedded SQLite, the SIMULATED cluster, the real recorder, the real MariaDB report
target.  Screenshots go to tests/output/screenshots/.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

pytestmark = [pytest.mark.timeout(300)]

ZONE = ZoneInfo("Asia/Taipei")


async def _rows(page) -> list[dict]:
    """The session table as the user sees it."""
    return await page.eval_on_selector_all(
        "#session-table tbody tr[data-user]",
        """rows => rows.map(r => ({user: r.dataset.user, department: r.dataset.department,
                                   text: r.innerText}))""")


async def _count(page) -> int:
    text = await page.inner_text("#session-count")
    return int(re.match(r"(\d+) session", text).group(1))


async def _sql_rows(demo_portal, where: str = "1=1", *args) -> int:
    return demo_portal.sql(f"""SELECT count(*) FROM container_sessions cs
                               LEFT JOIN users u ON u.username = cs.username
                               LEFT JOIN departments d ON d.id = cs.department_id WHERE {where}""", *args)[0][0]


async def test_usage_tab_cards_charts_and_demo_banner(page, demo_portal, screenshot_dir):
    await page.goto("/")
    assert page.url.endswith("/usage")
    banner = page.locator("#demo-banner")
    assert await banner.is_visible()
    assert "demo data" in (await banner.inner_text()).lower()
    assert await page.get_attribute('a[aria-current="page"]', "href") == demo_portal.base_url + "/usage"
    # cards show the real aggregates: active sessions = open sessions in the database
    open_sessions = demo_portal.sql("SELECT count(*) FROM container_sessions WHERE ended_at IS NULL")[0][0]
    active = await page.inner_text('[data-card="active"] .value')
    assert int(active) == open_sessions >= 5
    for card in ("cpu-today", "gpu-today", "cost-today", "cpu-month", "gpu-month", "cost-month"):
        assert re.search(r"\d", await page.inner_text(f'[data-card="{card}"] .value'))
    # GPU-hours per day: one bar per day of the last 30, some non-zero (history has GPU sessions)
    bars = await page.eval_on_selector_all("#gpu-chart rect", "els => els.map(e => Number(e.dataset.value))")
    assert len(bars) == 30 and sum(bars) > 0
    depts = await page.eval_on_selector_all("#cost-chart rect", "els => els.map(e => e.dataset.label)")
    assert set(depts) <= {"Physics", "Bioinformatics", "Computer Science", "Economics", "Chemistry", "(none)"}
    assert len(depts) >= 2
    await page.screenshot(path=str(screenshot_dir / "usage.png"), full_page=True)


async def test_session_filters_narrow_the_table_and_csv_export(page, demo_portal, screenshot_dir):
    await page.goto("/usage")
    total = await _count(page)
    assert total == await _sql_rows(demo_portal)
    assert total > 25  # several pages of history

    # department filter (select + submit with the keyboard-reachable button)
    await page.select_option("#f-department", "Physics")
    await page.click("#session-filters button[type=submit]")
    await page.wait_for_url(re.compile(r"department=Physics"))
    physics = await _count(page)
    assert 0 < physics < total
    assert physics == await _sql_rows(demo_portal, "d.name = ?", "Physics")
    assert {r["department"] for r in await _rows(page)} == {"Physics"}
    await page.screenshot(path=str(screenshot_dir / "usage-filter-department.png"), full_page=True)

    # + user filter
    await page.fill("#f-user", "alice")
    await page.press("#f-user", "Enter")
    await page.wait_for_url(re.compile(r"user=alice"))
    alice = await _count(page)
    assert 0 < alice < physics
    assert {r["user"] for r in await _rows(page)} == {"alice"}

    # keyword filter alone (matches pod, image, node, profile, GPU model ...)
    await page.goto("/usage")
    await page.fill("#f-q", "l40s")
    await page.click("#session-filters button[type=submit]")
    await page.wait_for_url(re.compile(r"q=l40s"))
    l40s = await _count(page)
    assert 0 < l40s < total
    assert l40s == await _sql_rows(demo_portal, "lower(cs.node) LIKE '%l40s%' OR lower(cs.profile) LIKE '%l40s%' "
                                                "OR lower(cs.gpu_model) LIKE '%l40s%'")
    for row in await _rows(page):
        assert "l40s" in row["text"].lower()

    # time range: one day; every listed session overlaps that local day
    day = datetime.now(ZONE).date() - timedelta(days=2)
    await page.goto("/usage")
    await page.fill("#f-start", day.isoformat())
    await page.fill("#f-end", day.isoformat())
    await page.click("#session-filters button[type=submit]")
    await page.wait_for_url(re.compile(r"start=" + day.isoformat()))
    in_day = await _count(page)
    lo = datetime.combine(day, time(), ZONE).astimezone(timezone.utc).replace(tzinfo=None)
    hi = lo + timedelta(days=1)
    expected = await _sql_rows(demo_portal, "cs.started_at < ? AND (cs.ended_at IS NULL OR cs.ended_at > ?)",
                               hi.isoformat(sep=" "), lo.isoformat(sep=" "))
    assert 0 < in_day == expected < total
    await page.screenshot(path=str(screenshot_dir / "usage-filter-day.png"), full_page=True)

    # CSV export of the same filters: exactly the filtered sessions
    href = await page.get_attribute("#csv-export", "href")
    assert "format=csv" in href
    response = await page.request.get(href)
    assert response.ok and response.headers["content-type"].startswith("text/csv")
    records = list(csv.DictReader(io.StringIO(await response.text())))
    assert len(records) == in_day
    for record in records:
        started = datetime.fromisoformat(record["started_at"])
        ended = datetime.fromisoformat(record["ended_at"]) if record["ended_at"] else None
        assert started.utcoffset() == timedelta(hours=8)  # shown in the configured zone
        assert started.astimezone(timezone.utc).replace(tzinfo=None) < hi
        assert ended is None or ended.astimezone(timezone.utc).replace(tzinfo=None) > lo

    # a day range that is backwards is refused with a message, not a 500
    await page.goto(f"/usage?start={day.isoformat()}&end={(day - timedelta(days=3)).isoformat()}")
    assert "before the first day" in await page.inner_text("[role=alert]")


async def _focus_first_card(page) -> str:
    for _ in range(30):
        await page.keyboard.press("Tab")
        focused = await page.evaluate("document.activeElement.classList.contains('pod-card') && "
                                      "document.activeElement.dataset.pod")
        if focused:
            return focused
    raise AssertionError("Tab never reached a pod card")


async def test_pods_keyboard_selection(page, demo_portal, screenshot_dir):
    await page.goto("/pods")
    cards = page.locator(".pod-card")
    assert await cards.count() == len(demo_portal.cluster.running_pod_names())
    first = await _focus_first_card(page)
    card = page.locator(f'.pod-card[data-pod="{first}"]')
    assert await card.get_attribute("role") == "button"
    assert await card.get_attribute("tabindex") == "0"
    assert await card.get_attribute("aria-pressed") == "false"
    scroll_before = await page.evaluate("window.scrollY")
    await page.keyboard.press("Space")
    assert await card.get_attribute("aria-pressed") == "true"
    assert await page.evaluate("window.scrollY") == scroll_before  # Space toggles, it does not scroll
    assert await page.inner_text("#selection-count") == "1 server selected"
    assert await page.is_enabled("#stop-selected")
    await page.keyboard.press("Enter")
    assert await card.get_attribute("aria-pressed") == "false"
    assert await page.is_disabled("#stop-selected")
    await page.keyboard.press("Enter")
    await page.keyboard.press("Tab")
    second = await page.evaluate("document.activeElement.dataset.pod")
    assert second and second != first
    await page.keyboard.press("Space")
    assert await page.inner_text("#selection-count") == "2 servers selected"
    # the focus ring is visible on the focused card
    outline = await page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
    await page.screenshot(path=str(screenshot_dir / "pods-keyboard-selection.png"), full_page=True)
    # clicking toggles too; Clear selection empties it
    await page.click(f'.pod-card[data-pod="{first}"]')
    assert await page.inner_text("#selection-count") == "1 server selected"
    await page.click("#clear-selection")
    assert await page.inner_text("#selection-count") == "No servers selected"
    assert demo_portal.cluster.deleted_pods == []  # selecting never stops anything


async def test_stop_flow_with_confirmation(page, demo_portal, screenshot_dir):
    targets = sorted(demo_portal.extra_pods)
    await page.goto("/pods")
    for name in targets:
        await page.click(f'.pod-card[data-pod="{name}"]')
    await page.click("#stop-selected")
    dialog = page.locator("#stop-dialog")
    assert await dialog.is_visible()
    listed = await page.inner_text("#stop-dialog-list")
    assert all(name in listed for name in targets)
    await page.screenshot(path=str(screenshot_dir / "pods-stop-confirmation.png"), full_page=False)
    # Cancel stops nothing
    await page.click("#stop-cancel")
    assert not await dialog.is_visible()
    await asyncio.sleep(0.5)
    assert demo_portal.cluster.deleted_pods == []
    # Confirm: the stop goes through POST /api/pods/stop (CSRF token from the page)
    posts = []
    page.on("request", lambda r: posts.append((r.method, r.url, r.headers)) if r.method == "POST" else None)
    await page.click("#stop-selected")
    await page.click("#stop-confirm")
    await page.wait_for_function("document.getElementById('pods-status').classList.contains('ok')")
    status = await page.inner_text("#pods-status")
    assert "Stopped 2 server(s)" in status
    for name in targets:
        await page.locator(f'.pod-card[data-pod="{name}"]').wait_for(state="detached", timeout=15000)
    assert sorted(demo_portal.cluster.deleted_pods) == targets
    assert [(m, u.split("127.0.0.1:")[1].split("/", 1)[1]) for m, u, _ in posts] == [("POST", "api/pods/stop")]
    assert posts[0][2].get("x-csrf-token")
    # audited, and the recorder closes the sessions of the deleted pods
    audit = demo_portal.sql("SELECT target, result, actor FROM audit_log WHERE action = 'stop_server' ORDER BY target")
    assert [(t, r) for t, r, _ in audit] == [(f"jhub/{name}", "deleted") for name in targets]
    for _ in range(50):
        ended = demo_portal.sql("SELECT pod_name, end_reason FROM container_sessions WHERE pod_name IN (?, ?) "
                                "AND ended_at IS NULL", *targets)
        if not ended:
            break
        await asyncio.sleep(0.3)
    assert not ended, f"sessions still open after the stop: {ended}"
    await page.screenshot(path=str(screenshot_dir / "pods-after-stop.png"), full_page=True)


async def test_stop_without_csrf_token_is_refused(page, demo_portal):
    await page.goto("/pods")
    victim = demo_portal.cluster.running_pod_names()[0]
    response = await page.request.post("/api/pods/stop", data={"pods": [victim]})
    assert response.status == 403
    assert victim in demo_portal.cluster.running_pod_names()


def _report(mariadb_server, query: str, *args):
    conn = mariadb_server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(query, args)
            return cur.fetchall()
    finally:
        conn.close()


async def test_sync_tab_writes_the_report(page, demo_portal, mariadb_server, screenshot_dir):
    await page.goto("/sync")
    assert await page.is_enabled("#sync-now")
    # the service synced once at start-up; since then the recorder refreshed the open sessions
    await asyncio.sleep(1.5)
    uid, seen = demo_portal.sql("SELECT pod_uid, last_seen_at FROM container_sessions WHERE ended_at IS NULL "
                                "ORDER BY pod_uid LIMIT 1")[0]
    seen = datetime.fromisoformat(seen)
    await page.screenshot(path=str(screenshot_dir / "sync-before.png"), full_page=True)
    await page.click("#sync-now")
    await page.wait_for_function("/Sync (finished|failed)/.test(document.getElementById('sync-status').innerText)")
    text = await page.inner_text("#sync-status")
    assert text.startswith("Sync finished"), text
    rows = int(re.search(r"(\d+) row", text).group(1))
    assert rows > 0
    # every session is in MySQL exactly once, and the open one carries the fresh observation
    sessions = demo_portal.sql("SELECT count(*) FROM container_sessions")[0][0]
    count, distinct = _report(mariadb_server, "SELECT count(*), count(DISTINCT pod_uid) FROM pod_report")[0]
    assert count == distinct == sessions
    (reported,), = _report(mariadb_server, "SELECT last_seen_at FROM pod_report WHERE pod_uid = %s", uid)
    assert reported >= seen.replace(microsecond=0)
    # the panel was refreshed with this run
    assert await page.inner_text("#sync-last-status") == "ok"
    assert await page.inner_text("#sync-last-run") != "never"
    assert int(await page.inner_text("#sync-last-rows")) == rows
    await page.screenshot(path=str(screenshot_dir / "sync-after.png"), full_page=True)
    # a second run only carries what changed since; still no duplicates
    await page.click("#sync-now")
    await page.wait_for_function("document.getElementById('sync-now').disabled === false")
    assert (await page.inner_text("#sync-status")).startswith("Sync finished")
    count, distinct = _report(mariadb_server, "SELECT count(*), count(DISTINCT pod_uid) FROM pod_report")[0]
    assert count == distinct == demo_portal.sql("SELECT count(*) FROM container_sessions")[0][0]


async def test_every_tab_stays_on_loopback_and_has_no_external_assets(page, demo_portal):
    for path in ("/usage", "/pods", "/sync", "/audit", "/usage?department=Physics&page=2"):
        response = await page.goto(path)
        assert response.status == 200
        await page.wait_for_load_state("networkidle")
    assets = await page.evaluate("""[...document.querySelectorAll('link[href],script[src],img[src]')]
                                    .map(e => e.href || e.src)""")
    assert assets and all(a.startswith(demo_portal.base_url + "/") for a in assets)
    hosts = {u.split("/")[2] for u in page.requests}
    assert hosts == {f"127.0.0.1:{demo_portal.port}"}


async def test_times_are_shown_in_the_configured_zone(page, demo_portal):
    await page.goto("/pods")
    name = demo_portal.cluster.running_pod_names()[0]
    started_utc = demo_portal.sql("SELECT started_at FROM container_sessions WHERE pod_name = ? "
                                  "AND ended_at IS NULL", name)[0][0]
    local = datetime.fromisoformat(started_utc).replace(tzinfo=timezone.utc).astimezone(ZONE)
    card = await page.inner_text(f'.pod-card[data-pod="{name}"]')
    assert local.strftime("%Y-%m-%d %H:%M") in card
    assert "Asia/Taipei" in await page.inner_text(".header-meta")
    # the list's "Updated" clock after a refresh (every 5 s) is the portal's too (the browser's
    # zone here is America/Los_Angeles, 15 or 16 hours behind)
    await page.wait_for_function("document.getElementById('pods-updated').textContent.startsWith('Updated ')",
                                 timeout=15000)
    stamp = (await page.inner_text("#pods-updated")).removeprefix("Updated ")
    now = datetime.now(ZONE)
    assert stamp[:5] in {(now - timedelta(minutes=m)).strftime("%H:%M") for m in (0, 1)}, (stamp, now)



async def test_api_docs_load_everything_from_the_portal(page, screenshot_dir):
    """/docs (Swagger UI) renders with the network cut (the page fixture aborts and
    reports any request leaving loopback): their JavaScript and CSS come from the portal
    (/static-docs), not FastAPI's CDN."""
    responses: list[tuple[str, int]] = []
    page.on("response", lambda response: responses.append((response.url, response.status)))
    await page.goto("/docs")
    await page.wait_for_selector(".swagger-ui .info .title", timeout=30000)
    assert "Labhub usage portal" in await page.inner_text(".swagger-ui .info .title")
    await page.wait_for_selector(".opblock", timeout=30000)
    paths = await page.eval_on_selector_all(".opblock .opblock-summary-path", "els => els.map(e => e.dataset.path)")
    assert "/api/sessions" in paths and len(paths) >= 10, paths
    await page.screenshot(path=str(screenshot_dir / "api-docs.png"), full_page=False)
    assert (await page.request.get("/redoc")).status == 404  # ReDoc would fetch its logo from cdn.redoc.ly
    assets = {url.rsplit("/", 1)[-1]: status for url, status in responses if "/static-docs/" in url}
    assert assets == {"swagger-ui-bundle.js": 200, "swagger-ui.css": 200, "favicon.png": 200}, assets


async def test_user_page_and_live_cards(page, demo_portal, screenshot_dir):
    """A user's page (from the session table's user link): department, the user's own cards, cost
    and GPU-hours per day, newest sessions; its cards refresh in place without a reload; 404 for a
    user the portal does not know."""
    user = demo_portal.sql("SELECT username FROM container_sessions GROUP BY username "
                           "ORDER BY count(*) DESC LIMIT 1")[0][0]
    await page.goto(f"/usage?user={user}")
    await page.click(f'#session-table tbody tr[data-user="{user}"] a')
    assert page.url.endswith(f"/users/{user}")
    assert (await page.inner_text("#user-title")).startswith(user)
    department = demo_portal.sql("SELECT d.name FROM users u JOIN departments d ON d.id = u.department_id "
                                 "WHERE u.username = ?", user)[0][0]
    assert f"Department: {department}" in await page.inner_text("#user-department")
    running = demo_portal.sql("SELECT count(*) FROM container_sessions WHERE ended_at IS NULL AND username = ?",
                              user)[0][0]
    assert int(await page.inner_text('[data-card="active"] .value')) == running
    bars = await page.eval_on_selector_all("#user-cost-chart rect", "els => els.map(e => Number(e.dataset.value))")
    assert len(bars) == 30 and sum(bars) > 0
    total = demo_portal.sql("SELECT count(*) FROM container_sessions WHERE username = ?", user)[0][0]
    rows = await page.locator("#user-session-table tbody tr").count()
    assert rows == min(total, 25)
    await page.screenshot(path=str(screenshot_dir / "user.png"), full_page=True)

    # live: the cards come back from the server without a reload (every 10 s)
    await page.evaluate("document.getElementById('usage-cards').innerHTML = '<p id=stale>stale</p>'")
    await page.wait_for_selector('[data-card="cost-month"]', timeout=15000)
    assert await page.locator("#stale").count() == 0
    assert await page.get_attribute("#usage-cards", "data-updated")

    resp = await page.goto("/users/nobody-like-this")
    assert resp.status == 404 and "No user nobody-like-this" in await page.inner_text("body")


@pytest.mark.parametrize("path", ["/usage", "/timeline", "/pods", "/sync", "/audit", "/users/alice"])
async def test_phone_layout_never_scrolls_sideways(page, demo_portal, screenshot_dir, path):
    """At 390 x 844 (a phone) every view fits the width: no sideways scrolling of the page (wide
    tables scroll inside their own box)."""
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.goto(path)
    overflow = await page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"{path} is {overflow} px wider than the phone"
    name = path.strip("/").replace("/", "-")
    await page.screenshot(path=str(screenshot_dir / f"phone-{name}.png"), full_page=True)


async def test_timeline_per_user_and_per_node_and_zoom(page, demo_portal, screenshot_dir):
    """Timeline: one bar per session overlapping the window (the database says how many), on a lane
    per user or per node; zooming to a day and stepping back keep the view; user lanes link to the
    user's page."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    await page.goto("/timeline")
    assert await page.get_attribute('a[aria-current="page"]', "href") == demo_portal.base_url + "/timeline"
    zone = ZoneInfo("Asia/Taipei")
    today = dt.datetime.now(zone).date()

    def overlapping(first: dt.date, last: dt.date) -> tuple[int, int, int]:
        lo = dt.datetime.combine(first, dt.time(), zone).astimezone(dt.timezone.utc).replace(tzinfo=None)
        hi = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), zone).astimezone(dt.timezone.utc).replace(
            tzinfo=None)
        where = "started_at < ? AND (ended_at IS NULL OR ended_at > ?)"
        args = (hi.isoformat(" "), lo.isoformat(" "))
        return (demo_portal.sql(f"SELECT count(*) FROM container_sessions WHERE {where}", *args)[0][0],
                demo_portal.sql(f"SELECT count(DISTINCT username) FROM container_sessions WHERE {where}", *args)[0][0],
                demo_portal.sql(f"SELECT count(DISTINCT coalesce(node, '')) FROM container_sessions WHERE {where}",
                                *args)[0][0])

    sessions, users, nodes = overlapping(today - dt.timedelta(days=6), today)
    assert sessions > 0
    assert await page.locator("#timeline rect.span").count() == sessions
    assert await page.locator("#timeline g.lane").count() == users
    running = demo_portal.sql("SELECT count(*) FROM container_sessions WHERE ended_at IS NULL")[0][0]
    assert await page.locator("#timeline rect.span-running").count() == running
    await page.screenshot(path=str(screenshot_dir / "timeline-week-users.png"), full_page=True)

    await page.click("text=Per node")
    assert "by=node" in page.url
    assert await page.locator("#timeline g.lane").count() == nodes
    await page.click("text=Day")
    assert "span=day" in page.url
    day_sessions, _, _ = overlapping(today, today)
    assert await page.locator("#timeline rect.span").count() == day_sessions
    await page.screenshot(path=str(screenshot_dir / "timeline-day-nodes.png"), full_page=True)
    await page.click("#timeline-prev")
    yesterday = today - dt.timedelta(days=1)
    assert f"end={yesterday.isoformat()}" in page.url and "span=day" in page.url and "by=node" in page.url
    assert await page.locator("#timeline rect.span").count() == overlapping(yesterday, yesterday)[0]

    await page.goto("/timeline?by=user&span=month")
    user = await page.get_attribute("#timeline g.lane", "data-key")
    await page.click(f'#timeline g.lane[data-key="{user}"] a')
    assert page.url.endswith(f"/users/{user}")


async def test_department_months_and_gpu_allocation_charts(page, demo_portal, screenshot_dir):
    """Usage: cost by department per month (six stacked columns; this month's column adds up to the
    month's cost card) and GPUs allocated per hour over 48 hours (an hour a day ago equals the GPU
    requests of the sessions overlapping it, pro rata, from the database)."""
    import datetime as dt

    await page.goto("/usage")
    columns = await page.eval_on_selector_all("#dept-chart rect", "els => els.map(e => [e.dataset.column, "
                                              "e.dataset.series, Number(e.dataset.value)])")
    months = sorted({c for c, _, _ in columns})
    assert 1 <= len(months) <= 6 and len({s for _, s, _ in columns}) >= 2
    this_month = sum(v for c, _, v in columns if c == months[-1])
    card = float((await page.inner_text('[data-card="cost-month"] .value')).split()[0].replace(",", "").rstrip("TWD"))
    assert this_month == pytest.approx(card, abs=0.51)  # the card shows whole units from 100 on

    bars = await page.eval_on_selector_all("#allocation-chart rect", "els => els.map(e => [e.dataset.label, "
                                           "Number(e.dataset.value)])")
    assert len(bars) == 48 and sum(v for _, v in bars) > 0
    now = dt.datetime.now(dt.timezone.utc)
    start = now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=24)
    stop = start + dt.timedelta(hours=1)
    rows = demo_portal.sql("SELECT gpu_request, started_at, ended_at FROM container_sessions WHERE gpu_request > 0")
    expected = 0.0
    for gpus, started, ended in rows:
        a = dt.datetime.fromisoformat(started).replace(tzinfo=dt.timezone.utc)
        b = dt.datetime.fromisoformat(ended).replace(tzinfo=dt.timezone.utc) if ended else now
        overlap = (min(b, stop) - max(a, start)).total_seconds()
        expected += gpus * overlap / 3600 if overlap > 0 else 0
    assert bars[23][1] == pytest.approx(expected, abs=0.02), bars[23]
    await page.screenshot(path=str(screenshot_dir / "usage-department-months-gpu-allocation.png"), full_page=True)

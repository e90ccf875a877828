"""Report sync to a real MariaDB: upsert by pod uid, watermark, MySQL down, kill -9 mid-sync."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from testlib import AUTH, running_app, wait_for
from kube import A100, singleuser_pod

UTC = dt.timezone.utc


def _report(mariadb) -> dict[str, dict]:
    conn = mariadb.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() "
                        "AND table_name = 'pod_report'")
            if cur.fetchone()[0] == 0:
                return {}
            cur.execute("SELECT pod_uid, username, ended_at, end_reason, source_change_seq, gpu_hours, cost, "
                        "department FROM pod_report")
            cols = [d[0] for d in cur.description]
            return {row[0]: dict(zip(cols, row)) for row in cur.fetchall()}
    finally:
        conn.close()


async def _pg_rows(pg_server) -> dict[str, int]:
    engine = create_async_engine(pg_server.url())
    async with engine.connect() as conn:
        rows = dict((await conn.execute(text("SELECT pod_uid, change_seq FROM container_sessions"))).all())
    await engine.dispose()
    return rows


async def _watermark(pg_server) -> int:
    engine = create_async_engine(pg_server.url())
    async with engine.connect() as conn:
        mark = (await conn.execute(text("SELECT last_change_seq FROM sync_watermarks WHERE name = 'pod_report'"))
                ).scalar_one_or_none()
    await engine.dispose()
    return mark or 0


async def test_sync_creates_table_upserts_and_only_sends_changes(kube, settings_factory, clean_db, mysql_clean,
                                                                  pg_server):
    running = kube.start(singleuser_pod("alice", gpus=1, gpu_product=A100), singleuser_pod("bob"))
    uid_a, uid_b = (running[name]["metadata"]["uid"] for name in ("jupyter-alice", "jupyter-bob"))
    settings = settings_factory(mysql_url=mysql_clean.url)
    async with running_app(settings) as (app, client):
        await client.post("/api/users/import", files={"file": ("u.csv", b"username,department\nalice,Physics\n")},
                          headers=AUTH)
        await app.state.recorder.run_once()
        resp = await client.post("/api/pod-report-sync", headers=AUTH)
        assert resp.status_code == 200 and resp.json()["rows"] == 2
        report = _report(mysql_clean)
        assert set(report) == {uid_a, uid_b} and report[uid_a]["department"] == "Physics"
        assert report[uid_a]["ended_at"] is None
        # nothing changed -> nothing sent
        assert (await client.post("/api/pod-report-sync", headers=AUTH)).json()["rows"] == 0
        # bob's pod goes away: only the changed rows are sent (alice refreshed, bob ended)
        kube.stop_server("jupyter-bob")
        await app.state.recorder.run_once()
        body = (await client.post("/api/pod-report-sync", headers=AUTH)).json()
        assert body["rows"] == 2 and body["status"]["state"] == "ok"
        report = _report(mysql_clean)
        assert len(report) == 2 and report[uid_b]["end_reason"] == "pod_gone"
        pg = await _pg_rows(pg_server)
        assert {uid: r["source_change_seq"] for uid, r in report.items()} == pg
        assert await _watermark(pg_server) == max(pg.values())
        metrics = (await client.get("/metrics")).text
        assert "portal_report_sync_rows_total 4.0" in metrics or "portal_report_sync_rows_total" in metrics


async def test_sync_off_without_mysql(settings_factory, tx_sessionmaker):
    async with running_app(settings_factory(), sessionmaker=tx_sessionmaker) as (app, client):
        assert app.state.report_sync is None
        resp = await client.post("/api/pod-report-sync", headers=AUTH)
        assert resp.status_code == 409
        assert (await client.get("/api/pod-report-sync", headers=AUTH)).json()["enabled"] is False


async def test_frozen_mysql_never_hangs_sync_now(kube, settings_factory, clean_db, mysql_clean, pg_server):
    """MariaDB frozen (SIGSTOP: connections are accepted by the kernel, nothing answers): "Sync now"
    answers at once with the running state, every MySQL step is abandoned after mysql_timeout, the
    failure is shown, and once MariaDB resumes the next sync writes every row."""
    import time

    kube.start(*(singleuser_pod(f"u{i}") for i in range(3)))
    settings = settings_factory(mysql_url=mysql_clean.url, mysql_timeout=2.0)
    async with running_app(settings) as (app, client):
        await app.state.recorder.run_once()
        async with app.state.report_sync._lock:  # the scheduled sync running: no second one queued
            started = time.monotonic()
            resp = await client.post("/api/pod-report-sync", headers=AUTH)
            assert resp.status_code == 202 and time.monotonic() - started < 1.5, resp.text
        os.kill(mysql_clean.proc.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            first = await client.post("/api/pod-report-sync", params={"wait": 0}, headers=AUTH)
            again = await client.post("/api/pod-report-sync", params={"wait": 0}, headers=AUTH)
            assert time.monotonic() - started < 1.5, "Sync now waited for a frozen MySQL"
            for resp in (first, again):
                assert resp.status_code == 202 and resp.json()["rows"] is None, resp.text
                assert resp.json()["status"]["state"] == "running"
            assert 202 in {int(c) for c in app.openapi()["paths"]["/api/pod-report-sync"]["post"]["responses"]}
            status = (await client.get("/api/pod-report-sync", headers=AUTH)).json()
            assert status["state"] == "running"
            # the connection attempt is abandoned after 2 s: the state says so
            deadline = time.monotonic() + 15
            while status["state"] == "running":
                assert time.monotonic() < deadline, status
                await asyncio.sleep(0.2)
                status = (await client.get("/api/pod-report-sync", headers=AUTH)).json()
            assert status["state"] == "error" and "did not answer within 2 s" in status["last_error"], status
            # waiting for the result: a 503 within the timeout, not a hang
            started = time.monotonic()
            resp = await client.post("/api/pod-report-sync", params={"wait": 10}, headers=AUTH)
            assert resp.status_code == 503 and "did not answer within 2 s" in resp.json()["detail"], resp.text
            assert time.monotonic() - started < 6
            assert await _watermark(pg_server) == 0
        finally:
            os.kill(mysql_clean.proc.pid, signal.SIGCONT)
        resp = await client.post("/api/pod-report-sync", headers=AUTH)
        assert resp.status_code == 200 and resp.json()["rows"] == 3, resp.text
        assert len(_report(mysql_clean)) == 3


async def test_mysql_down_then_back_loses_nothing(kube, settings_factory, clean_db, mysql_clean, pg_server):
    kube.start(*(singleuser_pod(f"u{i}") for i in range(5)))
    settings = settings_factory(mysql_url=mysql_clean.url)
    async with running_app(settings) as (app, client):
        await app.state.recorder.run_once()
        mysql_clean.stop()
        try:
            resp = await client.post("/api/pod-report-sync", headers=AUTH)
            assert resp.status_code == 503
            status = (await client.get("/api/pod-report-sync", headers=AUTH)).json()
            assert status["state"] == "error" and status["last_error"]
            assert await _watermark(pg_server) == 0
            # the service keeps recording while MySQL is down
            kube.stop_servers(["jupyter-u3", "jupyter-u4"])
            assert (await app.state.recorder.run_once())["state"] == "ok"
        finally:
            mysql_clean.start()
        resp = await client.post("/api/pod-report-sync", headers=AUTH)
        assert resp.status_code == 200 and resp.json()["rows"] == 5
        report = _report(mysql_clean)
        assert {uid: r["source_change_seq"] for uid, r in report.items()} == await _pg_rows(pg_server)
        assert sum(r["end_reason"] == "pod_gone" for r in report.values()) == 2


def _sync_subprocess(settings_env: dict) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env.update(settings_env)
    env["PORTAL_ENV_FILE"] = "/nonexistent"
    return subprocess.Popen([sys.executable, "-m", "labhub_portal.cli", "report-sync"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


async def _seed_many(pg_server, n: int) -> None:
    engine = create_async_engine(pg_server.url())
    async with engine.begin() as conn:
        await conn.execute(text("""
INSERT INTO container_sessions (pod_uid, pod_name, server_name, namespace, username, gpu_request, gpu_limit,
    cpu_request, memory_request, started_at, first_seen_at, last_seen_at, ended_at, end_reason,
    unobserved_seconds, source, change_seq, created_at, updated_at)
SELECT 'uid-' || g, 'jupyter-u' || g, '', 'jhub', 'u' || (g % 50), g % 2, g % 2, 1, 2147483648,
       now() - interval '2 hours', now() - interval '2 hours', now() - interval '1 hour', now() - interval '1 hour',
       'pod_gone', 0, 'recorder', nextval('container_sessions_change_seq'), now(), now()
FROM generate_series(1, :n) AS g"""), {"n": n})
    await engine.dispose()


async def _kill_after_first_commit(pg_server, env: dict, committed) -> subprocess.Popen:
    """Deterministic crash point: a row lock on the watermark makes a sync subprocess block right
    after its first MySQL commit (``committed()`` says when it is there); SIGKILL it then."""
    engine = create_async_engine(pg_server.url())
    async with engine.connect() as blocker:
        await blocker.begin()
        await blocker.execute(text("SELECT * FROM sync_watermarks WHERE name = 'pod_report' FOR UPDATE"))
        proc = _sync_subprocess(env)
        try:
            assert wait_for(committed, timeout=30), proc.stderr
            # blocked in the watermark update after the MySQL commit of batch 1
            assert wait_for(lambda: proc.poll() is None, timeout=1)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
        await blocker.rollback()
    await engine.dispose()
    assert proc.returncode == -signal.SIGKILL
    return proc


async def test_kill_9_between_mysql_commit_and_watermark_then_rerun(clean_db, mysql_clean, pg_server):
    """Deterministic crash point: a row lock on the watermark makes the sync block right after its
    first MySQL commit; SIGKILL it there.  The rerun re-sends that batch: no duplicates, no gaps."""
    await _seed_many(pg_server, 600)
    engine = create_async_engine(pg_server.url())
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO sync_watermarks (name, last_change_seq, last_rows, last_status) "
                                "VALUES ('pod_report', 0, 0, 'never')"))
    env = {"PORTAL_DATABASE_URL": pg_server.url(), "PORTAL_MYSQL_URL": mysql_clean.url,
           "PORTAL_REPORT_SYNC_BATCH": "100"}
    await engine.dispose()
    await _kill_after_first_commit(pg_server, env, lambda: len(_report(mysql_clean)) == 100)
    assert await _watermark(pg_server) == 0  # never advanced past uncommitted work
    assert len(_report(mysql_clean)) == 100
    proc = _sync_subprocess(env)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "synced 600 rows" in out  # the first batch is sent again (idempotent upsert)
    report = _report(mysql_clean)
    pg = await _pg_rows(pg_server)
    assert len(report) == 600 and {u: r["source_change_seq"] for u, r in report.items()} == pg
    assert await _watermark(pg_server) == max(pg.values())


async def test_kill_9_at_random_points_then_rerun(clean_db, mysql_clean, pg_server):
    """Kill the sync subprocess mid-run (timing-based), change rows, rerun: MySQL equals PostgreSQL."""
    await _seed_many(pg_server, 3000)
    env = {"PORTAL_DATABASE_URL": pg_server.url(), "PORTAL_MYSQL_URL": mysql_clean.url,
           "PORTAL_REPORT_SYNC_BATCH": "50"}
    proc = _sync_subprocess(env)
    try:
        assert wait_for(lambda: len(_report(mysql_clean)) >= 200, timeout=60, interval=0.01), proc.stderr
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    partial = len(_report(mysql_clean))
    assert proc.returncode == -signal.SIGKILL and 200 <= partial < 3000
    mark = await _watermark(pg_server)
    assert mark <= max((r["source_change_seq"] for r in _report(mysql_clean).values()), default=0)
    # rows change while the sync is dead: they must be re-sent with the new values
    engine = create_async_engine(pg_server.url())
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE container_sessions SET end_reason = 'unobserved', "
                                "change_seq = nextval('container_sessions_change_seq') WHERE pod_uid IN ('uid-1', 'uid-2999')"))
    await engine.dispose()
    proc = _sync_subprocess(env)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    report = _report(mysql_clean)
    pg = await _pg_rows(pg_server)
    assert len(report) == 3000 and {u: r["source_change_seq"] for u, r in report.items()} == pg
    assert report["uid-1"]["end_reason"] == "unobserved" and report["uid-2999"]["end_reason"] == "unobserved"


async def test_import_history_with_zone(clean_db, pg_server, tmp_path):
    csv_file = tmp_path / "old.csv"
    csv_file.write_text("username,pod_name,started_at,ended_at,cpu_request,memory_request,gpu_request,gpu_model\n"
                        "alice,jupyter-alice,2025-03-01 09:00:00,2025-03-01 17:30:00,2,4Gi,1,A100\n"
                        "bob,jupyter-bob,2025-03-02 23:00,2025-03-03 01:00,1,1073741824,0,\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env.update(PORTAL_DATABASE_URL=pg_server.url(), PORTAL_ENV_FILE="/nonexistent")
    cmd = [sys.executable, "-m", "labhub_portal.cli", "import-history", "--zone", "Asia/Taipei", str(csv_file)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    assert "imported 2 sessions" in out
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    assert "imported 0 sessions, skipped 2" in out
    engine = create_async_engine(pg_server.url())
    async with engine.connect() as conn:
        rows = {r.username: r for r in (await conn.execute(text(
            "SELECT username, started_at, ended_at, memory_request, end_reason FROM container_sessions"))).all()}
    await engine.dispose()
    assert rows["alice"].started_at == dt.datetime(2025, 3, 1, 1, 0, tzinfo=UTC)  # 09:00 +08:00
    assert rows["alice"].memory_request == 4 * 2**30 and rows["alice"].end_reason == "imported"
    assert rows["bob"].ended_at == dt.datetime(2025, 3, 2, 17, 0, tzinfo=UTC)
    bad = tmp_path / "bad.csv"
    bad.write_text("username,pod_name,started_at,ended_at\nx,p,2025-01-01 10:00,2025-01-01 09:00\n"
                   "y,q,yesterday,2025-01-01 09:00\n")
    result = subprocess.run([*cmd[:-1], str(bad)], env=env, capture_output=True, text=True)
    assert result.returncode == 2 and "row 2" in result.stderr and "row 3" in result.stderr


async def test_rows_with_hostile_values_round_trip_exactly(clean_db, mysql_clean, pg_server):
    """The sync renders its own multi-row VALUES literals: quotes, backslashes, %s, NUL-free control
    characters, non-BMP text, a NULL display name and microsecond times must arrive unchanged (over two
    batches); splitting a batch into several statements by size is checked on the rendered SQL."""
    from labhub_portal.config import Settings
    from labhub_portal.db.engine import make_engine, make_sessionmaker
    from labhub_portal.reportsync.service import ReportSync, values_statements

    names = ["o'brien", "back\\slash", "per%scent %(x)s", "tab\tnew\nline\r\x1a", "\u6771\u4eac \U0001F680",
             "'); DROP TABLE pod_report; --"]
    engine = create_async_engine(pg_server.url())
    started = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    async with engine.begin() as conn:
        for i, name in enumerate(names):
            await conn.execute(text("""
INSERT INTO container_sessions (pod_uid, pod_name, server_name, namespace, username, image, gpu_request, gpu_limit,
    cpu_request, memory_request, started_at, first_seen_at, last_seen_at, ended_at, end_reason,
    unobserved_seconds, source, change_seq, created_at, updated_at)
VALUES (:uid, 'jupyter-x', :name, 'jhub', :name, :name, 0, 0, 0.25, 1073741824, :t, :t, :t, :t, 'pod_gone', 0,
        'recorder', nextval('container_sessions_change_seq'), now(), now())"""),
                               {"uid": f"uid-h{i}", "name": name, "t": started})
    await engine.dispose()
    settings = Settings(_env_file=None, database_url=pg_server.url(), mysql_url=mysql_clean.url, report_sync_batch=4,
                        token="test-portal-token-0123456789abcdef")
    portal_engine = make_engine(settings.database_url)
    sync = ReportSync(settings, make_sessionmaker(portal_engine))
    try:
        assert await sync.run_once() == len(names)  # two batches (4 + 2)
    finally:
        await portal_engine.dispose()
    conn = mysql_clean.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pod_uid, server_name, username, image, display_name, started_at, cpu_request "
                        "FROM pod_report ORDER BY pod_uid")
            got = cur.fetchall()
    finally:
        conn.close()
    assert [(r[1], r[2], r[3]) for r in got] == [(n, n, n) for n in names]
    assert all(r[4] is None and r[5] == started.replace(tzinfo=None) and float(r[6]) == 0.25 for r in got)

    # splitting by size keeps every row exactly once; unknown types and non-finite numbers are refused
    rows = [(f"u{i}", 1.5, None) for i in range(100)]
    sql = "INSERT INTO `t` (a, b, c) VALUES (%s, %s, %s)\nON DUPLICATE KEY UPDATE\n  b = VALUES(b)"
    parts = values_statements(sql, rows, lambda s: s, max_bytes=400)
    assert len(parts) > 1 and all(len(p) <= 400 for p in parts)
    assert all(p.startswith("INSERT INTO `t` (a, b, c) VALUES (")
               and p.endswith("\nON DUPLICATE KEY UPDATE\n  b = VALUES(b)") for p in parts)
    assert sum(p.count("'u") for p in parts) == 100
    with pytest.raises(ValueError):
        values_statements(sql, [("x", float("nan"), None)], lambda s: s)
    with pytest.raises(TypeError):
        values_statements(sql, [("x", object(), None)], lambda s: s)


async def test_projection_same_for_naive_and_aware_times(clean_db, pg_server):
    """PostgreSQL rows carry naive UTC times (timezone('UTC', ..) in the query), SQLite rows aware ones
    (column type): billing and the MySQL values must not depend on which."""
    from sqlalchemy import select

    from labhub_portal.config import Settings
    from labhub_portal.db.engine import make_engine, make_sessionmaker
    from labhub_portal.db.models import ContainerSession, User
    from labhub_portal.reportsync.service import ReportSync

    await _seed_many(pg_server, 20)
    engine = create_async_engine(pg_server.url())
    async with engine.begin() as conn:  # some sessions still open: billed up to now / last seen + gap
        await conn.execute(text("UPDATE container_sessions SET ended_at = NULL, end_reason = NULL, "
                                "last_seen_at = now() - interval '30 seconds' WHERE pod_uid IN ('uid-3', 'uid-4')"))
    await engine.dispose()
    settings = Settings(_env_file=None, database_url=pg_server.url(), token="test-portal-token-0123456789abcdef")
    portal_engine = make_engine(settings.database_url)
    sync = ReportSync(settings, make_sessionmaker(portal_engine))
    now = dt.datetime.now(UTC)
    cs = ContainerSession.__table__.c
    aware_query = (select(*[c for c in sync.batch_query(0).selected_columns if c.name not in
                            ("started_at", "last_seen_at", "ended_at")],
                          cs.started_at, cs.last_seen_at, cs.ended_at)
                   .select_from(ContainerSession.__table__).outerjoin(User, User.username == cs.username)
                   .order_by(cs.change_seq))
    try:
        async with make_sessionmaker(portal_engine)() as session:
            naive_rows = (await session.execute(sync.batch_query(0))).all()
            aware_rows = (await session.execute(aware_query)).all()
        departments = await sync.load_departments()
    finally:
        await portal_engine.dispose()
    assert naive_rows[0].started_at.tzinfo is None and aware_rows[0].started_at.tzinfo is not None
    naive = sync._project(naive_rows, now, departments)
    aware = sync._project(aware_rows, now, departments)
    assert len(naive) == 20 and naive == aware
    assert any(row[19] is None and row[21] > 0 for row in naive)  # open sessions billed


# Bills over time: (user, day of the month, hours, cpu cores, GPUs, GPU model, memory GiB).  Whole
# hours, whole cores and GiB, rates in cents: every cost is exact to the cent, so the report's rows
# (each rounded to the cent) and the portal's totals (rounded once) must agree exactly.
BILL_SESSIONS = [("alice", 2, 2, 1, 0, None, 1), ("alice", 9, 2, 1, 1, "A100", 1),
                 ("alice", 16, 2, 1, 0, None, 1), ("alice", 23, 2, 1, 1, "A100", 1),
                 ("bob", 3, 3, 2, 0, None, 2), ("bob", 10, 3, 2, 0, None, 2), ("bob", 17, 3, 2, 0, None, 2),
                 ("bob", 24, 3, 2, 0, None, 2), ("carol", 5, 1, 1, 0, None, 1), ("carol", 19, 1, 1, 0, None, 1)]


def _bill_uid(user: str, day: int) -> str:
    return f"bill-{user}-{day}"


def _report_rows(mariadb) -> dict[str, dict]:
    conn = mariadb.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pod_uid, department, display_name, cost, source_change_seq FROM pod_report")
            cols = [d[0] for d in cur.description]
            return {row[0]: dict(zip(cols, row)) for row in cur.fetchall()}
    finally:
        conn.close()


async def test_rates_and_departments_changed_mid_month_report_agrees_to_the_cent(clean_db, mysql_clean, pg_server,
                                                                                   settings_factory):
    """Sessions recorded before any department existed; departments and rates set (first ones: from
    the beginning); then, mid-month, new Physics rates from day 15 and bob moved to Physics from day
    20, carol assigned with a display name.  Exactly the sessions whose terms or name changed get a
    new change_seq; the report sync, killed (-9) after its first MySQL commit and rerun, writes them;
    after a portal restart every report row equals the portal's session and the per-department
    totals agree to the cent with each other and with costs computed here from the rules."""
    from decimal import Decimal

    base = dt.datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0) - dt.timedelta(days=40)
    base = base.replace(day=1)  # the first of a month at least a month ago
    day = lambda d: base + dt.timedelta(days=d - 1, hours=9)  # noqa: E731
    engine = create_async_engine(pg_server.url())
    async with engine.begin() as conn:  # recorded before any department existed: no terms
        for user, d, hours, cpu, gpus, model, mem in BILL_SESSIONS:
            await conn.execute(text("""
INSERT INTO container_sessions (pod_uid, pod_name, server_name, namespace, username, cpu_request, memory_request,
    gpu_request, gpu_limit, gpu_model, started_at, first_seen_at, last_seen_at, ended_at, end_reason,
    unobserved_seconds, source, change_seq, created_at, updated_at)
VALUES (:uid, :pod, '', 'jhub', :user, :cpu, :mem, :gpus, :gpus, :model, :start, :start, :end, :end, 'pod_gone',
        0, 'recorder', nextval('container_sessions_change_seq'), now(), now())"""),
                {"uid": _bill_uid(user, d), "pod": f"jupyter-{user}", "user": user, "cpu": cpu, "mem": mem * 2**30,
                 "gpus": gpus, "model": model, "start": day(d), "end": day(d) + dt.timedelta(hours=hours)})
    await engine.dispose()

    async def change_seqs() -> dict[str, int]:
        return {uid: seq for uid, seq in (await _pg_rows(pg_server)).items() if uid.startswith("bill-")}

    settings = settings_factory(mysql_url=mysql_clean.url, default_cpu_core_hour_rate=1, default_gpu_hour_rate=10,
                                default_memory_gib_hour_rate=0)
    physics = {"cpu_core_hour_rate": "2.00", "gpu_hour_rate": "50", "memory_gib_hour_rate": "0.10",
               "gpu_model_rates": {"A100": "80"}}
    async with running_app(settings) as (app, client):
        for name, rates in (("Physics", physics), ("Chemistry", {"cpu_core_hour_rate": "1.50",
                                                                 "memory_gib_hour_rate": "0.20"})):
            resp = await client.put(f"/api/departments/{name}", json=rates, headers=AUTH)
            assert resp.status_code == 200, resp.text
        resp = await client.post("/api/users/import", headers=AUTH, files={"file": (
            "u.csv", b"username,department,display_name\nalice,Physics,Alice\nbob,Chemistry,Bob\n")})
        assert resp.status_code == 200 and resp.json()["sessions_rebilled"] == 8, resp.text  # from the beginning
        assert (await client.post("/api/pod-report-sync", headers=AUTH)).json()["rows"] == 10
        report = _report_rows(mysql_clean)
        assert report[_bill_uid("alice", 23)]["cost"] == Decimal("164.20")  # 2 h x (1 x 2.00 + 80 + 1 x 0.10)
        assert report[_bill_uid("bob", 24)]["department"] == "Chemistry"
        assert report[_bill_uid("carol", 5)]["department"] is None
        before = await change_seqs()

        # a change may not take effect in the future: refused, naming the field, nothing written
        future = (dt.datetime.now(UTC) + dt.timedelta(days=1)).isoformat()
        resp = await client.put("/api/departments/Physics", json={**physics, "cpu_core_hour_rate": "9",
                                                                  "effective_from": future}, headers=AUTH)
        assert resp.status_code == 422 and resp.json()["detail"][0]["field"] == "effective_from", resp.text
        resp = await client.post("/api/users/import", params={"effective_from": future}, headers=AUTH,
                                 files={"file": ("u.csv", b"username,department\nbob,Physics\n")})
        assert resp.status_code == 422 and resp.json()["detail"][0]["field"] == "effective_from", resp.text
        assert await change_seqs() == before

        # mid-month: Physics' CPU and A100 rates change from day 15 on; bob moves to Physics from day 20;
        # carol gets her first department (from the beginning) and a display name
        resp = await client.put("/api/departments/Physics", headers=AUTH, json={
            **physics, "cpu_core_hour_rate": "3.00", "gpu_model_rates": {"A100": "90"},
            "effective_from": day(15).replace(hour=0).isoformat()})
        assert resp.status_code == 200, resp.text
        resp = await client.post("/api/users/import", params={"effective_from": day(20).replace(hour=0).isoformat()},
                                 headers=AUTH, files={"file": ("u.csv", b"username,department\nbob,Physics\n")})
        assert resp.status_code == 200 and resp.json()["sessions_rebilled"] == 1, resp.text
        resp = await client.post("/api/users/import", headers=AUTH,
                                 files={"file": ("u.csv", b"username,department,display_name\ncarol,Chemistry,Carol\n")})
        assert resp.status_code == 200 and resp.json()["sessions_rebilled"] == 2, resp.text
        # the same file again changes nothing
        resp = await client.post("/api/users/import", headers=AUTH,
                                 files={"file": ("u.csv", b"username,department,display_name\ncarol,Chemistry,Carol\n")})
        assert resp.json()["sessions_rebilled"] == 0, resp.text
    after = await change_seqs()
    bumped = {uid for uid in after if after[uid] != before[uid]}
    assert bumped == {_bill_uid("alice", 16), _bill_uid("alice", 23), _bill_uid("bob", 24), _bill_uid("carol", 5),
                      _bill_uid("carol", 19)}

    # the sync is killed right after its first MySQL commit (the watermark row locked), then rerun
    env = {"PORTAL_DATABASE_URL": pg_server.url(), "PORTAL_MYSQL_URL": mysql_clean.url,
           "PORTAL_REPORT_SYNC_BATCH": "2", "PORTAL_DEFAULT_CPU_CORE_HOUR_RATE": "1",
           "PORTAL_DEFAULT_GPU_HOUR_RATE": "10", "PORTAL_DEFAULT_MEMORY_GIB_HOUR_RATE": "0"}
    await _kill_after_first_commit(pg_server, env, lambda: sum(
        r["source_change_seq"] != before[u] for u, r in _report_rows(mysql_clean).items()) == 2)
    proc = _sync_subprocess(env)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "synced 5 rows" in out, (out, err)

    # costs from the rules, computed here: terms at each session's start
    def rates(user: str, d: int) -> tuple[str | None, Decimal, Decimal, Decimal]:
        if user == "alice" or (user == "bob" and d >= 20):
            return ("Physics", Decimal("3.00") if d >= 15 else Decimal("2.00"),
                    Decimal("90") if d >= 15 else Decimal("80"), Decimal("0.10"))
        return "Chemistry", Decimal("1.50"), Decimal("10"), Decimal("0.20")  # bob before day 20, carol

    expected = {}
    for user, d, hours, cpu, gpus, _model, mem in BILL_SESSIONS:
        dept, cpu_rate, gpu_rate, mem_rate = rates(user, d)
        expected[_bill_uid(user, d)] = (dept, hours * (cpu * cpu_rate + gpus * gpu_rate + mem * mem_rate))
    totals: dict[str, Decimal] = {}
    for dept, cost in expected.values():
        totals[dept] = totals.get(dept, Decimal(0)) + cost
    assert totals == {"Physics": Decimal("379.40"), "Chemistry": Decimal("34.00")}

    async with running_app(settings) as (_app, client):  # a restarted portal
        report = _report_rows(mysql_clean)
        assert {u: (r["department"], r["cost"]) for u, r in report.items()} == expected
        assert report[_bill_uid("carol", 5)]["display_name"] == "Carol"
        assert {u: r["source_change_seq"] for u, r in report.items()} == await change_seqs()
        page = (await client.get("/api/sessions", params={"from": base.isoformat(), "page_size": 100},
                                 headers=AUTH)).json()
        portal = {item["pod_uid"]: (item["department"], Decimal(str(item["cost"]))) for item in page["items"]}
        assert portal == expected
        stats = (await client.get("/api/stats", headers=AUTH, params={
            "group_by": "department", "from": base.isoformat(), "to": (base + dt.timedelta(days=31)).isoformat()}))
        assert stats.status_code == 200, stats.text
        got = {row["key"]: Decimal(str(row["cost"])) for row in stats.json()["rows"]}
        assert got == totals

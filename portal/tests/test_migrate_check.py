"""`labhub-portal migrate --check` against a real PostgreSQL (tests/servers.py): the command the
portal role runs to decide, and to predict in check mode, whether the schema must move.

The CLI runs as a subprocess with its settings in an env file (PORTAL_ENV_FILE), as the role runs it,
so exit codes and output are the real ones.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from labhub_portal.cli import MIGRATE_PENDING
from labhub_portal.db.migrate import MigrationError, downgrade, status, upgrade

FIRST = "0001_initial"
HEAD = "0004_gpu_idle_warnings"
ALL = [FIRST, "0002_bills_over_time", "0003_usage_rollups", HEAD]


@pytest.fixture
def fresh_db(pg_server, request):
    name = "mc_" + request.node.name.lower().replace("[", "_").replace("]", "")[:40]
    pg_server.createdb(name)
    return pg_server.url(name)


def run_cli(tmp_path, url, *args):
    env_file = tmp_path / "portal.env"
    env_file.write_text(f"PORTAL_DATABASE_URL={url}\nPORTAL_TOKEN=migrate-check-token-0123456789\n"
                        "PORTAL_BIND_HOST=127.0.0.1\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env["PORTAL_ENV_FILE"] = str(env_file)
    return subprocess.run([sys.executable, "-m", "labhub_portal.cli", "migrate", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


async def version_rows(url):
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            exists = (await conn.execute(text("SELECT to_regclass('public.alembic_version') IS NOT NULL"))).scalar()
            if not exists:
                return None
            return list((await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars())
    finally:
        await engine.dispose()


async def test_check_on_empty_database_lists_pending_and_changes_nothing(fresh_db, tmp_path):
    result = await asyncio.to_thread(run_cli, tmp_path, fresh_db, "--check")
    assert result.returncode == MIGRATE_PENDING == 3, result.stderr
    assert result.stdout.strip() == f"pending: {' '.join(ALL)} (database at base)"
    assert await version_rows(fresh_db) is None  # read only: not even alembic_version was created

    result = await asyncio.to_thread(run_cli, tmp_path, fresh_db, "--check", "--json")
    assert result.returncode == MIGRATE_PENDING, result.stderr
    assert json.loads(result.stdout) == {"current": [], "target": [HEAD], "pending": ALL, "up_to_date": False}


async def test_check_after_upgrade_is_up_to_date(fresh_db, tmp_path):
    result = await asyncio.to_thread(run_cli, tmp_path, fresh_db)  # the real upgrade, same entry point
    assert result.returncode == 0 and "migrated to head" in result.stdout, result.stderr
    assert await version_rows(fresh_db) == [HEAD]

    result = await asyncio.to_thread(run_cli, tmp_path, fresh_db, "--check")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"up to date at {HEAD}"
    result = await asyncio.to_thread(run_cli, tmp_path, fresh_db, "--json")  # --json implies --check
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"current": [HEAD], "target": [HEAD], "pending": [], "up_to_date": True}


async def test_check_after_downgrade_to_base_is_pending_again(fresh_db):
    await asyncio.to_thread(upgrade, fresh_db)
    await asyncio.to_thread(downgrade, fresh_db, "base")
    assert await version_rows(fresh_db) == []  # table kept, no row
    state = status(fresh_db)  # from inside a running loop: runs in a helper thread
    assert state.current == () and state.pending == tuple(ALL) and not state.up_to_date
    assert status(fresh_db, "base").up_to_date  # nothing to apply to reach base


async def test_unknown_revision_in_database_is_an_error(fresh_db, tmp_path):
    await asyncio.to_thread(upgrade, fresh_db)
    engine = create_async_engine(fresh_db)
    async with engine.begin() as conn:  # a database migrated by a newer portal than this package
        await conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    await engine.dispose()
    with pytest.raises(MigrationError, match="9999_from_the_future"):
        status(fresh_db)
    result = await asyncio.to_thread(run_cli, tmp_path, fresh_db, "--check")
    assert result.returncode == 2 and "error: cannot plan an upgrade" in result.stderr
    assert result.stdout == ""


async def test_upgrade_to_bills_over_time_keeps_every_bill(fresh_db):
    """0002 gives every recorded session the terms it was billed with under 0001 (its user's current
    department and that department's rates, the GPU rate per model), so no bill and no report row
    changes; users become members and rates periods from the beginning."""
    await asyncio.to_thread(upgrade, fresh_db, FIRST)
    engine = create_async_engine(fresh_db)
    async with engine.begin() as conn:
        await conn.execute(text("""
INSERT INTO departments (id, name, cpu_core_hour_rate, gpu_hour_rate, memory_gib_hour_rate, gpu_model_rates,
                         created_at, updated_at)
VALUES (1, 'Physics', 2, 50, NULL, '{"A100": "80", "T4": "bad"}', now(), now()),
       (2, 'Chemistry', NULL, NULL, 0.5, '{}', now(), now())"""))
        await conn.execute(text("""
INSERT INTO users (username, display_name, department_id, created_at, updated_at)
VALUES ('alice', 'Alice', 1, now(), now()), ('bob', NULL, 2, now(), now()), ('carol', NULL, NULL, now(), now())
"""))
        for i, (user, model) in enumerate([("alice", "A100"), ("alice", "T4"), ("alice", None), ("bob", "A100"),
                                           ("carol", None), ("dave", "A100")]):
            await conn.execute(text("""
INSERT INTO container_sessions (pod_uid, pod_name, server_name, namespace, username, gpu_request, gpu_limit,
    gpu_model, started_at, first_seen_at, last_seen_at, change_seq, created_at, updated_at)
VALUES (:uid, 'jupyter', '', 'jhub', :user, 1, 1, :model, now(), now(), now(), :seq, now(), now())"""),
                               {"uid": f"u{i}", "user": user, "model": model, "seq": i + 1})
    await engine.dispose()
    await asyncio.to_thread(upgrade, fresh_db)
    engine = create_async_engine(fresh_db)
    async with engine.connect() as conn:
        terms = {row[0]: tuple(None if v is None else float(v) for v in row[1:]) for row in await conn.execute(text(
            "SELECT pod_uid, department_id, cpu_core_hour_rate, gpu_hour_rate, memory_gib_hour_rate, change_seq "
            "FROM container_sessions"))}
        members = sorted(tuple(r) for r in await conn.execute(text(
            "SELECT username, department_id, valid_from = '1970-01-01T00:00:00Z' FROM department_memberships")))
        periods = sorted(tuple(r) for r in await conn.execute(text(
            "SELECT department_id, effective_from = '1970-01-01T00:00:00Z' FROM department_rate_periods")))
    await engine.dispose()
    assert terms == {"u0": (1, 2, 80, None, 1), "u1": (1, 2, 50, None, 2),  # a malformed model rate: the GPU rate
                     "u2": (1, 2, 50, None, 3), "u3": (2, None, None, 0.5, 4),
                     "u4": (None, None, None, None, 5), "u5": (None, None, None, None, 6)}
    assert members == [("alice", 1, True), ("bob", 2, True)]
    assert periods == [(1, True), (2, True)]

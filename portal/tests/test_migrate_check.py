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

HEAD = "0001_initial"


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
    assert result.stdout.strip() == f"pending: {HEAD} (database at base)"
    assert await version_rows(fresh_db) is None  # read only: not even alembic_version was created

    result = await asyncio.to_thread(run_cli, tmp_path, fresh_db, "--check", "--json")
    assert result.returncode == MIGRATE_PENDING, result.stderr
    assert json.loads(result.stdout) == {"current": [], "target": [HEAD], "pending": [HEAD], "up_to_date": False}


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
    assert state.current == () and state.pending == (HEAD,) and not state.up_to_date
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

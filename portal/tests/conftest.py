"""Fixtures: throwaway PostgreSQL and MariaDB servers (real ones, started here), the fake
Kubernetes API and fake JupyterHub (test fakes, see fakes.py), and a running portal app.

Isolation: the schema is migrated once per test session (alembic, from empty).  Tests that only
go through one connection use ``tx_sessionmaker`` (one outer transaction, rolled back at the end;
the code under test commits to savepoints).  Tests that need real commits across connections or
processes (report sync, server restarts, kill -9) use ``clean_db`` (TRUNCATE before the test).
"""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from fakes import FakeHub, FakeKubernetes
from labhub_portal.db.migrate import upgrade
from servers import MariaDBServer, PostgresServer
from testlib import make_settings



@pytest.fixture(scope="session")
def pg_server():
    server = PostgresServer()
    server.start()
    server.createdb("portal")
    upgrade(server.url())  # migrate once per test session, from an empty database
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def mariadb_server():
    server = MariaDBServer()
    server.start()
    server.bootstrap()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def fake_kube(tmp_path_factory):
    fake = FakeKubernetes().start()
    fake.kubeconfig = fake.write_kubeconfig(tmp_path_factory.mktemp("kube") / "config")
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def fake_hub():
    fake = FakeHub().start()
    yield fake
    fake.stop()


@pytest.fixture
def kube(fake_kube):
    fake_kube.reset()
    yield fake_kube
    fake_kube.reset()


@pytest.fixture
def hub(fake_hub, kube):
    fake_hub.reset()
    fake_hub.kube = kube
    yield fake_hub
    fake_hub.kube = None


TABLES = ("audit_log", "container_sessions", "users", "departments", "sync_watermarks")


@pytest.fixture
async def clean_db(pg_server):
    engine = create_async_engine(pg_server.url())
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    await engine.dispose()
    yield pg_server


@pytest.fixture
async def tx_sessionmaker(pg_server):
    """A session factory on one connection inside a transaction rolled back after the test."""
    engine = create_async_engine(pg_server.url())
    async with engine.connect() as conn:
        outer = await conn.begin()
        yield async_sessionmaker(bind=conn, expire_on_commit=False, join_transaction_mode="create_savepoint")
        await outer.rollback()
    await engine.dispose()


@pytest.fixture
def mysql_clean(mariadb_server):
    if mariadb_server.proc is None:
        mariadb_server.start()
    conn = mariadb_server.connect()
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS pod_report")
    conn.close()
    return mariadb_server


@pytest.fixture
def settings_factory(pg_server, fake_kube):
    def factory(**overrides):
        overrides.setdefault("kubeconfig", fake_kube.kubeconfig)
        return make_settings(pg_server, **overrides)
    return factory



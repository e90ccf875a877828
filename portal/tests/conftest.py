"""Fixtures: throwaway PostgreSQL and MariaDB servers and a REAL Kubernetes control plane (real ones,
started here), the fake JupyterHub (a test fake, see fakes.py), and a running portal app.

Kubernetes (kube.py): one control plane per session, started in the background as soon as the
collection shows a test needs it; those tests run after the others, so the start-up overlaps them
(and the database start-up). The portal talks to it as its
own ServiceAccount with the ``portal`` role's RBAC and kubeconfig. ``kube`` gives a test its own
hub namespace (unique name; the portal's Role is bound there) and removes it afterwards;
``kube_faults`` puts the fault injector between the portal and the API server.

Isolation: the schema is migrated once per test session (alembic, from empty).  Tests that only
go through one connection use ``tx_sessionmaker`` (one outer transaction, rolled back at the end;
the code under test commits to savepoints).  Tests that need real commits across connections or
processes (report sync, server restarts, kill -9) use ``clean_db`` (TRUNCATE before the test).
"""

from __future__ import annotations

import tempfile
import threading
from concurrent.futures import Future
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from fakes import FakeHub
from kube import FaultProxy, KubeCluster
from labhub_portal.db.migrate import upgrade
from prom import Exporter, Prometheus
from servers import MariaDBServer, PostgresServer
from testlib import make_settings

KUBE_FIXTURE = "kube_cluster"
_cluster: Future[KubeCluster] | None = None


def _start_cluster() -> None:
    global _cluster
    _cluster = Future()
    workdir = Path(tempfile.mkdtemp(prefix="labhub-portal-kube-"))

    def run() -> None:
        assert _cluster is not None
        cluster = KubeCluster(workdir)
        try:
            _cluster.set_result(cluster.start())
        except BaseException as exc:  # reported by the fixture, in the first test that needs it
            cluster.stop()
            _cluster.set_exception(exc)

    threading.Thread(target=run, name="kube-cluster-start", daemon=True).start()


def pytest_configure(config):
    config.addinivalue_line("markers", "kube: talks to the real Kubernetes control plane (tests/harness/kube)")


def pytest_collection_modifyitems(config, items):
    """Mark the tests that use the control plane and run them after the others (stable order
    otherwise), so its start-up in the background overlaps the tests that do not need it."""
    for item in items:
        if KUBE_FIXTURE in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kube)
    items.sort(key=lambda item: KUBE_FIXTURE in getattr(item, "fixturenames", ()))


def pytest_collection_finish(session):
    if session.config.getoption("collectonly"):
        return
    if any(KUBE_FIXTURE in getattr(item, "fixturenames", ()) for item in session.items):
        _start_cluster()


def pytest_sessionfinish(session, exitstatus):
    if _cluster is None:
        return
    try:
        cluster = _cluster.result(timeout=900)  # still starting (e.g. interrupted early): stop it all the same
    except BaseException:  # the start failed and stopped what it had started
        return
    cluster.stop()


@pytest.fixture(scope="session")
def kube_cluster() -> KubeCluster:
    if _cluster is None:  # collected without it (e.g. a plugin added the test late): start now
        _start_cluster()
    assert _cluster is not None
    # The portal imports its Kubernetes client on first use; import it here, outside any timeout a test sets.
    import kubernetes_asyncio.client
    import kubernetes_asyncio.config  # noqa: F401
    return _cluster.result(timeout=900)  # a cold Go build of the control plane takes minutes


@pytest.fixture
def kube(kube_cluster):
    """This test's own hub namespace in the real cluster (the portal's Role bound there; its pods are
    deleted afterwards)."""
    namespace = kube_cluster.namespace()
    yield namespace
    namespace.cleanup()


@pytest.fixture
def kube_faults(kube_cluster, kube, tmp_path):
    """The test fault injector between the portal and the real API server (settings_factory uses it)."""
    proxy = FaultProxy(kube_cluster, kube.identity, tmp_path).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def exporter():
    """The SYNTHETIC DCGM exporter of tests/prom.py (set ``exporter.text``)."""
    server = Exporter().start()
    yield server
    server.stop()


@pytest.fixture
def prometheus(exporter, tmp_path):
    """A REAL Prometheus (Debian's) scraping ``exporter`` every second (tests/prom.py)."""
    prom = Prometheus(tmp_path / "prometheus", f"127.0.0.1:{exporter.port}")
    yield prom
    prom.stop()


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
def fake_hub():
    fake = FakeHub().start()
    yield fake
    fake.stop()


@pytest.fixture
def hub(fake_hub):
    fake_hub.reset()
    yield fake_hub


TABLES = ("audit_log", "container_sessions", "usage_rollups", "users", "departments", "sync_watermarks",
          "gpu_idle_warnings")


@pytest.fixture
async def clean_db(pg_server):
    """Empty tables before the test, and after it: what it committed must not reach the tests that
    count rows inside their own rolled-back transaction (tx_sessionmaker)."""
    async def truncate() -> None:
        engine = create_async_engine(pg_server.url())
        async with engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
        await engine.dispose()

    await truncate()
    yield pg_server
    await truncate()


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
def settings_factory(pg_server, request):
    """Settings on the test database. With ``kube``: the real cluster as the portal's ServiceAccount,
    the hub namespace the test's own (through the fault injector with ``kube_faults``); without it
    no cluster is configured (the test does not touch Kubernetes; the recorder is off)."""
    kube = request.getfixturevalue("kube") if "kube" in request.fixturenames else None
    faults = request.getfixturevalue("kube_faults") if "kube_faults" in request.fixturenames else None

    def factory(**overrides):
        if kube is not None:
            overrides.setdefault("kubeconfig", faults.kubeconfig if faults is not None else kube.kubeconfig)
            overrides.setdefault("hub_namespace", kube.name)
        else:
            overrides.setdefault("kubeconfig", None)
        return make_settings(pg_server, **overrides)
    return factory

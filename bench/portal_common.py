"""Shared helpers for the portal benchmarks (run with portal/.venv/bin/python bench/portal_<x>.py).

They start the same throwaway PostgreSQL / MariaDB servers and the fake Kubernetes API (a test
fake) as the portal tests (portal/tests/servers.py, portal/tests/fakes.py)."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "portal" / "tests"))
sys.path.insert(0, str(REPO / "portal" / "src"))

from fakes import FakeKubernetes, make_node, make_pod  # noqa: E402
from servers import MariaDBServer, PostgresServer  # noqa: E402

TOKEN = "bench-portal-token-0123456789abcdef"


def start_postgres() -> PostgresServer:
    from labhub_portal.db.migrate import upgrade

    server = PostgresServer()
    server.start()
    server.createdb("portal")
    upgrade(server.url())
    return server


def start_mariadb() -> MariaDBServer:
    server = MariaDBServer()
    server.start()
    server.bootstrap()
    return server


def start_fake_kube(tmp: Path, pods: int, nodes: int = 20) -> FakeKubernetes:
    kube = FakeKubernetes().start()
    kube.kubeconfig = kube.write_kubeconfig(tmp / "kubeconfig")
    kube.nodes = [make_node(f"node-{n}", "NVIDIA-A100-SXM4-80GB" if n % 2 else None) for n in range(nodes)]
    kube.pods = [make_pod(f"jupyter-user{i}", f"user{i}", node=f"node-{i % nodes}", gpu=(i % 4 == 0) * 1,
                          cpu="2", memory="8Gi") for i in range(pods)]
    return kube


def settings(pg: PostgresServer, **overrides):
    from labhub_portal.config import Settings

    values = dict(database_url=pg.url(), token=TOKEN, hub_namespace="jhub", kube_timeout=30.0)
    values.update(overrides)
    return Settings(_env_file=None, **values)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(values: list[float]) -> str:
    return f"p50 {pct(values, 50):.1f} ms, p95 {pct(values, 95):.1f} ms, mean {statistics.mean(values):.1f} ms"

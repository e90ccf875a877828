"""Shared helpers for the portal benchmarks (run with portal/.venv/bin/python bench/portal_<x>.py).

They start the same throwaway PostgreSQL / MariaDB servers and the same real Kubernetes control plane
(KWOK nodes, real pods, the portal role's ServiceAccount) as the portal tests (portal/tests/servers.py,
portal/tests/kube.py)."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "portal" / "tests"))
sys.path.insert(0, str(REPO / "portal" / "src"))

from kube import KubeCluster, Namespace, NodeSpec, singleuser_pod  # noqa: E402
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


A100 = "NVIDIA-A100-SXM4-80GB"


def bench_nodes(count: int) -> list[NodeSpec]:
    """``count`` KWOK nodes, every other one with 8 A100s shared 8 ways (device plugin time-slicing,
    64 schedulable nvidia.com/gpu), big enough for a few hundred 2-core user pods each."""
    return [NodeSpec(f"node-{n}", cpu="512", memory="4Ti", gpus=8, product=A100, family="ampere",
                     gpu_memory_mib=81920, compute=(8, 0), replicas=8) if n % 2 else
            NodeSpec(f"node-{n}", cpu="512", memory="4Ti") for n in range(count)]


def start_cluster(tmp: Path, pods: int, nodes: int = 20) -> tuple[KubeCluster, Namespace]:
    """The real control plane with ``pods`` running single-user pods (every fourth with one GPU) in a
    hub namespace the portal's ServiceAccount may read; returns the cluster and that namespace."""
    cluster = KubeCluster(tmp / "kube", nodes=bench_nodes(nodes), pods_per_node=max(110, 2 * pods // nodes))
    cluster.start()
    try:
        ns = cluster.namespace()
        gpu = [i % 4 == 0 for i in range(pods)]
        ns.create_pods([singleuser_pod(f"user{i}", gpus=int(gpu[i]), gpu_product=A100 if gpu[i] else None,
                                       cpu_guarantee="2", cpu_limit="2", mem_guarantee="8Gi", mem_limit="8Gi")
                        for i in range(pods)], workers=8)
        ns.wait_count(pods, timeout=900)
    except BaseException:
        cluster.stop()
        raise
    return cluster, ns


def settings(pg: PostgresServer, **overrides):
    from labhub_portal.config import Settings

    values: dict[str, Any] = dict(database_url=pg.url(), token=TOKEN, hub_namespace="jhub", kube_timeout=30.0)
    values.update(overrides)
    return Settings(_env_file=None, **values)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(values: list[float]) -> str:
    return f"p50 {pct(values, 50):.1f} ms, p95 {pct(values, 95):.1f} ms, mean {statistics.mean(values):.1f} ms"


async def start_portal(env_extra: dict[str, str]) -> tuple[Any, str]:
    """`labhub-portal serve` (one uvicorn worker) in a subprocess with the PORTAL_* settings given
    (the caller's own PORTAL_* dropped, no env file); returns the process and its URL once /readyz
    answers 200."""
    import asyncio
    import os
    import subprocess

    import httpx

    from servers import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env.update(PORTAL_TOKEN=TOKEN, PORTAL_ENV_FILE="/nonexistent", PORTAL_LOG_LEVEL="warning", **env_extra)
    proc = subprocess.Popen([sys.executable, "-m", "labhub_portal.cli", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.1)
    proc.terminate()
    raise RuntimeError(proc.stderr.read().decode() if proc.stderr and proc.poll() is not None
                       else "portal did not become ready")

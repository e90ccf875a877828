"""Requests/s of /api/pods and /api/stats on loopback: `labhub-portal serve` (uvicorn, one worker)
in a subprocess on real PostgreSQL with 2,000 live pods (BENCH_PODS) in the real Kubernetes control plane of the
portal tests (portal/tests/kube.py: KWOK nodes, the portal role's ServiceAccount) and 20,000 recorded
sessions; an httpx client with 8 concurrent connections for 10 s per endpoint.
Baselines: /healthz on the same server (the framework floor: no database, no cluster) and, for
/api/pods, the same pod list fetched by the same client straight from the API server with the
portal's token (what each /api/pods cost before the pod watch: the portal now answers from the
watch's memory, measured once the watch is in sync).
Client, server, API server, etcd and PostgreSQL share the machine's 2 cores."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path

from portal_common import TOKEN, start_cluster, start_portal, start_postgres


CONCURRENCY = 8
SECONDS = 10.0
PODS = int(os.environ.get("BENCH_PODS", "2000"))


async def load(url: str, path: str, headers: dict | None = None, verify: str | bool = True) -> tuple[float, float]:
    import httpx

    count = 0
    errors = 0
    latencies: list[float] = []
    deadline = time.perf_counter() + SECONDS
    limits = httpx.Limits(max_connections=CONCURRENCY)
    headers = {"Authorization": f"Bearer {TOKEN}"} if headers is None else headers
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits,
                                 timeout=30, verify=verify) as client:
        async def worker():
            nonlocal count, errors
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                resp = await client.get(path)
                latencies.append((time.perf_counter() - t) * 1000)
                if resp.status_code == 200:
                    count += 1
                else:
                    errors += 1
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - start
    assert errors == 0, f"{errors} errors on {path}"
    latencies.sort()
    return count / elapsed, latencies[len(latencies) // 2]


async def main() -> None:
    from sqlalchemy import text

    from labhub_portal.db.engine import make_engine

    tmp = Path(tempfile.mkdtemp(prefix="bench-http-"))
    pg = start_postgres()
    cluster, kube = start_cluster(tmp, PODS)
    proc = None
    try:
        engine = make_engine(pg.url())
        async with engine.begin() as conn:
            await conn.execute(text("""
INSERT INTO container_sessions (pod_uid, pod_name, server_name, namespace, username, cpu_request, memory_request,
    gpu_request, gpu_limit, started_at, first_seen_at, last_seen_at, ended_at, end_reason, unobserved_seconds,
    source, change_seq, created_at, updated_at)
SELECT 'uid-' || g, 'jupyter-u' || g, '', 'jhub', 'user' || (g % 300), 2, 4294967296, g % 2, g % 2,
       now() - (g % 30) * interval '1 day' - interval '2 hours', now() - (g % 30) * interval '1 day' - interval '2 hours',
       now() - (g % 30) * interval '1 day', now() - (g % 30) * interval '1 day', 'pod_gone', 0, 'recorder',
       nextval('container_sessions_change_seq'), now(), now()
FROM generate_series(1, 20000) g"""))
        await engine.dispose()
        proc, url = await start_portal({"PORTAL_DATABASE_URL": pg.url(), "PORTAL_KUBECONFIG": kube.kubeconfig,
                                        "PORTAL_HUB_NAMESPACE": kube.name, "PORTAL_RECORD_INTERVAL": "30"})
        import httpx
        for _ in range(200):  # the pod watch in sync (else /api/pods lists per request)
            status = httpx.get(f"{url}/api/status", headers={"Authorization": f"Bearer {TOKEN}"}).json()
            if (status.get("pod_watch") or {}).get("synced"):
                break
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError("the pod watch did not get in sync")
        results = {}
        for path in ("/healthz", "/api/pods", "/api/stats?group_by=user", "/api/stats?group_by=day"):
            results[path] = await load(url, path)
        raw_path = f"/api/v1/namespaces/{kube.name}/pods?labelSelector=component%3Dsingleuser-server"
        raw_rps, raw_p50 = await load(cluster.plane.server, raw_path,
                                      headers={"Authorization": f"Bearer {kube.identity.token}"},
                                      verify=str(cluster.plane.pki / "ca.crt"))
        base = results["/healthz"][0]
        for path, (rps, p50) in results.items():
            print(f"{path}: {rps:,.0f} req/s (median latency {p50:.1f} ms, {CONCURRENCY} concurrent) "
                  f"= {rps / base:.2f} of /healthz")
        print(f"raw pod list from the API server: {raw_rps:,.0f} req/s (median latency {raw_p50:.1f} ms); "
              f"/api/pods = {results['/api/pods'][0] / raw_rps:.2f} of it")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(20)
        cluster.stop()
        pg.destroy()


if __name__ == "__main__":
    asyncio.run(main())

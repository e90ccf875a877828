"""CSV export of 1,000,000 sessions (issue 13 item 4): `labhub-portal serve` (uvicorn, one worker) in a
subprocess on real PostgreSQL; one client streams GET /api/sessions?format=csv to the end.

Measured: rows received (every one), the server's peak resident memory (VmHWM of the serve
process, read from /proc after the export; the limit asked for is 200 MB) and its resident memory
before the export; rows/s against a raw baseline in the same run: PostgreSQL's own
`COPY (SELECT ...) TO STDOUT WITH CSV` of the same rows and columns through psql (no billing, no
HTTP), the floor of any export."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time

from portal_common import TOKEN, start_portal, start_postgres

from servers import _as_user, _pg_bin

ROWS = int(os.environ.get("BENCH_CSV_ROWS", "1000000"))

SEED = """
INSERT INTO departments (name, cpu_core_hour_rate, gpu_hour_rate, memory_gib_hour_rate, gpu_model_rates, created_at,
                         updated_at)
SELECT 'dept-' || d, 1 + d % 3, 30 + d, NULL, '{}', now(), now() FROM generate_series(1, 20) d;
INSERT INTO users (username, display_name, department_id, created_at, updated_at)
SELECT 'user' || u, 'User ' || u, 1 + u % 20, now(), now() FROM generate_series(1, 2000) u;
INSERT INTO container_sessions (pod_uid, pod_name, server_name, namespace, username, image, node, cpu_request,
    cpu_limit, memory_request, memory_limit, gpu_request, gpu_limit, gpu_model, started_at, first_seen_at,
    last_seen_at, ended_at, end_reason, unobserved_seconds, source, change_seq, created_at, updated_at,
    department_id, cpu_core_hour_rate, gpu_hour_rate)
SELECT 'uid-' || g, 'jupyter-user' || (g % 2000), '', 'jhub', 'user' || (g % 2000), 'registry.local/jupyter:1',
       'node-' || (g % 20), 1 + g % 4, 4, (2 + g % 8)::bigint * 1073741824, NULL, g % 2, g % 2,
       CASE WHEN g % 2 = 1 THEN 'NVIDIA-A100-SXM4-80GB' END,
       now() - (g::float / :n * interval '400 days') - interval '3 hours',
       now() - (g::float / :n * interval '400 days') - interval '3 hours',
       now() - (g::float / :n * interval '400 days'), now() - (g::float / :n * interval '400 days'), 'pod_gone', 0,
       'recorder', nextval('container_sessions_change_seq'), now(), now(), 1 + g % 20, 1 + g % 3, 30 + g % 20
FROM generate_series(1, :n) g;
ANALYZE;
"""

RAW = """COPY (SELECT cs.id, cs.pod_uid, cs.pod_name, cs.server_name, cs.namespace, cs.username, u.display_name,
  d.name, cs.image, cs.profile, cs.node, cs.cpu_request, cs.cpu_limit, cs.memory_request, cs.memory_limit,
  cs.gpu_request, cs.gpu_limit, cs.gpu_model, cs.started_at, cs.last_seen_at, cs.ended_at, cs.end_reason
  FROM container_sessions cs LEFT JOIN users u ON u.username = cs.username
  LEFT JOIN departments d ON d.id = cs.department_id ORDER BY cs.started_at DESC, cs.id DESC) TO STDOUT WITH CSV"""


def vm(pid: int, field: str) -> int:
    """A /proc/<pid>/status memory field in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


async def main() -> None:
    import httpx
    from sqlalchemy import text

    from labhub_portal.db.engine import make_engine

    pg = start_postgres()
    proc = None
    try:
        started = time.perf_counter()
        engine = make_engine(pg.url())
        async with engine.begin() as conn:
            for statement in SEED.strip().split(";\n"):
                if statement.strip():
                    await conn.execute(text(statement), {"n": ROWS} if ":n" in statement else {})
        await engine.dispose()
        print(f"seeded {ROWS:,} sessions in {time.perf_counter() - started:.0f} s")
        proc, url = await start_portal({"PORTAL_DATABASE_URL": pg.url()})
        rss_before = vm(proc.pid, "VmRSS")
        lines = 0
        size = 0
        started = time.perf_counter()
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=600) as client:
            async with client.stream("GET", "/api/sessions", params={"format": "csv"}) as resp:
                assert resp.status_code == 200, resp.status_code
                async for chunk in resp.aiter_bytes():
                    lines += chunk.count(b"\n")
                    size += len(chunk)
        portal_s = time.perf_counter() - started
        peak = vm(proc.pid, "VmHWM")
        rows = lines - 1  # the header
        started = time.perf_counter()
        raw = subprocess.run(_as_user("postgres") + [_pg_bin("psql"), "-h", str(pg.sock), "-p", str(pg.port), "-U",
                                                     "postgres", "-d", "portal", "-Atc", RAW],
                             capture_output=True, check=True)
        raw_s = time.perf_counter() - started
        raw_rows = raw.stdout.count(b"\n")
        print(f"portal CSV export: {rows:,} rows ({size / 1e6:,.0f} MB) in {portal_s:.1f} s = {rows / portal_s:,.0f} "
              f"rows/s; serve process resident memory {rss_before / 2**20:.0f} MiB before, peak {peak / 2**20:.0f} MiB")
        print(f"raw COPY ... TO STDOUT WITH CSV (psql): {raw_rows:,} rows in {raw_s:.1f} s = {raw_rows / raw_s:,.0f} "
              f"rows/s; portal = {(rows / portal_s) / (raw_rows / raw_s):.2f} of it")
        assert rows == raw_rows == ROWS, (rows, raw_rows)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(20)
        pg.destroy()


if __name__ == "__main__":
    asyncio.run(main())

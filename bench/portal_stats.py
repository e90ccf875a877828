"""/api/stats over 1,000,000 sessions: p50/p95 of the endpoint (in-process ASGI, full FastAPI
stack, answering from the usage rollups, labhub_portal.rollups) against raw SQL aggregates in the
same run on the same database:

* "full computation": the portal's aggregate statement over the sessions (what /api/stats ran before
  the rollups, and still runs while they are not built), straight through asyncpg: no API overhead,
  so the ratio to it understates the gain;
* "raw naive": the plain aggregate an analyst would write (overlap hours x requests x rates per
  group, no gap rule, no per-model GPU rates; by day it books a session on its start day instead
  of splitting it across days) - the floor for this data volume."""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from portal_common import TOKEN, settings, start_postgres, summary

SESSIONS = int(os.environ.get("BENCH_SESSIONS", "1000000"))
RUNS = 15


SEED = """
INSERT INTO departments (name, cpu_core_hour_rate, gpu_hour_rate, memory_gib_hour_rate, gpu_model_rates, created_at, updated_at)
SELECT 'dept-' || d, 1 + d % 3, 30 + d, NULL, '{"NVIDIA-A100-SXM4-80GB": "80"}', now(), now() FROM generate_series(1, 20) d;
INSERT INTO users (username, display_name, department_id, created_at, updated_at)
SELECT 'user' || u, 'User ' || u, 1 + u % 20, now(), now() FROM generate_series(1, 1800) u;
INSERT INTO container_sessions (pod_uid, pod_name, server_name, namespace, username, image, node, cpu_request,
    cpu_limit, memory_request, memory_limit, gpu_request, gpu_limit, gpu_model, started_at, first_seen_at,
    last_seen_at, ended_at, end_reason, unobserved_seconds, source, change_seq, created_at, updated_at)
SELECT 'uid-' || g, 'jupyter-user' || (g % 2000), '', 'jhub', 'user' || (g % 2000), 'img', 'node-' || (g % 20),
       1 + g % 4, 4, (2 + g % 8)::bigint * 1073741824, NULL, CASE WHEN g % 5 = 0 THEN 1 ELSE 0 END,
       CASE WHEN g % 5 = 0 THEN 1 ELSE 0 END, CASE WHEN g % 5 = 0 THEN 'NVIDIA-A100-SXM4-80GB' END,
       s.start, s.start, s.stop, CASE WHEN g <= 5000 AND g % 5 = 0 THEN NULL ELSE s.stop END,
       CASE WHEN g <= 5000 AND g % 5 = 0 THEN NULL ELSE 'pod_gone' END, CASE WHEN g % 50 = 0 THEN 600 ELSE 0 END,
       'recorder', nextval('container_sessions_change_seq'), now(), now()
FROM generate_series(1, :n) g
CROSS JOIN LATERAL (SELECT now() - (g::float / :n * interval '400 days') - interval '1 hour' AS start,
                           now() - (g::float / :n * interval '400 days') + (g % 8) * interval '1 hour'
                             + (g::bigint * 7919 % 3599) * interval '1 second' + (g::bigint * 104729 % 999983) * interval '1 microsecond'
                             AS stop) s;
UPDATE container_sessions SET last_seen_at = now() WHERE ended_at IS NULL;
-- each session's billing terms (labhub_portal.billing_terms): its user's department and its rates
UPDATE container_sessions cs SET department_id = d.id, cpu_core_hour_rate = d.cpu_core_hour_rate,
       gpu_hour_rate = CASE WHEN cs.gpu_model IS NOT NULL THEN 80 ELSE d.gpu_hour_rate END,
       memory_gib_hour_rate = d.memory_gib_hour_rate
FROM users u JOIN departments d ON d.id = u.department_id WHERE u.username = cs.username;
ANALYZE;
"""

NAIVE = """
SELECT {key} AS key,
       SUM(EXTRACT(EPOCH FROM LEAST(COALESCE(cs.ended_at, now()), $2) - GREATEST(cs.started_at, $1)) / 3600.0
           * (COALESCE(cs.cpu_request, 0) * COALESCE(cs.cpu_core_hour_rate, 1) + cs.gpu_request * COALESCE(cs.gpu_hour_rate, 30)
              + COALESCE(cs.memory_request, 0) / 1073741824.0 * COALESCE(cs.memory_gib_hour_rate, 0.2))) AS cost
FROM container_sessions cs
LEFT JOIN departments d ON d.id = cs.department_id
WHERE cs.started_at < $2 AND (cs.ended_at IS NULL OR cs.ended_at > $1)
GROUP BY 1 ORDER BY 1
"""
NAIVE_KEYS = {"user": "cs.username", "department": "d.name", "total": "'total'",
              "day": "date_trunc('day', cs.started_at AT TIME ZONE 'Asia/Taipei')",  # day of the start only
              "month": "date_trunc('month', cs.started_at AT TIME ZONE 'Asia/Taipei')"}


def agreement(answer: list[dict], full: list[dict], unrounded: dict[str, dict]) -> str:
    """Costs to the cent and session counts exactly; hours to the 4 places the API gives, except
    where the exact value sits on a rounding tie (x.xxxx5 to within 1e-7 h, checked against the full
    computation's unrounded value), which summing in another order may round either way."""
    if [r["key"] for r in answer] != [r["key"] for r in full]:
        return "DIFFERENT keys"
    ties = 0
    for a, f in zip(answer, full):
        if a["cost"] != f["cost"] or a["sessions"] != f["sessions"]:
            return f"DIFFERENT: {a} vs {f}"
        for field in ("hours", "cpu_core_hours", "gpu_hours", "memory_gib_hours"):
            if a[field] != f[field]:
                exact = float(unrounded[f["key"]][field]) * 10_000
                if abs(a[field] - f[field]) > 0.000101 or abs(exact - int(exact) - 0.5) > 1e-3:
                    return f"DIFFERENT: {a} vs {f} (unrounded {unrounded[f['key']][field]})"
                ties += 1
    return (f"equal to the full computation (and {ties} of {4 * len(full)} hour values at a rounding tie, "
            f"0.0001 apart)" if ties else "equal to the full computation")


async def interleaved(fns, runs=RUNS) -> list[list[float]]:
    """Time several functions round-robin (same machine load for each), after one warm-up each."""
    for fn in fns:
        await fn()
    out: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            await fn()
            out[i].append((time.perf_counter() - t) * 1000)
    return out


async def main() -> None:
    import asyncpg
    import httpx
    from sqlalchemy import text

    from labhub_portal.app import create_app
    from labhub_portal import rollups
    from labhub_portal.stats_service import GroupBy, _sql, sql_stats, stats

    pg = start_postgres()
    try:
        s = settings(pg)
        app = create_app(s, cluster=None, start_services=False)
        async with app.router.lifespan_context(app):
            t = time.perf_counter()
            async with app.state.engine.begin() as conn:
                for statement in SEED.strip().split(";\n"):
                    if statement.strip():
                        await conn.execute(text(statement), {"n": SESSIONS} if ":n" in statement else {})
            print(f"seeded {SESSIONS:,} sessions in {time.perf_counter() - t:.0f} s")
            built = await rollups.ensure(app.state.sessionmaker, s)
            async with app.state.engine.connect() as conn:
                sizes = dict((await conn.execute(text(
                    "SELECT grain, count(*) FROM usage_rollups GROUP BY grain"))).all())
            print(f"rollups built in {built:.1f} s: {sizes.get('d', 0):,} day, {sizes.get('w', 0):,} week and "
                  f"{sizes.get('m', 0):,} month rows")
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost",
                                         headers={"Authorization": f"Bearer {TOKEN}"}) as client:
                raw = await asyncpg.connect(pg.url().replace("postgresql+asyncpg", "postgresql"),
                                            server_settings={"jit": "off"})  # same as the portal's engine
                now = datetime.now(timezone.utc)
                cases: tuple[tuple[str, int, GroupBy], ...] = (("last 30 days by user", 30, "user"),
                                              ("whole 400 days by user", 401, "user"),
                                              ("last 30 days by day", 30, "day"),
                                              ("whole 400 days by department", 401, "department"),
                                              ("whole 400 days by month", 401, "month"),
                                              ("whole 400 days by day", 401, "day"),
                                              ("last 7 days in total", 7, "total"))
                failed: list[str] = []
                for label, days, group_by in cases:
                    lo, hi = now - timedelta(days=days), now
                    params = {"group_by": group_by, "from": lo.isoformat(), "to": hi.isoformat()}

                    async def api():
                        resp = await client.get("/api/stats", params=params)
                        assert resp.status_code == 200, resp.text

                    sql = _sql(group_by, None, None)
                    names = list(dict.fromkeys(re.findall(r"(?<!:):(\w+)", sql)))
                    raw_sql = sql
                    for i, name in enumerate(names, 1):
                        raw_sql = re.sub(rf"(?<!:):{name}\b", f"${i}", raw_sql)
                    values = {"lo": lo, "hi": hi, "now": now, "gap": s.gap_seconds, "zone": s.timezone,
                              "cpu_rate": Decimal("1"), "gpu_rate": Decimal("30"), "mem_rate": Decimal("0.2")}

                    async def same_sql():
                        await raw.fetch(raw_sql, *[values[n] for n in names])

                    naive_sql = NAIVE.format(key=NAIVE_KEYS[group_by])

                    async def naive():
                        await raw.fetch(naive_sql, lo, hi)

                    # the answer from the rollups equals the full computation with the same `now` (the
                    # API's own `now` is later, and open sessions count up to it)
                    async with app.state.sessionmaker() as db:
                        assert await rollups.ready(db, s)
                        answer = await stats(db, s, group_by, lo, hi, now)
                        full = await sql_stats(db, s, group_by, lo, hi, now)
                    exact = {str(r["key"]): dict(r) for r in await raw.fetch(raw_sql, *[values[n] for n in names])}
                    verdict = agreement(answer, full, exact)
                    rollup_sql = rollups._sql(group_by, None, None)
                    plan = rollups.plan(lo, hi, group_by, s.zone)
                    assert plan is not None
                    rollup_values = dict(values, h_hi=plan.head[1], t_lo=plan.tail[0], t_all=plan.tail_counts_all,
                                         p_grain=[x.grain for x in plan.pieces], p_period=[x.period for x in plan.pieces],
                                         p_key=[x.key for x in plan.pieces], p_first=[x.first for x in plan.pieces])
                    rnames = list(dict.fromkeys(re.findall(r"(?<!:):(\w+)", rollup_sql)))
                    for i, name in enumerate(rnames, 1):
                        rollup_sql = re.sub(rf"(?<!:):{name}\b", f"${i}", rollup_sql)

                    async def rollup_raw():
                        await raw.fetch(rollup_sql, *[rollup_values[n] for n in rnames])

                    a, b, c, d = await interleaved([api, same_sql, naive, rollup_raw])
                    from portal_common import pct
                    print(f"{label}: /api/stats {summary(a)} | full computation {summary(b)} | raw naive {summary(c)} "
                          f"| full/api p50 {pct(b, 50) / pct(a, 50):.1f}x, p95 {pct(b, 95) / pct(a, 95):.1f}x "
                          f"| its SQL alone {summary(d)} | {len(full)} rows: {verdict}")
                    if verdict.startswith("DIFFERENT"):
                        failed.append(label)
                await raw.close()
                if failed:
                    raise SystemExit(f"the rollup answer differs from the full computation: {', '.join(failed)}")
    finally:
        pg.destroy()


if __name__ == "__main__":
    tempfile.tempdir = None
    asyncio.run(main())

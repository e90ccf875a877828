"""Recorder cycle with 2,000 running pods: portal time and database round trips per cycle.

Baseline: the same upsert done as one raw asyncpg statement (no SQLAlchemy, no Kubernetes), and
the naive alternative of one upsert per pod (what a row-at-a-time recorder would do)."""

from __future__ import annotations

import asyncio
import re
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from portal_common import settings, start_cluster, start_postgres

PODS = 2000
CYCLES = 10


async def main() -> None:
    import asyncpg
    from sqlalchemy import event, text

    from labhub_portal import rollups
    from labhub_portal.app import create_app
    from labhub_portal.cluster import pods_to_observations
    from labhub_portal.recorder import repository

    tmp = Path(tempfile.mkdtemp(prefix="bench-recorder-"))
    pg = start_postgres()
    cluster, kube = start_cluster(tmp, PODS)
    try:
        app = create_app(settings(pg, kubeconfig=kube.kubeconfig, hub_namespace=kube.name), start_services=False)
        async with app.router.lifespan_context(app):
            await rollups.ensure(app.state.sessionmaker, app.state.settings)  # as in service: triggers on
            recorder = app.state.recorder
            counts = {"statements": 0, "commits": 0, "begins": 0}
            sync_engine = app.state.engine.sync_engine
            event.listen(sync_engine, "before_cursor_execute", lambda *a: counts.__setitem__("statements", counts["statements"] + 1))
            event.listen(sync_engine, "commit", lambda *a: counts.__setitem__("commits", counts["commits"] + 1))
            event.listen(sync_engine, "begin", lambda *a: counts.__setitem__("begins", counts["begins"] + 1))

            first = time.perf_counter()
            status = await recorder.run_once()
            first_ms = (time.perf_counter() - first) * 1000
            assert status["state"] == "ok" and status["open_sessions"] == PODS, status
            first_rt = dict(counts)

            cycle_ms, list_ms, per_cycle = [], [], []
            for _ in range(CYCLES):
                for key in counts:
                    counts[key] = 0
                t = time.perf_counter()
                await recorder.cluster.list_singleuser_pods()
                list_ms.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                status = await recorder.run_once()
                cycle_ms.append((time.perf_counter() - t) * 1000)
                per_cycle.append(dict(counts))
            assert status["state"] == "ok"
            # 10 % of the pods go away in one cycle
            kube.stop_servers([f"jupyter-user{i}" for i in range(PODS * 9 // 10, PODS)])
            for key in counts:
                counts[key] = 0
            t = time.perf_counter()
            status = await recorder.run_once()
            churn_ms = (time.perf_counter() - t) * 1000
            churn_rt = dict(counts)

            # portal DB-only time for one cycle's writes (observations prepared in advance)
            observations = pods_to_observations(await recorder.cluster.list_singleuser_pods(),
                                                await recorder.cluster.node_labels(), kube.name)

            async def db_cycle(obs) -> float:
                """One cycle's writes (lock, upsert, close) in one transaction; milliseconds."""
                t = time.perf_counter()
                async with app.state.sessionmaker() as session:
                    async with session.begin():
                        await repository.lock_changes(session)
                        now = datetime.now(timezone.utc)
                        await repository.upsert_observations(session, obs, now, 90.0)
                        await repository.close_gone(session, kube.name, now)
                return (time.perf_counter() - t) * 1000

            db_ms = [await db_cycle(observations) for _ in range(CYCLES)]

            # the usage rollups' triggers (labhub_portal.rollups): the same DB part with them on and off,
            # interleaved: a steady cycle, one closing 200 sessions, one reopening those 200
            async def triggers(on: bool) -> None:
                async with app.state.engine.begin() as conn:
                    await conn.execute(text(f"ALTER TABLE container_sessions {'ENABLE' if on else 'DISABLE'} TRIGGER USER"))

            trig: dict[bool, dict[str, list[float]]] = {on: {"steady": [], "close": [], "reopen": []} for on in (True, False)}
            for _ in range(CYCLES):
                for on in (True, False):
                    await triggers(on)
                    trig[on]["steady"].append(await db_cycle(observations))
                    trig[on]["close"].append(await db_cycle(observations[200:]))
                    trig[on]["reopen"].append(await db_cycle(observations))
            await triggers(True)

        # raw baselines on the same database
        dsn = pg.url().replace("postgresql+asyncpg", "postgresql")
        conn = await asyncpg.connect(dsn)
        cols = repository._COLUMNS
        arrays = [[getattr(o, c) for o in observations] for c in cols]
        sql = repository._PG_UPSERT
        names = re.findall(r":(\w+)", sql)
        order = list(dict.fromkeys(names))
        raw_sql = sql
        for i, name in enumerate(order, 1):
            raw_sql = re.sub(rf":{name}\b", f"${i}", raw_sql)
        raw_ms = []
        for _ in range(CYCLES):
            now = datetime.now(timezone.utc)
            params: dict[str, object] = dict(zip(cols, arrays))
            params.update({c: [None] * len(observations) for c in repository._TERMS})  # no departments here
            params.update(now=now, gap=90.0)
            t = time.perf_counter()
            async with conn.transaction():
                await conn.execute(raw_sql, *[params[n] for n in order])
            raw_ms.append((time.perf_counter() - t) * 1000)
        naive_ms = []
        single = ("INSERT INTO container_sessions (pod_uid, pod_name, server_name, namespace, username, gpu_request, "
                  "gpu_limit, started_at, first_seen_at, last_seen_at, change_seq, created_at, updated_at) "
                  "VALUES ($1, $2, '', 'jhub', $3, 0, 0, $4, $4, $4, nextval('container_sessions_change_seq'), $4, $4) "
                  "ON CONFLICT (pod_uid) DO UPDATE SET last_seen_at = excluded.last_seen_at, "
                  "change_seq = nextval('container_sessions_change_seq')")
        for _ in range(3):
            now = datetime.now(timezone.utc)
            t = time.perf_counter()
            async with conn.transaction():
                for o in observations:
                    await conn.execute(single, o.pod_uid, o.pod_name, o.username, now)
            naive_ms.append((time.perf_counter() - t) * 1000)
        await conn.close()
    finally:
        cluster.stop()
        pg.destroy()

    med = statistics.median
    print(f"pods: {PODS}, cycles: {CYCLES}")
    print(f"first cycle (2,000 inserts): {first_ms:.0f} ms, round trips: {first_rt}")
    print(f"steady cycle: median {med(cycle_ms):.0f} ms (min {min(cycle_ms):.0f}, max {max(cycle_ms):.0f}); "
          f"of which pod listing from the API server (HTTPS + JSON) ~{med(list_ms):.0f} ms")
    print(f"round trips per steady cycle: {per_cycle[-1]} (constant: {len({str(p) for p in per_cycle}) == 1})")
    print(f"cycle with 200 pods gone: {churn_ms:.0f} ms, round trips: {churn_rt}")
    print(f"portal DB part (lock + upsert + close, 1 transaction): median {med(db_ms):.1f} ms")
    print(f"raw asyncpg same unnest upsert: median {med(raw_ms):.1f} ms -> portal DB part / raw = "
          f"{med(db_ms) / med(raw_ms):.2f}x")
    for kind in ("steady", "close", "reopen"):
        print(f"rollup triggers, {kind} cycle: DB part median {med(trig[True][kind]):.1f} ms with them, "
              f"{med(trig[False][kind]):.1f} ms without -> {med(trig[True][kind]) / med(trig[False][kind]):.2f}x")
    print(f"naive one-upsert-per-pod (2,000 round trips): median {med(naive_ms):.0f} ms -> "
          f"{med(naive_ms) / med(db_ms):.1f}x slower than the portal's batched cycle")


if __name__ == "__main__":
    asyncio.run(main())

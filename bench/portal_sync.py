"""Report sync rows/s to MariaDB against a raw batched upsert on the same MariaDB in the same run.

Portal: `ReportSync.run_once()` = PostgreSQL batch read (with the change lock) + projection with
billing + multi-row INSERT .. ON DUPLICATE KEY UPDATE + commit + watermark advance, per batch.
Raw: the same rows pre-projected in memory, written with the same statement shape through
aiomysql executemany in batches of the same size (a plain client's batched upsert).
Raw, same rendering: the same pre-projected rows rendered with the portal's own literal renderer
(`values_statements`) and sent with one execute per batch (the floor for the portal's MySQL side:
no PostgreSQL read, no projection, no watermark)."""

from __future__ import annotations

import asyncio
import time

from portal_common import settings, start_mariadb, start_postgres

ROWS = 100_000
BATCH = 2000


async def main() -> None:
    import aiomysql
    from sqlalchemy import text

    from labhub_portal.db.engine import make_engine, make_sessionmaker
    from labhub_portal.reportsync.service import ReportSync, create_table_sql, upsert_sql, values_statements

    pg, my = start_postgres(), start_mariadb()
    try:
        s = settings(pg, mysql_url=my.url, report_sync_batch=BATCH)
        engine = make_engine(s.database_url)
        async with engine.begin() as conn:
            await conn.execute(text("""
INSERT INTO container_sessions (pod_uid, pod_name, server_name, namespace, username, image, node, cpu_request,
    memory_request, gpu_request, gpu_limit, gpu_model, started_at, first_seen_at, last_seen_at, ended_at, end_reason,
    unobserved_seconds, source, change_seq, created_at, updated_at)
SELECT 'uid-' || g, 'jupyter-u' || g, '', 'jhub', 'user' || (g % 500), 'img', 'node-1', 2, 4294967296, g % 2, g % 2,
       'A100', now() - interval '3 hours', now() - interval '3 hours', now() - interval '1 hour',
       now() - interval '1 hour', 'pod_gone', 0, 'recorder', nextval('container_sessions_change_seq'), now(), now()
FROM generate_series(1, :n) g"""), {"n": ROWS})
        sync = ReportSync(s, make_sessionmaker(engine))
        t = time.perf_counter()
        rows = await sync.run_once()
        portal_s = time.perf_counter() - t
        assert rows == ROWS
        # rerun with everything changed (update path of the upsert)
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE container_sessions SET change_seq = nextval('container_sessions_change_seq')"))
        t = time.perf_counter()
        assert await sync.run_once() == ROWS
        portal_update_s = time.perf_counter() - t

        # raw: same rows, already projected, same statement, same batch size
        from datetime import datetime, timezone

        async with make_sessionmaker(engine)() as session:
            all_rows = (await session.execute(sync.batch_query(0).limit(None))).all()
        projected = sync._project(all_rows, datetime.now(timezone.utc), await sync.load_departments())
        await engine.dispose()
        conn = await aiomysql.connect(**s.mysql_target.connect_kwargs())
        async with conn.cursor() as cur:
            await cur.execute(create_table_sql("pod_report_raw"))
            stmt = upsert_sql("pod_report_raw")
            t = time.perf_counter()
            for i in range(0, len(projected), BATCH):
                await cur.executemany(stmt, projected[i:i + BATCH])
                await conn.commit()
            raw_s = time.perf_counter() - t
            t = time.perf_counter()
            for i in range(0, len(projected), BATCH):
                await cur.executemany(stmt, projected[i:i + BATCH])
                await conn.commit()
            raw_update_s = time.perf_counter() - t
            await cur.execute(create_table_sql("pod_report_raw2"))
            stmt2 = upsert_sql("pod_report_raw2")
            same_s = []
            for _ in range(2):  # insert path, then update path
                t = time.perf_counter()
                for i in range(0, len(projected), BATCH):
                    for sql in values_statements(stmt2, projected[i:i + BATCH], conn.escape_string):
                        await cur.execute(sql)
                    await conn.commit()
                same_s.append(time.perf_counter() - t)
        conn.close()
    finally:
        my.destroy()
        pg.destroy()
    print(f"rows: {ROWS:,}, batch {BATCH}")
    print(f"insert path: portal {ROWS / portal_s:,.0f} rows/s ({portal_s:.1f} s) | raw batched upsert "
          f"{ROWS / raw_s:,.0f} rows/s ({raw_s:.1f} s) | portal/raw throughput {raw_s / portal_s:.2f}")
    print(f"update path: portal {ROWS / portal_update_s:,.0f} rows/s | raw {ROWS / raw_update_s:,.0f} rows/s "
          f"| portal/raw throughput {raw_update_s / portal_update_s:.2f}")
    print(f"raw, same rendering: insert {ROWS / same_s[0]:,.0f} rows/s (portal/it {same_s[0] / portal_s:.2f}) | "
          f"update {ROWS / same_s[1]:,.0f} rows/s (portal/it {same_s[1] / portal_update_s:.2f})")


if __name__ == "__main__":
    asyncio.run(main())

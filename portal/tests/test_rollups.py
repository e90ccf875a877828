"""Usage rollups (labhub_portal.rollups): the plan as data, then on PostgreSQL: answers from the
rollups equal the full computation over the sessions, field by field at the API's precision (hours
to 4 places, cost to the cent, session counts), for every grouping, filter and kind of range; and
the triggers keep the rollups equal to a rebuild through every kind of write (the recorder opening,
closing and reopening sessions, a back-dated rate change rebilling, a department deleted, sessions
imported and deleted, the sessions emptied), in a zone with daylight saving time."""

from __future__ import annotations

import datetime as dt
import random
from datetime import date, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from labhub_portal import rollups
from labhub_portal.billing_terms import RatePeriod, rebill, set_rates
from labhub_portal.cluster import PodObservation
from labhub_portal.db.models import ContainerSession, Department
from labhub_portal.recorder.repository import close_gone, upsert_observations
from labhub_portal.stats_service import NO_DEPARTMENT, sql_stats, stats
from testlib import make_settings

UTC = dt.timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
NOW = dt.datetime(2026, 5, 10, 12, 0, tzinfo=UTC)
GROUPS = ("total", "user", "department", "day", "month")


# --------------------------------------------------------------------------------------------------
# The plan, as data


def _brute_fewest(first: date, end: date) -> int:
    """Fewest pieces by exhaustive search (small ranges only)."""
    best: dict[date, int] = {end: 0}
    day = end
    while day > first:
        day -= timedelta(days=1)
        options = [1 + best[day + timedelta(days=1)]]
        if day.weekday() == 0 and day + timedelta(days=7) <= end:
            options.append(1 + best[day + timedelta(days=7)])
        if day.day == 1:
            nxt = rollups._month_after(day)
            if nxt <= end:
                options.append(1 + best[nxt])
        best[day] = min(options)
    return best[first]


@pytest.mark.parametrize("seed", range(40))
def test_decompose_covers_the_days_exactly_with_the_fewest_pieces(seed):
    rnd = random.Random(seed)
    first = date(2025, 12, 1) + timedelta(days=rnd.randrange(60))
    end = first + timedelta(days=rnd.randrange(1, 420))
    pieces = rollups.decompose(first, end)
    cursor = first
    for grain, period in pieces:
        assert period == cursor
        if grain == "w":
            assert period.weekday() == 0
            cursor += timedelta(days=7)
        elif grain == "m":
            assert period.day == 1
            cursor = rollups._month_after(period)
        else:
            cursor += timedelta(days=1)
    assert cursor == end
    assert len(pieces) == _brute_fewest(first, end)
    # at most ~16 pieces up to the first month start, one per month, ~16 after the last: 400 days, ~45 pieces
    assert len(pieces) <= 32 + (end - first).days // 28


def test_plan_counts_each_session_once_per_result_row():
    z = ZoneInfo("Asia/Taipei")
    local = lambda *a: dt.datetime(*a, tzinfo=z)  # noqa: E731
    # head (10:00 on Jan 30 to midnight), full days Jan 31 .. Mar 2, tail on Mar 3 to 09:00
    lo, hi = local(2026, 1, 30, 10), local(2026, 3, 3, 9)
    p = rollups.plan(lo, hi, "total", z)
    assert p is not None and p.head == (lo, local(2026, 1, 31)) and p.tail == (local(2026, 3, 3), hi)
    assert [x.first for x in p.pieces] == [False] * len(p.pieces)  # the head counts first
    assert ("m", date(2026, 2, 1)) in [(x.grain, x.period) for x in p.pieces] and not p.tail_counts_all
    # the same range by month: January's row starts with the head, February's and March's with a piece
    p = rollups.plan(lo, hi, "month", z)
    firsts = {x.key: x.first for x in p.pieces if x.first or x.key not in {y.key for y in p.pieces if y.first}}
    assert firsts == {"2026-01": False, "2026-02": True, "2026-03": True}
    assert not p.tail_counts_all
    # the full days start on the 1st: the head is January's alone, the tail March's alone
    p = rollups.plan(local(2026, 1, 31, 10), local(2026, 3, 1, 9), "month", z)
    assert [x.grain for x in p.pieces] == ["m"] and p.pieces[0].first and p.tail_counts_all
    # by day every day is its own row
    p = rollups.plan(lo, hi, "day", z)
    assert all(x.first and x.grain == "d" for x in p.pieces) and p.tail_counts_all and len(p.pieces) == 31
    # aligned on midnights: no head, the first piece counts everything
    p = rollups.plan(local(2026, 2, 1), local(2026, 3, 1), "user", z)
    assert p.head[0] == p.head[1] and p.tail[0] == p.tail[1] and [(x.grain, x.first) for x in p.pieces] == [("m", True)]
    # less than a full local day: no plan (computed from the sessions)
    assert rollups.plan(local(2026, 2, 1, 1), local(2026, 2, 2, 0, 30), "user", z) is None
    assert rollups.plan(local(2026, 2, 1, 0), local(2026, 2, 1, 23), "day", z) is None


# --------------------------------------------------------------------------------------------------
# On PostgreSQL


def _sessions(rnd: random.Random, n: int, departments: list[int | None]) -> list[ContainerSession]:
    start = dt.datetime(2026, 2, 1, tzinfo=UTC)
    rates = [None, Decimal("1.5"), Decimal("2"), Decimal("0.3333")]
    out = []
    for i in range(n):
        started = start + timedelta(seconds=rnd.randrange(int((NOW - start).total_seconds())))
        shape = rnd.random()
        if shape < 0.03:
            length = timedelta(0)                                           # zero length
        elif shape < 0.10:
            length = timedelta(days=rnd.uniform(1, 6))                      # several days
        elif shape < 0.12:
            length = timedelta(days=rnd.uniform(20, 45))                    # over month ends
        else:
            length = timedelta(hours=rnd.uniform(0.1, 12))
        ended: dt.datetime | None = started + length
        assert ended is not None
        last_seen = ended
        if ended >= NOW or rnd.random() < 0.04:                             # still running
            ended, last_seen = None, NOW - timedelta(seconds=rnd.choice([5, 40, 200, 3000]))
            if last_seen < started:
                last_seen = started
        span = ((ended or NOW) - started).total_seconds()
        unobserved = rnd.choice([0.0] * 6 + [span * rnd.random(), span * 2, 600.0])
        gpu = rnd.choice([0, 0, 1, 2, 4])
        out.append(ContainerSession(
            pod_uid=f"uid-{i}", pod_name=f"jupyter-{i}", server_name="", namespace="jhub",
            username=f"u{rnd.randrange(6)}", image="img", cpu_request=rnd.choice([None, 0.5, 1, 2, 8]),
            gpu_request=gpu, gpu_limit=gpu, memory_request=rnd.choice([None, 2**30, 3 * 2**30 + 7]),
            gpu_model="A100" if gpu else None, started_at=started, first_seen_at=started, last_seen_at=last_seen,
            ended_at=ended, end_reason="pod_gone" if ended else None, unobserved_seconds=unobserved,
            source="recorder", change_seq=i + 1, created_at=NOW, updated_at=NOW,
            department_id=rnd.choice(departments), cpu_core_hour_rate=rnd.choice(rates),
            gpu_hour_rate=rnd.choice(rates), memory_gib_hour_rate=rnd.choice(rates)))
    return out


def _ranges(zone: ZoneInfo) -> list[tuple[dt.datetime, dt.datetime]]:
    local = lambda *a: dt.datetime(*a, tzinfo=zone).astimezone(UTC)  # noqa: E731
    return [
        (local(2026, 2, 1), local(2026, 5, 1)),                 # whole months
        (local(2026, 1, 15, 7, 30), NOW),                       # from before any session to now
        (local(2026, 3, 20, 13, 5), local(2026, 4, 2, 8)),      # across the spring DST change
        (local(2026, 4, 30, 23, 59), local(2026, 5, 2, 0, 1)),  # one full day between two edges
        (local(2026, 3, 1), local(2026, 3, 9, 17)),             # aligned start, partial end
        (local(2026, 2, 10, 3), local(2026, 3, 1)),             # partial start, a month start as end
        (local(2026, 4, 6), local(2026, 4, 27)),                # whole weeks
        (local(2026, 5, 1), local(2026, 6, 1)),                 # a month into the future
    ]


FILTERS = ((None, None), ("u1", None), (None, "D1"), (None, NO_DEPARTMENT), ("u2", "D2"), ("nobody", None))


async def _agree(s, settings, ranges, filters=FILTERS, groups=GROUPS, now=NOW) -> int:
    """Rollup answers equal the full computation; returns how many were compared."""
    compared = 0
    for lo, hi in ranges:
        for group_by in groups:
            for user, department in filters:
                expected = await sql_stats(s, settings, group_by, lo, hi, now, user, department)
                got = await rollups.rollup_stats(s, settings, group_by, lo, hi, now, user, department)
                assert got is not None
                assert got == expected, (lo, hi, group_by, user, department)
                compared += 1
    return compared


async def _same_as_rebuild(s) -> None:
    """The rows the triggers maintained equal a rebuild from the sessions."""
    def rows(result):
        return {(r.grain, r.period, r.username, r.dept_key): r for r in result}

    sql = "SELECT * FROM usage_rollups"
    kept = rows(await s.execute(text(sql)))
    nested = await s.begin_nested()
    await s.execute(text("TRUNCATE usage_rollups"))
    await s.execute(text(rollups.REBUILD))
    built = rows(await s.execute(text(sql)))
    await nested.rollback()
    assert kept.keys() == built.keys()
    for key, row in built.items():
        for column in ("sessions", "sessions_started"):
            assert getattr(kept[key], column) == getattr(row, column), (key, column)
        for column in rollups._SUMS:
            assert getattr(kept[key], column) == pytest.approx(getattr(row, column), rel=1e-9, abs=1e-6), (key, column)


async def _seed(s, rnd, n=500) -> list[int]:
    departments = [Department(name=f"D{i}") for i in range(1, 4)]
    s.add_all(departments)
    await s.flush()
    s.add_all(_sessions(rnd, n, [d.id for d in departments] + [None]))
    await s.flush()
    return [d.id for d in departments]


async def test_rollup_answers_equal_the_full_computation(pg_server, tx_sessionmaker):
    settings = make_settings(pg_server, timezone="Europe/Berlin")
    rnd = random.Random(7)
    async with tx_sessionmaker() as s:
        async with s.begin():
            await _seed(s, rnd)
        assert not await rollups.ready(s, settings)
    assert await rollups.ensure(tx_sessionmaker, settings) is not None
    assert await rollups.ensure(tx_sessionmaker, settings) is None  # built already: nothing to do
    async with tx_sessionmaker() as s:
        assert await rollups.ready(s, settings)
        counts = (await s.execute(text("SELECT grain, count(*) FROM usage_rollups GROUP BY grain"))).all()
        assert {g for g, _ in counts} == {"d", "w", "m"}
        assert await _agree(s, settings, _ranges(BERLIN)) == 8 * 5 * len(FILTERS)
        # /api/stats' own entry point takes the rollups for a range holding a full day
        lo, hi = _ranges(BERLIN)[1]
        assert await stats(s, settings, "user", lo, hi, NOW) == await sql_stats(s, settings, "user", lo, hi, NOW)
        await _same_as_rebuild(s)


async def test_triggers_keep_the_rollups_equal_to_a_rebuild_through_every_write(pg_server, tx_sessionmaker):
    settings = make_settings(pg_server, timezone="Europe/Berlin")
    rnd = random.Random(11)
    async with tx_sessionmaker() as s:
        async with s.begin():
            departments = await _seed(s, rnd, 300)
    await rollups.ensure(tx_sessionmaker, settings)
    ranges = _ranges(BERLIN)[:4]
    filters = FILTERS[:4]

    def observation(uid: str, user: str, started: dt.datetime) -> PodObservation:
        return PodObservation(pod_uid=uid, pod_name=f"jupyter-{uid}", namespace="jhub", username=user,
                              server_name="", image="img", profile=None, node="n1", phase="Running", ready=True,
                              started_at=started, cpu_request=2.0, cpu_limit=None, memory_request=2**31,
                              memory_limit=None, gpu_request=1, gpu_limit=1, gpu_model="A100")

    async with tx_sessionmaker() as s:
        closed = (await s.execute(text("SELECT pod_uid, username, started_at FROM container_sessions "
                                       "WHERE ended_at IS NOT NULL AND ended_at > started_at ORDER BY id LIMIT 1"))).one()
        opened = (await s.execute(text("SELECT count(*) FROM container_sessions WHERE ended_at IS NULL"))).scalar_one()
        assert opened > 0
    steps = []

    async def recorder_cycle(s):  # new pods, a closed session's pod back (reopened), every other open one gone
        now = NOW + timedelta(minutes=1)
        await upsert_observations(s, [observation("new-1", "u1", NOW - timedelta(days=2, hours=3)),
                                      observation("new-2", "u5", NOW - timedelta(minutes=10)),
                                      observation(closed.pod_uid, closed.username, closed.started_at)], now, 90)
        assert await close_gone(s, "jhub", now) == opened
    steps.append(recorder_cycle)

    async def recorder_closes_the_rest(s):
        assert await close_gone(s, "jhub", NOW + timedelta(minutes=3)) == 3
    steps.append(recorder_closes_the_rest)

    async def back_dated_rates(s):  # D1's rates change from March 15th: its sessions since then rebilled
        since = dt.datetime(2026, 3, 15, tzinfo=UTC)
        await set_rates(s, departments[0], RatePeriod(Decimal("1"), Decimal("9"), None, {}), None, NOW)
        await set_rates(s, departments[0], RatePeriod(Decimal("7"), None, Decimal("0.5"), {}), since, NOW)
        assert await rebill(s, NOW, departments={departments[0]: since}) > 0
    steps.append(back_dated_rates)

    async def department_deleted(s):  # its sessions lose their department (ON DELETE SET NULL)
        await s.execute(text("DELETE FROM departments WHERE id = :id"), {"id": departments[2]})
    steps.append(department_deleted)

    async def imported_and_deleted(s):
        for prefix, seed, count in (("import-a-", 3, 40), ("import-b-", 4, 5)):
            for row in _sessions(random.Random(seed), count, [departments[1], None]):
                row.pod_uid = prefix + row.pod_uid
                s.add(row)
        await s.flush()
        await s.execute(text("DELETE FROM container_sessions WHERE id IN "
                             "(SELECT id FROM container_sessions ORDER BY id DESC LIMIT 7)"))
    steps.append(imported_and_deleted)

    for step in steps:
        async with tx_sessionmaker() as s:
            async with s.begin():
                await step(s)
            await _same_as_rebuild(s)
            await _agree(s, settings, ranges, filters, now=NOW + timedelta(minutes=5))

    async with tx_sessionmaker() as s:  # emptied alone, or with the rollups in one statement (the tests' cleanup)
        async with s.begin():
            await s.execute(text("TRUNCATE container_sessions CASCADE"))
        assert (await s.execute(text("SELECT count(*) FROM usage_rollups"))).scalar_one() == 0
    async with tx_sessionmaker() as s:
        async with s.begin():
            await s.execute(text("TRUNCATE container_sessions, usage_rollups CASCADE"))


async def test_another_zone_rebuilds_and_falls_back_until_then(pg_server, tx_sessionmaker):
    berlin = make_settings(pg_server, timezone="Europe/Berlin")
    taipei = make_settings(pg_server, timezone="Asia/Taipei")
    async with tx_sessionmaker() as s:
        async with s.begin():
            await _seed(s, random.Random(5), 200)
    await rollups.ensure(tx_sessionmaker, berlin)
    async with tx_sessionmaker() as s:
        assert await rollups.ready(s, berlin) and not await rollups.ready(s, taipei)
        lo, hi = _ranges(ZoneInfo("Asia/Taipei"))[0]
        # not ready for Taipei: stats() computes from the sessions, so it is still right
        assert await stats(s, taipei, "day", lo, hi, NOW) == await sql_stats(s, taipei, "day", lo, hi, NOW)
    assert await rollups.ensure(tx_sessionmaker, taipei) is not None
    async with tx_sessionmaker() as s:
        assert await rollups.ready(s, taipei)
        await _agree(s, taipei, _ranges(ZoneInfo("Asia/Taipei"))[:3], FILTERS[:2])
        await _same_as_rebuild(s)


async def test_built_at_start_retried_while_the_database_is_away_and_shown_in_status(pg_server, tx_sessionmaker,
                                                                                       caplog):
    import asyncio

    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    from testlib import AUTH, running_app

    settings = make_settings(pg_server, timezone="Europe/Berlin")
    # a database that does not answer (nothing listens on the port): tried again, then given up
    away = create_async_engine("postgresql+asyncpg://labhub@127.0.0.1:9/labhub",
                               connect_args={"timeout": 2})
    first = asyncio.Event()
    assert await rollups.keep_ensuring(async_sessionmaker(away), settings, first, delays=(0.01, 0.01)) is None
    await away.dispose()
    assert first.is_set()
    assert sum("next try in" in r.getMessage() for r in caplog.records) == 2
    assert any("stayed unreachable" in r.getMessage() for r in caplog.records)
    # the database answers: built on the first try, and /api/status says so
    async with tx_sessionmaker() as s:
        async with s.begin():
            await _seed(s, random.Random(9), 50)
    async with running_app(settings, sessionmaker=tx_sessionmaker) as (_app, client):
        before = (await client.get("/api/status", headers=AUTH)).json()["usage_rollups"]
        assert before == {"state": "not built: computed from the sessions"}
        assert await rollups.keep_ensuring(tx_sessionmaker, settings) is not None
        after = (await client.get("/api/status", headers=AUTH)).json()["usage_rollups"]
        assert after["state"] == "ready" and after["zone"] == "Europe/Berlin" and after["build_seconds"] is not None
    async with running_app(make_settings(pg_server, timezone="Asia/Taipei"), sessionmaker=tx_sessionmaker) as (_, client):
        other = (await client.get("/api/status", headers=AUTH)).json()["usage_rollups"]
        assert other["state"].startswith("built for another zone")

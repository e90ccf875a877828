"""Demo data: departments with rates, users, and past sessions.

The history is not invented row by row: the simulated cluster is played forward from ``days`` ago
to now on a fake clock, and the portal's own :class:`~labhub_portal.recorder.service.Recorder`
observes it once per ``step`` (two simulated hours in the demo).  Sessions therefore open, refresh
and close through exactly the statements the recorder runs against a real cluster.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..billing_terms import RatePeriod, rebill, set_memberships, set_rates
from ..config import Settings
from ..db.models import Department, User
from ..recorder.repository import lock_changes
from ..recorder.service import Recorder
from .simulator import DEPARTMENTS, SimulatedCluster

log = logging.getLogger("labhub_portal.demo")


async def seed_directory(sessionmaker: async_sessionmaker[AsyncSession], cluster: SimulatedCluster) -> None:
    """Departments (with hourly rates; Physics also has a per-model A100 rate) and the simulated users."""
    now = datetime.now(timezone.utc)
    async with sessionmaker() as session, session.begin():
        await lock_changes(session)
        existing = {d.name: d for d in (await session.execute(select(Department))).scalars()}
        for dept in DEPARTMENTS:
            row = existing.get(dept.name)
            if row is None:
                row = Department(name=dept.name)
                session.add(row)
                existing[dept.name] = row
            row.cpu_core_hour_rate = Decimal(str(dept.cpu_core_hour))
            row.gpu_hour_rate = Decimal(str(dept.gpu_hour))
            row.memory_gib_hour_rate = Decimal(str(dept.memory_gib_hour))
            row.gpu_model_rates = ({"NVIDIA-A100-SXM4-80GB": "40"} if dept.name == "Physics" else {})
        await session.flush()
        changed_rates = {}
        for dept in DEPARTMENTS:
            row = existing[dept.name]
            start = await set_rates(session, row.id, RatePeriod(row.cpu_core_hour_rate, row.gpu_hour_rate,
                                                                row.memory_gib_hour_rate, dict(row.gpu_model_rates)),
                                    None, now)
            if start is not None:
                changed_rates[row.id] = start
        users = {u.username: u for u in (await session.execute(select(User))).scalars()}
        for demo_user in cluster.users:
            user = users.get(demo_user.username)
            if user is None:
                user = User(username=demo_user.username)
                session.add(user)
            user.display_name = demo_user.display_name
            user.department_id = existing[demo_user.department].id
        moved = await set_memberships(session, {u.username: existing[u.department].id for u in cluster.users},
                                      None, now)
        await rebill(session, now, users=moved, departments=changed_rates)


async def replay_history(settings: Settings, sessionmaker: async_sessionmaker[AsyncSession],
                         cluster: SimulatedCluster, *, days: float, step: timedelta = timedelta(hours=1),
                         end: datetime | None = None) -> int:
    """Play the simulated cluster from ``days`` ago until ``end`` (default now) and record it.

    The recorder runs with a record interval of ``step`` (so its gap rule sees no gaps); the
    simulator ticks once per step.  Returns the number of recorder cycles.  Leaves the simulator's
    clock at ``end`` with the servers that are running then.
    """
    end_given = end is not None
    end = end or datetime.now(timezone.utc)
    cursor = end - timedelta(days=days)
    live = (cluster.clock, cluster.tick_seconds, cluster.churn, cluster.start_probability, cluster.stop_probability)
    cluster.churn = True  # history always moves, even when the live demo is frozen (--no-churn)
    # per-step chances giving sessions of a few hours to a day, mostly in office hours
    hours = step.total_seconds() / 3600
    cluster.start_probability = min(1.0, 0.125 * hours)
    cluster.stop_probability = min(1.0, 0.15 * hours)
    state = {"now": cursor}
    cluster.clock = lambda: state["now"]
    cluster.tick_seconds = step.total_seconds()
    cluster._last_tick = cursor
    replay_settings = settings.model_copy(update={"record_interval": step.total_seconds()})
    recorder = Recorder(replay_settings, sessionmaker, cluster, clock=lambda: state["now"])
    if not cluster.running_pod_names():
        cluster.populate(fraction=0.3, max_age_hours=step.total_seconds() / 3600 * 2)
    cycles = 0

    async def cycle() -> None:
        status = await recorder.run_once()
        if status["state"] != "ok":
            raise RuntimeError(f"demo history replay failed at {state['now']:%Y-%m-%d %H:%M}: "
                               f"{status['last_error']}")

    try:
        while state["now"] < end:
            await cycle()
            cycles += 1
            state["now"] = min(end, state["now"] + step)
        if not end_given:
            # observe once more at the real time, so the live recorder continues without a gap
            state["now"] = max(end, datetime.now(timezone.utc))
        await cycle()
        cycles += 1
    finally:
        (cluster.clock, cluster.tick_seconds, cluster.churn, cluster.start_probability,
         cluster.stop_probability) = live
        cluster._last_tick = cluster.clock()
    log.info("demo history: %d recorder cycles over %.1f days", cycles, days)
    return cycles

"""Bills over time: the department and rates each session is billed with (README, "Bills over time").

- A user belongs to one department, or none, at any moment: ``department_memberships``, each row
  valid from its ``valid_from`` until the user's next row.  A user's first membership starts at
  BEGINNING, so it also covers the sessions recorded before the user was assigned.
- A department's rates hold from a period's ``effective_from`` until its next period
  (``department_rate_periods``); the first period starts at BEGINNING.  A NULL rate is the
  configured default.
- A session is billed for its whole life on its **terms at start**: the department its user was in
  when it started and that department's rates then.  They are stored on the session
  (``container_sessions.department_id`` and the three rate columns, the GPU rate resolved for the
  session's GPU model), so the stats, the session list and the report all read the same terms.
- A change takes effect at a moment: now, or an earlier ``effective_from`` given with it.  It
  replaces the user's (or the department's) periods from that moment on, and every session started
  since then is given its new terms.  Exactly the sessions whose terms (or projected display name)
  change get a new ``change_seq``, so the next report sync rewrites exactly those rows.

Writers hold the change lock (recorder.repository.lock_changes) for the whole transaction: the
recorder, which sets the terms of the sessions it inserts, then never reads periods a concurrent
change is replacing.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

from sqlalchemy import delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from .billing import model_rate
from .db.engine import dialect_name
from .db.models import BEGINNING, ContainerSession, DepartmentMembership, DepartmentRatePeriod


@dataclass(frozen=True)
class Terms:
    """What a session is billed with (NULL rate = the configured default)."""

    department_id: int | None
    cpu_core_hour_rate: Decimal | None
    gpu_hour_rate: Decimal | None
    memory_gib_hour_rate: Decimal | None


_V = TypeVar("_V")
NO_TERMS = Terms(None, None, None, None)
_CHUNK = 5_000  # values in one IN (...) list
TERM_COLUMNS = ("department_id", "cpu_core_hour_rate", "gpu_hour_rate", "memory_gib_hour_rate")


@dataclass(frozen=True)
class RatePeriod:
    cpu_core_hour_rate: Decimal | None
    gpu_hour_rate: Decimal | None
    memory_gib_hour_rate: Decimal | None
    gpu_model_rates: Mapping[str, object]

    def same_rates(self, other: RatePeriod) -> bool:
        return (self.cpu_core_hour_rate == other.cpu_core_hour_rate and self.gpu_hour_rate == other.gpu_hour_rate
                and self.memory_gib_hour_rate == other.memory_gib_hour_rate
                and {k: Decimal(str(v)) for k, v in self.gpu_model_rates.items()}
                == {k: Decimal(str(v)) for k, v in other.gpu_model_rates.items()})


def _num(value: object) -> Decimal | None:
    return None if value is None else Decimal(str(value))


class _Timeline(Generic[_V]):
    """Values each valid from a moment until the next one (moments sorted, unique)."""

    def __init__(self) -> None:
        self.starts: list[datetime] = []
        self.values: list[_V] = []

    def add(self, start: datetime, value: _V) -> None:
        i = bisect_right(self.starts, start)
        self.starts.insert(i, start)
        self.values.insert(i, value)

    def at(self, moment: datetime) -> _V | None:
        i = bisect_right(self.starts, moment)
        return self.values[i - 1] if i else None


class Calendar:
    """Memberships and rate periods, as loaded; answers the terms of a session started at a moment."""

    def __init__(self) -> None:
        self.memberships: dict[str, _Timeline[int | None]] = defaultdict(_Timeline)
        self.rates: dict[int, _Timeline[RatePeriod]] = defaultdict(_Timeline)

    def department_at(self, username: str, moment: datetime) -> int | None:
        timeline = self.memberships.get(username)
        return timeline.at(moment) if timeline is not None else None

    def rates_at(self, department_id: int, moment: datetime) -> RatePeriod | None:
        timeline = self.rates.get(department_id)
        return timeline.at(moment) if timeline is not None else None

    def terms(self, username: str, started_at: datetime, gpu_model: str | None) -> Terms:
        department = self.department_at(username, started_at)
        if department is None:
            return NO_TERMS
        period = self.rates_at(department, started_at)
        if period is None:
            return Terms(department, None, None, None)
        gpu = model_rate(dict(period.gpu_model_rates), gpu_model)
        return Terms(department, period.cpu_core_hour_rate, period.gpu_hour_rate if gpu is None else gpu,
                     period.memory_gib_hour_rate)


async def load_calendar(session: AsyncSession, usernames: Iterable[str] | None = None) -> Calendar:
    """The memberships of ``usernames`` (every user's when None) and every department's rate periods."""
    calendar = Calendar()
    query = select(DepartmentMembership.username, DepartmentMembership.valid_from, DepartmentMembership.department_id)
    if usernames is not None:
        names = sorted(set(usernames))
        rows: list[Any] = []
        for i in range(0, len(names), _CHUNK):
            rows.extend(await session.execute(query.where(DepartmentMembership.username.in_(names[i:i + _CHUNK]))))
    else:
        rows = list(await session.execute(query))
    for username, valid_from, department_id in rows:
        calendar.memberships[username].add(valid_from, department_id)
    for period in (await session.execute(select(DepartmentRatePeriod))).scalars():
        calendar.rates[period.department_id].add(period.effective_from, RatePeriod(
            _num(period.cpu_core_hour_rate), _num(period.gpu_hour_rate), _num(period.memory_gib_hour_rate),
            dict(period.gpu_model_rates or {})))
    return calendar


async def set_memberships(session: AsyncSession, departments: Mapping[str, int | None], since: datetime | None,
                          now: datetime) -> dict[str, datetime]:
    """Put each user (username -> department id) in that department from ``since`` on (None: from now,
    or from the beginning for a user's first membership), replacing the user's later memberships.
    Returns, for each user whose membership changed, the moment from which sessions may have new
    terms."""
    history: dict[str, list[DepartmentMembership]] = defaultdict(list)
    names = sorted(departments)
    for i in range(0, len(names), _CHUNK):
        for m in (await session.execute(select(DepartmentMembership)
                                        .where(DepartmentMembership.username.in_(names[i:i + _CHUNK]))
                                        .order_by(DepartmentMembership.valid_from))).scalars():
            history[m.username].append(m)
    changed: dict[str, datetime] = {}
    obsolete: list[int] = []
    new: list[DepartmentMembership] = []
    for username, department_id in departments.items():
        rows = history.get(username, [])
        start = since if since is not None else (now if rows else BEGINNING)
        later = [m for m in rows if m.valid_from >= start]
        before = [m for m in rows if m.valid_from < start]
        current = before[-1].department_id if before else None
        if not later and (current == department_id if before else department_id is None):
            continue  # nothing changes
        obsolete.extend(m.id for m in later)
        if not before or current != department_id:
            new.append(DepartmentMembership(username=username, department_id=department_id, valid_from=start,
                                            created_at=now))
        changed[username] = start
    for i in range(0, len(obsolete), _CHUNK):  # before the new rows: one may take an old one's moment
        await session.execute(delete(DepartmentMembership).where(DepartmentMembership.id.in_(obsolete[i:i + _CHUNK])))
    session.add_all(new)
    await session.flush()
    return changed


async def set_rates(session: AsyncSession, department_id: int, period: RatePeriod, since: datetime | None,
                    now: datetime) -> datetime | None:
    """Give the department ``period``'s rates from ``since`` on (None: from now, or from the beginning
    for its first rates), replacing its later periods.  Returns the moment from which sessions may
    have new terms, None when nothing changed."""
    rows = (await session.execute(select(DepartmentRatePeriod).where(DepartmentRatePeriod.department_id == department_id)
                                  .order_by(DepartmentRatePeriod.effective_from))).scalars().all()
    start = since if since is not None else (now if rows else BEGINNING)
    later = [p for p in rows if p.effective_from >= start]
    before = [p for p in rows if p.effective_from < start]

    def as_period(p: DepartmentRatePeriod) -> RatePeriod:
        return RatePeriod(_num(p.cpu_core_hour_rate), _num(p.gpu_hour_rate), _num(p.memory_gib_hour_rate),
                          dict(p.gpu_model_rates or {}))

    if not later and before and as_period(before[-1]).same_rates(period):
        return None
    await session.execute(delete(DepartmentRatePeriod).where(DepartmentRatePeriod.id.in_([p.id for p in later])))
    if not before or not as_period(before[-1]).same_rates(period):
        session.add(DepartmentRatePeriod(
            department_id=department_id, effective_from=start, cpu_core_hour_rate=period.cpu_core_hour_rate,
            gpu_hour_rate=period.gpu_hour_rate, memory_gib_hour_rate=period.memory_gib_hour_rate,
            gpu_model_rates={k: str(v) for k, v in period.gpu_model_rates.items()}, created_at=now))
    await session.flush()
    return start


async def _bump(session: AsyncSession, changes: list[tuple[int, Terms | None]], now: datetime) -> None:
    """Give each session id its new terms (None: keep them) and a new change_seq."""
    if not changes:
        return
    if dialect_name(session) == "postgresql":
        groups: dict[Terms | None, list[int]] = defaultdict(list)
        for session_id, terms in changes:
            groups[terms].append(session_id)
        for terms, ids in groups.items():
            values: dict[str, object] = {"change_seq": text("nextval('container_sessions_change_seq')"),
                                         "updated_at": now}
            if terms is not None:
                values.update({c: getattr(terms, c) for c in TERM_COLUMNS})
            for i in range(0, len(ids), 10_000):
                await session.execute(update(ContainerSession).where(ContainerSession.id.in_(ids[i:i + 10_000]))
                                      .values(**values).execution_options(synchronize_session=False))
        return
    from .recorder.repository import next_change_seq_sqlite

    seq = await next_change_seq_sqlite(session)
    for offset, (session_id, terms) in enumerate(changes):
        values = {"change_seq": seq + offset, "updated_at": now}
        if terms is not None:
            values.update({c: getattr(terms, c) for c in TERM_COLUMNS})
        await session.execute(update(ContainerSession).where(ContainerSession.id == session_id).values(**values)
                              .execution_options(synchronize_session=False))


async def rebill(session: AsyncSession, now: datetime, *, users: Mapping[str, datetime] | None = None,
                 departments: Mapping[int, datetime] | None = None, renamed_users: Iterable[str] = ()) -> int:
    """Recompute the terms of the sessions a change may affect: those of ``users`` (username -> the
    moment the change applies from) and of ``departments`` (id -> moment) started since that moment,
    and give every session whose terms changed, and every session of ``renamed_users`` (whose display
    name, which the report carries, changed), a new change_seq.  Returns the sessions bumped.  The
    caller holds the change lock."""
    users = dict(users or {})
    departments = dict(departments or {})
    renamed = set(renamed_users)
    if not users and not departments and not renamed:
        return 0
    cs = ContainerSession
    columns = (cs.id, cs.username, cs.started_at, cs.gpu_model, cs.department_id, cs.cpu_core_hour_rate,
               cs.gpu_hour_rate, cs.memory_gib_hour_rate)
    candidates: dict[int, Any] = {}
    by_moment: dict[datetime, list[str]] = defaultdict(list)
    for username, since in users.items():
        by_moment[since].append(username)
    for since, names in by_moment.items():
        names.sort()
        for i in range(0, len(names), _CHUNK):
            for row in (await session.execute(select(*columns).where(cs.username.in_(names[i:i + _CHUNK]),
                                                                     cs.started_at >= since))):
                candidates[row.id] = row
    for department_id, since in departments.items():
        for row in (await session.execute(select(*columns).where(cs.department_id == department_id,
                                                                 cs.started_at >= since))):
            candidates[row.id] = row
    calendar = await load_calendar(session, {row.username for row in candidates.values()})
    changes: list[tuple[int, Terms | None]] = []
    for row in candidates.values():
        old = Terms(row.department_id, _num(row.cpu_core_hour_rate), _num(row.gpu_hour_rate),
                    _num(row.memory_gib_hour_rate))
        new = calendar.terms(row.username, row.started_at, row.gpu_model)
        if new != old:
            changes.append((row.id, new))
    changed = {session_id for session_id, _ in changes}
    if renamed:
        names = sorted(renamed)
        for i in range(0, len(names), _CHUNK):
            for (session_id,) in (await session.execute(select(cs.id).where(cs.username.in_(names[i:i + _CHUNK])))):
                if session_id not in changed:
                    changes.append((session_id, None))
    changes.sort(key=lambda change: change[0])
    await _bump(session, changes, now)
    return len(changes)

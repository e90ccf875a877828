"""Bills over time (labhub_portal.billing_terms): the rules as data, then the history writes on
PostgreSQL (first change from the beginning, back-dated changes replace later ones, no-op changes)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import select

from labhub_portal.billing_terms import NO_TERMS, Calendar, RatePeriod, Terms, set_memberships, set_rates
from labhub_portal.db.models import BEGINNING, Department, DepartmentMembership, DepartmentRatePeriod

UTC = dt.timezone.utc
T = [dt.datetime(2026, 11, d, tzinfo=UTC) for d in range(1, 31)]


def test_terms_are_those_in_force_at_the_start():
    calendar = Calendar()
    calendar.memberships["alice"].add(BEGINNING, 1)
    calendar.memberships["alice"].add(T[19], 2)
    calendar.memberships["bob"].add(T[9], 1)  # back-dated first membership: nothing before the 10th
    calendar.rates[1].add(BEGINNING, RatePeriod(Decimal("2"), Decimal("50"), None, {"A100": "80", "T4": "x"}))
    calendar.rates[1].add(T[14], RatePeriod(Decimal("3"), None, Decimal("0.1"), {}))
    assert calendar.terms("alice", T[0], "A100") == Terms(1, Decimal("2"), Decimal("80"), None)
    assert calendar.terms("alice", T[0], "T4") == Terms(1, Decimal("2"), Decimal("50"), None)  # malformed: GPU rate
    assert calendar.terms("alice", T[14] - dt.timedelta(microseconds=1), None) == Terms(1, Decimal("2"),
                                                                                       Decimal("50"), None)
    assert calendar.terms("alice", T[14], "A100") == Terms(1, Decimal("3"), None, Decimal("0.1"))  # at the moment
    assert calendar.terms("alice", T[19], None) == Terms(2, None, None, None)  # a department without rates
    assert calendar.terms("bob", T[8], None) == NO_TERMS
    assert calendar.terms("bob", T[9], None).department_id == 1
    assert calendar.terms("carol", T[9], None) == NO_TERMS


async def test_history_writes(tx_sessionmaker):
    now = T[25]
    async with tx_sessionmaker() as s:
        async with s.begin():
            s.add_all([Department(id=1, name="A"), Department(id=2, name="B")])
            await s.flush()
            # first membership: from the beginning; the same again: nothing
            assert await set_memberships(s, {"alice": 1}, None, now) == {"alice": BEGINNING}
            assert await set_memberships(s, {"alice": 1}, None, now) == {}
            # a move now, then a back-dated move before it: the later one is replaced
            assert await set_memberships(s, {"alice": 2}, None, now) == {"alice": now}
            assert await set_memberships(s, {"alice": 2}, T[9], now) == {"alice": T[9]}
            rows = (await s.execute(select(DepartmentMembership.valid_from, DepartmentMembership.department_id)
                                    .order_by(DepartmentMembership.valid_from))).all()
            assert [tuple(r) for r in rows] == [(BEGINNING, 1), (T[9], 2)]
            # back to the first department from the same moment: its period is removed, not duplicated
            assert await set_memberships(s, {"alice": 1}, T[9], now) == {"alice": T[9]}
            rows = (await s.execute(select(DepartmentMembership.valid_from, DepartmentMembership.department_id))).all()
            assert [tuple(r) for r in rows] == [(BEGINNING, 1)]

            first = RatePeriod(Decimal("2"), None, None, {"A100": Decimal("80")})
            assert await set_rates(s, 1, first, None, now) == BEGINNING
            assert await set_rates(s, 1, RatePeriod(Decimal("2.0000"), None, None, {"A100": "80"}), None, now) is None
            assert await set_rates(s, 1, RatePeriod(Decimal("3"), None, None, {}), T[14], now) == T[14]
            assert await set_rates(s, 1, RatePeriod(Decimal("4"), None, None, {}), T[4], now) == T[4]
            rows = (await s.execute(select(DepartmentRatePeriod.effective_from, DepartmentRatePeriod.cpu_core_hour_rate)
                                    .order_by(DepartmentRatePeriod.effective_from))).all()
            assert [tuple(r) for r in rows] == [(BEGINNING, Decimal("2")), (T[4], Decimal("4"))]

"""/api/sessions: filtered, paginated list of container sessions; CSV export."""

from __future__ import annotations

import csv
import io
import math
from datetime import datetime, timezone
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import func, or_, select

from ..billing import session_usage
from ..db.engine import SessionDep
from ..db.models import ContainerSession, Department, User
from ..stats_service import NO_DEPARTMENT
from .common import CurrentPrincipal, SafeStr, SettingsDep, TimeRange, local_iso
from .schemas import SessionItem, SessionPage

router = APIRouter(prefix="/api", tags=["sessions"])
#: Rows fetched per round trip while a CSV export streams (memory stays bounded by it, whatever the total).
CSV_FETCH = 1000
#: Bytes of CSV text collected before they are sent on.
CSV_CHUNK = 64 * 1024
#: A cell a spreadsheet would read as a formula (OWASP "CSV Injection"): =, +, -, @, tab, carriage return.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    """A value as a CSV cell that spreadsheets show as text: user-controlled text starting like a
    formula gets a leading apostrophe (numbers stay numbers)."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _like(value: str) -> str:
    return "%" + value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _query(user, department, q, window: TimeRange, state):
    stmt = (select(ContainerSession, User, Department)
            .outerjoin(User, User.username == ContainerSession.username)
            .outerjoin(Department, Department.id == ContainerSession.department_id))
    if user:
        stmt = stmt.where(ContainerSession.username == user)
    if department:
        stmt = stmt.where(Department.id.is_(None) if department == NO_DEPARTMENT else Department.name == department)
    if q:
        pattern = _like(q)
        stmt = stmt.where(or_(*(col.ilike(pattern, escape="\\") for col in (
            ContainerSession.username, ContainerSession.pod_name, ContainerSession.server_name, ContainerSession.image,
            ContainerSession.node, ContainerSession.profile, ContainerSession.gpu_model, User.display_name,
            Department.name))))
    if window.hi is not None:
        stmt = stmt.where(ContainerSession.started_at < window.hi)
    if window.lo is not None:
        stmt = stmt.where(or_(ContainerSession.ended_at.is_(None), ContainerSession.ended_at > window.lo))
    if state == "running":
        stmt = stmt.where(ContainerSession.ended_at.is_(None))
    elif state == "ended":
        stmt = stmt.where(ContainerSession.ended_at.is_not(None))
    return stmt


def _item(cs, user, dept, settings, now) -> dict:
    return _fields(cs, user.display_name if user else None, dept.name if dept else None, settings, now)


def _fields(cs, display_name: str | None, department: str | None, settings, now) -> dict:
    """One session as the API shows it (``cs``: an ORM object or a row with the same names)."""
    usage = session_usage(cs, settings, now).as_dict()
    return {"id": cs.id, "pod_uid": cs.pod_uid, "pod_name": cs.pod_name, "server_name": cs.server_name,
            "namespace": cs.namespace, "username": cs.username, "display_name": display_name,
            "department": department, "image": cs.image, "profile": cs.profile, "node": cs.node,
            "cpu_request": cs.cpu_request, "cpu_limit": cs.cpu_limit, "memory_request": cs.memory_request,
            "memory_limit": cs.memory_limit, "gpu_request": cs.gpu_request, "gpu_limit": cs.gpu_limit,
            "gpu_model": cs.gpu_model, "started_at": local_iso(cs.started_at, settings),
            "last_seen_at": local_iso(cs.last_seen_at, settings), "ended_at": local_iso(cs.ended_at, settings),
            "end_reason": cs.end_reason, "running": cs.ended_at is None,
            "hours": usage["hours"], "cpu_core_hours": usage["cpu_core_hours"], "gpu_hours": usage["gpu_hours"],
            "memory_gib_hours": usage["memory_gib_hours"], "cost": usage["cost"]}


async def _csv_rows(sessionmaker, stmt, settings, now):
    """Every matching row as CSV, streamed: fetched CSV_FETCH rows at a time on the export's own
    database session (the request's is closed once the handler returns), sent in chunks."""
    buffer = io.StringIO()
    fields = list(SessionItem.model_fields)
    writer = csv.writer(buffer)
    writer.writerow(fields)
    # plain rows, not ORM objects (the export's hot path): the session's columns, the user's display
    # name and the department's name under the query's own joins and filters
    columns = stmt.with_only_columns(*ContainerSession.__table__.c, User.display_name,
                                     Department.name.label("department_name"), maintain_column_froms=False)
    async with sessionmaker() as session:
        result = await session.stream(columns.execution_options(yield_per=CSV_FETCH))
        async for row in result:
            item = _fields(row, row.display_name, row.department_name, settings, now)
            writer.writerow([csv_cell(item[name]) for name in fields])
            if buffer.tell() >= CSV_CHUNK:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
    yield buffer.getvalue()


@router.get("/sessions", response_model=SessionPage,
            responses={200: {"content": {"text/csv": {}}, "description": "JSON page, or CSV with format=csv"}},
            summary="Container sessions: filters, pagination, CSV export (format=csv, all matching rows)")
async def list_sessions(request: Request, session: SessionDep, settings: SettingsDep, _: CurrentPrincipal,
                        window: Annotated[TimeRange, Depends()],
                        user: Annotated[SafeStr | None, Query(description="exact user name")] = None,
                        department: Annotated[SafeStr | None, Query(description="department name")] = None,
                        q: Annotated[SafeStr | None, Query(description="keyword: user, pod, image, node, ...")] = None,
                        state: Literal["all", "running", "ended"] = "all",
                        page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
                        page_size: Annotated[int, Query(ge=1, le=500)] = 50,
                        format: Literal["json", "csv"] = "json"):  # noqa: A002 - public parameter name
    now = datetime.now(timezone.utc)
    stmt = _query(user, department, q, window, state)
    order = (ContainerSession.started_at.desc(), ContainerSession.id.desc())
    if format == "csv":
        stamp = now.astimezone(settings.zone).strftime("%Y%m%d-%H%M")
        return StreamingResponse(_csv_rows(request.app.state.sessionmaker, stmt.order_by(*order), settings, now),
                                 media_type="text/csv; charset=utf-8",
                                 headers={"Content-Disposition": f'attachment; filename="sessions-{stamp}.csv"'})
    total = (await session.execute(select(func.count()).select_from(stmt.subquery()))).scalar_one()
    rows = (await session.execute(stmt.order_by(*order).offset((page - 1) * page_size).limit(page_size))).all()
    return SessionPage(items=[SessionItem(**_item(cs, u, d, settings, now)) for cs, u, d in rows], total=total,
                       page=page, page_size=page_size, pages=max(1, math.ceil(total / page_size)))

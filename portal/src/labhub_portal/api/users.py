"""Users and departments: CSV import (all or nothing), department rates."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timezone
from typing import Annotated

from fastapi import APIRouter, File, HTTPException, Path, Query, UploadFile
from sqlalchemy import func, select

from ..billing_terms import RatePeriod, rebill, set_memberships, set_rates
from ..db.engine import SessionDep
from ..db.models import AuditLog, Department, User
from ..recorder.repository import lock_changes
from ..stats_service import NO_DEPARTMENT
from .common import CurrentPrincipal, IsoDateTime, SettingsDep, effective_moment, validation_error
from .schemas import Department as DepartmentOut
from .schemas import DepartmentRatesChange, ImportResult

router = APIRouter(prefix="/api", tags=["users"])
MAX_IMPORT_BYTES = 5 * 1024 * 1024
MAX_IMPORT_ROWS = 100_000
_TEXT = re.compile(r"^[^\x00-\x1f\x7f]+$")
_USERNAME = re.compile(r"^[^\s\x00-\x1f\x7f]+$")


# Filters and reports name users without a department "(none)" (stats_service.NO_DEPARTMENT).
RESERVED_DEPARTMENT_MSG = f"{NO_DEPARTMENT!r} is reserved: it stands for users without a department"


def _error(errors: list[dict]) -> HTTPException:
    return HTTPException(422, detail=errors)


def parse_users_csv(raw: bytes) -> list[dict]:
    """Validate the whole file; raise 422 listing every bad row (row 1 = header) before anything is written."""
    if len(raw) > MAX_IMPORT_BYTES:
        raise _error([{"loc": ["body", "file"], "field": "file", "row": None,
                       "msg": f"file larger than {MAX_IMPORT_BYTES} bytes", "type": "value_error"}])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _error([{"loc": ["body", "file"], "field": "file", "row": None, "msg": "file is not UTF-8",
                       "type": "value_error"}]) from exc
    if "\x00" in text:
        raise _error([{"loc": ["body", "file"], "field": "file", "row": None, "msg": "file contains NUL bytes",
                       "type": "value_error"}])
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise _error([{"loc": ["body", "file"], "field": "file", "row": 1, "msg": "empty file",
                       "type": "value_error"}]) from None
    except csv.Error as exc:
        raise _error([{"loc": ["body", "file"], "field": "file", "row": 1, "msg": f"bad CSV: {exc}",
                       "type": "value_error"}]) from exc
    missing = [c for c in ("username", "department") if c not in header]
    if missing:
        raise _error([{"loc": ["body", "file"], "field": c, "row": 1, "msg": f"header lacks column '{c}'",
                       "type": "missing"} for c in missing])
    index: dict[str, int] = {name: header.index(name) for name in ("username", "department", "display_name") if name in header}
    rows: list[dict] = []
    errors: list[dict] = []
    seen: dict[str, int] = {}
    try:
        for row_number, record in enumerate(reader, start=2):
            if not any(cell.strip() for cell in record):
                continue
            if len(rows) >= MAX_IMPORT_ROWS:
                errors.append({"loc": ["body", "file"], "field": "file", "row": row_number,
                               "msg": f"more than {MAX_IMPORT_ROWS} rows", "type": "value_error"})
                break

            def cell(name: str) -> str:
                i = index.get(name)
                return record[i].strip() if i is not None and i < len(record) else ""

            username, department, display = cell("username"), cell("department"), cell("display_name")
            for field, value, pattern in (("username", username, _USERNAME), ("department", department, _TEXT)):
                if not value:
                    errors.append({"loc": ["body", "file", row_number, field], "field": field, "row": row_number,
                                   "msg": f"{field} is empty", "type": "missing"})
                elif len(value) > 255 or not pattern.match(value):
                    errors.append({"loc": ["body", "file", row_number, field], "field": field, "row": row_number,
                                   "msg": f"invalid {field} {value[:40]!r}", "type": "value_error"})
                elif field == "department" and value == NO_DEPARTMENT:
                    errors.append({"loc": ["body", "file", row_number, field], "field": field, "row": row_number,
                                   "msg": RESERVED_DEPARTMENT_MSG, "type": "value_error"})
            if display and (len(display) > 255 or not _TEXT.match(display)):
                errors.append({"loc": ["body", "file", row_number, "display_name"], "field": "display_name",
                               "row": row_number, "msg": "invalid display_name", "type": "value_error"})
            if username in seen:
                errors.append({"loc": ["body", "file", row_number, "username"], "field": "username",
                               "row": row_number, "msg": f"duplicate of row {seen[username]}", "type": "value_error"})
            elif username:
                seen[username] = row_number
            rows.append({"username": username, "department": department,
                         "display_name": display if "display_name" in index else None, "row": row_number})
    except csv.Error as exc:
        errors.append({"loc": ["body", "file"], "field": "file", "row": reader.line_num, "msg": f"bad CSV: {exc}",
                       "type": "value_error"})
    if errors:
        raise _error(errors)
    if not rows:
        raise _error([{"loc": ["body", "file"], "field": "file", "row": None, "msg": "no data rows",
                       "type": "value_error"}])
    return rows


@router.post("/users/import", response_model=ImportResult,
             summary="Import user -> department assignments from CSV (all or nothing)",
             description="CSV with a header row: `username,department[,display_name]` (UTF-8). "
                         "Row numbers in errors count the header as row 1.  One bad row rejects the whole file "
                         "(422 listing each bad row and field); departments are created as needed.  A user's new "
                         "department applies to sessions started from `effective_from` on (default: now; a user's "
                         "first department: from the beginning); see the README, 'Bills over time'.")
async def import_users(session: SessionDep, principal: CurrentPrincipal, settings: SettingsDep,
                       file: Annotated[UploadFile, File(description="CSV file")],
                       effective_from: Annotated[IsoDateTime | None, Query(
                           description="when the departments take effect (ISO 8601; without an offset in the "
                                       "portal's zone); never in the future")] = None) -> ImportResult:
    now = datetime.now(timezone.utc)
    since = effective_moment(effective_from, settings, "effective_from", "query", now)
    rows = parse_users_csv(await file.read(MAX_IMPORT_BYTES + 1))
    await lock_changes(session)  # sessions are re-billed below: one writer of change_seq at a time
    departments = {d.name: d for d in (await session.execute(select(Department))).scalars()}
    created_departments = 0
    for name in dict.fromkeys(r["department"] for r in rows):
        if name not in departments:
            dept = Department(name=name, gpu_model_rates={})
            session.add(dept)
            departments[name] = dept
            created_departments += 1
    await session.flush()
    users = {u.username: u for u in (await session.execute(
        select(User).where(User.username.in_([r["username"] for r in rows])))).scalars()}
    created = updated = 0
    renamed: list[str] = []
    for r in rows:
        user = users.get(r["username"])
        department_id = departments[r["department"]].id
        display = r["display_name"] or None  # "" (an empty cell) clears it, like a missing column keeps None
        if user is None:
            session.add(User(username=r["username"], department_id=department_id, display_name=display))
            created += 1
            if display is not None:
                renamed.append(r["username"])
        else:
            user.department_id = department_id
            if r["display_name"] is not None and user.display_name != display:
                user.display_name = display
                renamed.append(r["username"])
            updated += 1
    await session.flush()
    moved = await set_memberships(session, {r["username"]: departments[r["department"]].id for r in rows}, since, now)
    rebilled = await rebill(session, now, users=moved, renamed_users=renamed)
    session.add(AuditLog(actor=f"{principal.kind}:{principal.name}", action="import_users",
                         target=file.filename or "upload", result="ok",
                         detail={"rows": len(rows), "created": created, "updated": updated,
                                 "effective_from": since.isoformat() if since else None,
                                 "sessions_rebilled": rebilled}))
    await session.commit()
    return ImportResult(created=created, updated=updated, departments_created=created_departments, rows=len(rows),
                        sessions_rebilled=rebilled)


@router.get("/departments", response_model=list[DepartmentOut], summary="Departments with rates and user counts")
async def list_departments(session: SessionDep, _: CurrentPrincipal) -> list[DepartmentOut]:
    counts = dict((await session.execute(select(User.department_id, func.count()).group_by(User.department_id))).all())
    out = []
    for d in (await session.execute(select(Department).order_by(Department.name))).scalars():
        out.append(DepartmentOut(name=d.name, users=int(counts.get(d.id, 0)), cpu_core_hour_rate=d.cpu_core_hour_rate,
                                 gpu_hour_rate=d.gpu_hour_rate, memory_gib_hour_rate=d.memory_gib_hour_rate,
                                 gpu_model_rates=d.gpu_model_rates or {}))
    return out


@router.put("/departments/{name}", response_model=DepartmentOut,
            summary="Create a department or set its hourly rates (null = use the default rate)")
async def put_department(session: SessionDep, principal: CurrentPrincipal, settings: SettingsDep,
                         body: DepartmentRatesChange,
                         name: Annotated[str, Path(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f/]+$")]
                         ) -> DepartmentOut:
    if name == NO_DEPARTMENT:
        raise validation_error("name", RESERVED_DEPARTMENT_MSG, loc="path")
    now = datetime.now(timezone.utc)
    since = effective_moment(body.effective_from, settings, "effective_from", "body", now)
    await lock_changes(session)  # sessions are re-billed below: one writer of change_seq at a time
    dept = (await session.execute(select(Department).where(Department.name == name))).scalar_one_or_none()
    if dept is None:
        dept = Department(name=name)
        session.add(dept)
    dept.cpu_core_hour_rate = body.cpu_core_hour_rate
    dept.gpu_hour_rate = body.gpu_hour_rate
    dept.memory_gib_hour_rate = body.memory_gib_hour_rate
    dept.gpu_model_rates = {k: str(v) for k, v in body.gpu_model_rates.items()}
    await session.flush()
    start = await set_rates(session, dept.id, RatePeriod(body.cpu_core_hour_rate, body.gpu_hour_rate,
                                                         body.memory_gib_hour_rate, dict(body.gpu_model_rates)),
                            since, now)
    rebilled = await rebill(session, now, departments={dept.id: start} if start is not None else {})
    session.add(AuditLog(actor=f"{principal.kind}:{principal.name}", action="set_department_rates", target=name,
                         result="ok", detail={**body.model_dump(mode="json"), "sessions_rebilled": rebilled}))
    users = (await session.execute(select(func.count()).select_from(User)
                                   .where(User.department_id == dept.id))).scalar_one()
    await session.commit()
    return DepartmentOut(name=dept.name, users=int(users), cpu_core_hour_rate=dept.cpu_core_hour_rate,
                         gpu_hour_rate=dept.gpu_hour_rate, memory_gib_hour_rate=dept.memory_gib_hour_rate,
                         gpu_model_rates=dept.gpu_model_rates)

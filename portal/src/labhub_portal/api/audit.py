"""/api/audit: the audit log, newest first (stops by people, scripts and the GPU idle stop policy,
the policy's warnings, imports, rate changes)."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import func, select

from ..db.engine import SessionDep
from ..db.models import AuditLog
from .common import CurrentPrincipal, SafeStr, SettingsDep, local_iso
from .schemas import AuditEntry, AuditPage

router = APIRouter(prefix="/api", tags=["audit"])


async def audit_page(session, settings, *, action: str | None, actor: str | None, target: str | None,
                     page: int, page_size: int) -> AuditPage:
    """One page of the audit log, newest first; ``actor`` matches the whole actor or its kind
    (``policy`` matches ``policy:gpu-idle``), ``target`` a pod or ``namespace/pod``."""
    stmt = select(AuditLog)
    if action:
        stmt = stmt.where(AuditLog.action == action)
    if actor:
        stmt = stmt.where((AuditLog.actor == actor) | AuditLog.actor.startswith(actor + ":", autoescape=True))
    if target:
        stmt = stmt.where((AuditLog.target == target) | AuditLog.target.endswith("/" + target, autoescape=True))
    total = (await session.execute(select(func.count()).select_from(stmt.subquery()))).scalar_one()
    rows = (await session.execute(stmt.order_by(AuditLog.at.desc(), AuditLog.id.desc())
                                  .offset((page - 1) * page_size).limit(page_size))).scalars().all()
    items = [AuditEntry(id=row.id, at=local_iso(row.at, settings) or "", actor=row.actor, action=row.action,
                        target=row.target, result=row.result, detail=row.detail or {}) for row in rows]
    return AuditPage(items=items, total=total, page=page, page_size=page_size,
                     pages=max(1, math.ceil(total / page_size)))


@router.get("/audit", response_model=AuditPage, summary="The audit log, newest first",
            description="Every stop (actor `token:...`, `hub:<user>`, `local:local` or `policy:gpu-idle` for the "
                        "GPU idle stop policy), the policy's warnings (action `gpu_idle_warning`, result `warned` "
                        "or `cleared`), user imports and rate changes. Filters: `action` (exact), `actor` (an "
                        "actor or its kind, e.g. `policy`), `target` (`namespace/pod` or the pod).")
async def list_audit(session: SessionDep, settings: SettingsDep, _: CurrentPrincipal,
                     action: Annotated[SafeStr | None, Query(max_length=64)] = None,
                     actor: SafeStr | None = None,
                     target: Annotated[SafeStr | None, Query(max_length=512)] = None,
                     page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
                     page_size: Annotated[int, Query(ge=1, le=500)] = 50) -> AuditPage:
    return await audit_page(session, settings, action=action or None, actor=actor or None, target=target or None,
                            page=page, page_size=page_size)

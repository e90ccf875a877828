"""Shared API helpers: safe string/time parameters, zone formatting, dependencies."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request
from pydantic import StringConstraints

from ..auth import CurrentPrincipal, Principal
from ..config import Settings

__all__ = ["CurrentPrincipal", "Principal", "SafeStr", "SettingsDep", "TimeRange", "as_utc", "local_iso",
           "validation_error", "get_settings"]

# No control characters (PostgreSQL rejects NUL; nothing legitimate needs the others).
SafeStr = Annotated[str, StringConstraints(max_length=255, pattern=r"^[^\x00-\x1f\x7f]*$")]
MIN_TIME = datetime(1970, 1, 1, tzinfo=timezone.utc)
MAX_TIME = datetime(2200, 1, 1, tzinfo=timezone.utc)


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def as_utc(value: datetime | None, settings: Settings, field: str) -> datetime | None:
    """Naive times are read in the configured zone; every time must lie in 1970..2200."""
    if value is None:
        return None
    try:
        if value.tzinfo is None:
            value = value.replace(tzinfo=settings.zone)
        value = value.astimezone(timezone.utc)
    except (OverflowError, ValueError) as exc:
        raise HTTPException(422, detail=[{"loc": ["query", field], "field": field,
                                          "msg": "time out of range", "type": "value_error"}]) from exc
    if not MIN_TIME <= value < MAX_TIME:
        raise HTTPException(422, detail=[{"loc": ["query", field], "field": field,
                                          "msg": "time must be between 1970 and 2200", "type": "value_error"}])
    return value


def local_iso(value: datetime | None, settings: Settings) -> str | None:
    """ISO 8601 with the configured zone's offset, e.g. 2026-11-21T08:00:00+08:00."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(settings.zone).isoformat(timespec="seconds")


class TimeRange:
    """``from``/``to`` query parameters (ISO 8601; without offset = configured zone)."""

    def __init__(self, request: Request,
                 from_: Annotated[datetime | None, Query(alias="from", description="start (ISO 8601)")] = None,
                 to: Annotated[datetime | None, Query(description="end, exclusive (ISO 8601)")] = None) -> None:
        settings = request.app.state.settings
        self.lo = as_utc(from_, settings, "from")
        self.hi = as_utc(to, settings, "to")
        if self.lo and self.hi and self.lo >= self.hi:
            raise HTTPException(422, detail=[{"loc": ["query", "to"], "field": "to",
                                              "msg": "'to' must be after 'from'", "type": "value_error"}])


def validation_error(field: str, msg: str, loc: str = "body") -> HTTPException:
    return HTTPException(422, detail=[{"loc": [loc, field], "field": field, "msg": msg, "type": "value_error"}])

"""Shared API helpers: safe string/time parameters, zone formatting, dependencies."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Query, Request
from pydantic import BeforeValidator, StringConstraints

from ..auth import CurrentPrincipal, Principal
from ..config import Settings

__all__ = ["CurrentPrincipal", "IsoDateTime", "Principal", "SafeStr", "SettingsDep", "TimeRange", "as_utc",
           "local_iso", "validation_error", "get_settings", "effective_moment"]

# No control characters (PostgreSQL rejects NUL; nothing legitimate needs the others).
SafeStr = Annotated[str, StringConstraints(max_length=255, pattern=r"^[^\x00-\x1f\x7f]*$")]
MIN_TIME = datetime(1970, 1, 1, tzinfo=timezone.utc)
MAX_TIME = datetime(2200, 1, 1, tzinfo=timezone.utc)
_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def _iso_only(value: Any) -> Any:
    """Pydantic reads a number (or a numeric string) as Unix seconds: `from=0.5` or `from=2026` would
    be a moment in 1970. Times here are ISO 8601 only."""
    if isinstance(value, (int, float)) or (isinstance(value, str) and _NUMBER.fullmatch(value)):
        raise ValueError("expected an ISO 8601 date or date-time (e.g. 2026-11-21 or 2026-11-21T08:00), "
                         "not a number")
    return value


# A date-time given as ISO 8601 text; numbers (Unix seconds to pydantic) are refused.
IsoDateTime = Annotated[datetime, BeforeValidator(_iso_only)]


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def as_utc(value: datetime | None, settings: Settings, field: str, loc: str = "query") -> datetime | None:
    """Naive times are read in the configured zone; every time must lie in 1970..2200."""
    if value is None:
        return None
    try:
        if value.tzinfo is None:
            value = value.replace(tzinfo=settings.zone)
        value = value.astimezone(timezone.utc)
    except (OverflowError, ValueError) as exc:
        raise validation_error(field, "time out of range", loc) from exc
    if not MIN_TIME <= value < MAX_TIME:
        raise validation_error(field, "time must be between 1970 and 2200", loc)
    return value


def effective_moment(value: datetime | None, settings: Settings, field: str, loc: str,
                     now: datetime) -> datetime | None:
    """When a change of department or rates takes effect (billing_terms): None = now; a given time
    may lie in the past (the change then re-bills the sessions started since), never in the future."""
    moment = as_utc(value, settings, field, loc)
    if moment is not None and moment > now:
        raise validation_error(field, "must not be in the future: a change takes effect now or from an "
                                      "earlier time", loc)
    return moment


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
                 from_: Annotated[IsoDateTime | None, Query(alias="from", description="start (ISO 8601)")] = None,
                 to: Annotated[IsoDateTime | None, Query(description="end, exclusive (ISO 8601)")] = None) -> None:
        settings = request.app.state.settings
        self.lo = as_utc(from_, settings, "from")
        self.hi = as_utc(to, settings, "to")
        if self.lo and self.hi and self.lo >= self.hi:
            raise HTTPException(422, detail=[{"loc": ["query", "to"], "field": "to",
                                              "msg": "'to' must be after 'from'", "type": "value_error"}])


def validation_error(field: str, msg: str, loc: str = "body") -> HTTPException:
    return HTTPException(422, detail=[{"loc": [loc, field], "field": field, "msg": msg, "type": "value_error"}])

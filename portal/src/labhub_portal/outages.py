"""What the portal answers while its database is down: 503 naming PostgreSQL, never a bare 500.

A request that needs the usage database (PostgreSQL) while it is stopped, unreachable or not
answering gets ``503 Service Unavailable`` with ``Retry-After``: JSON for the API, a page saying
what is down and what still works for a browser. The parts that do not need the database keep
working: ``/healthz`` reports each dependency, ``/api/pods`` lists the running servers, and the Pods
page lists them without departments and costs (web/routes.py catches the outage there itself).

An outage is an error of the connection, not of a query: SQLAlchemy's OperationalError,
InterfaceError and pool timeout, any DBAPI error that invalidated its connection, and an OSError
(refused, reset, timed out) raised inside the database driver or SQLAlchemy. Anything else stays a
server error, logged with its traceback.
"""

from __future__ import annotations

import html
import logging
import time
from types import TracebackType

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import exc as sa_exc

from .plain_page import plain_page

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 10
_DRIVER_MODULES = ("asyncpg", "sqlalchemy", "aiosqlite")
_JSON_PREFIXES = ("/api/", "/healthz", "/metrics", "/openapi.json")
_LOG_EVERY_SECONDS = 30.0
_last_logged = 0.0


def _raised_in_driver(tb: TracebackType | None) -> bool:
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        if module.split(".", 1)[0] in _DRIVER_MODULES:
            return True
        tb = tb.tb_next
    return False


def is_database_outage(error: BaseException) -> bool:
    """True when `error` says the database cannot be reached, rather than that a query is wrong."""
    if isinstance(error, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)):
        return True
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, OSError) and _raised_in_driver(error.__traceback__)


def outage_reason(error: BaseException) -> str:
    """A short reason for people: the driver's error type and first line, no connection string."""
    inner = error.orig if isinstance(error, sa_exc.DBAPIError) and error.orig is not None else error
    text = str(inner).strip().splitlines()[0] if str(inner).strip() else ""
    if isinstance(error, sa_exc.TimeoutError):
        text = "no free connection in time"
    # asyncpg puts host and port in some messages; never the password (not part of its errors)
    return f"{type(inner).__name__}: {text}"[:200] if text else type(inner).__name__


def _wants_json(request: Request) -> bool:
    path = request.url.path.removeprefix(request.scope.get("root_path", "") or "")
    return path.startswith(_JSON_PREFIXES) or "text/html" not in request.headers.get("accept", "")


def _log(error: BaseException) -> None:
    global _last_logged
    now = time.monotonic()
    if now - _last_logged >= _LOG_EVERY_SECONDS:
        _last_logged = now
        log.warning("usage database (PostgreSQL) unavailable: %s", outage_reason(error))


def outage_response(request: Request, error: BaseException) -> Response:
    reason = outage_reason(error)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS), "Cache-Control": "no-store"}
    if _wants_json(request):
        return JSONResponse(status_code=503, headers=headers, content={
            "detail": f"database unavailable: the usage database (PostgreSQL) did not answer ({reason}); "
                      f"retry in {RETRY_AFTER_SECONDS} s",
            "unavailable": ["postgresql"]})
    root = request.scope.get("root_path", "") or ""
    return plain_page(
        "Usage database unavailable",
        "<p>The portal cannot reach its usage database (PostgreSQL), so usage, costs and the report sync "
        f"cannot be shown right now. Reason: <code>{html.escape(reason)}</code>.</p>"
        f"<p>What still works: the <a href='{html.escape(root)}/pods'>Pods</a> page lists the running servers "
        "(without departments and costs). Sessions are recorded again as soon as the database is back; "
        f"this page reloads every {RETRY_AFTER_SECONDS} seconds.</p>",
        503, headers=headers, refresh_seconds=RETRY_AFTER_SECONDS)


def install_outage_handlers(app: FastAPI) -> None:
    """503 for database outages (create_app); every other error is re-raised unchanged."""

    async def handler(request: Request, error: Exception) -> Response:
        if not is_database_outage(error):
            raise error
        _log(error)
        return outage_response(request, error)

    app.add_exception_handler(sa_exc.SQLAlchemyError, handler)
    app.add_exception_handler(OSError, handler)

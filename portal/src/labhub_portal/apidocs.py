"""The API documentation page (Swagger UI at ``/docs``) served entirely by the portal: FastAPI's own
pages load their JavaScript and CSS from a CDN (cdn.jsdelivr.net), which an air-gapped site cannot
reach, so the page stays blank.  The assets come from the pinned ``fastapi-offline`` package
(its Swagger UI 5 bundle), a runtime dependency in requirements.lock and so in the offline bundle's
wheels; FastAPI's HTML helper renders the page, pointed at ``/static-docs``.

No ReDoc page: ReDoc 2's bundle always loads its menu logo from cdn.redoc.ly (redoc.standalone.js,
the "API docs by Redocly" footer), a request out of the site on every visit.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_URL = "/static-docs"
DOCS_URL = "/docs"


def assets_dir() -> str:
    """The directory holding swagger-ui-bundle.js, swagger-ui.css and favicon.png."""
    return str(files("fastapi_offline") / "static")


def mount_api_docs(app: FastAPI) -> None:
    """Serve /docs and /docs/oauth2-redirect from the portal itself (create_app passes
    ``docs_url=None, redoc_url=None`` to FastAPI)."""
    app.mount(STATIC_URL, StaticFiles(directory=assets_dir()), name="api-docs-static")
    openapi_url = app.openapi_url or "/openapi.json"
    redirect_url = app.swagger_ui_oauth2_redirect_url or f"{DOCS_URL}/oauth2-redirect"

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}", title=f"{app.title} - API",
            oauth2_redirect_url=f"{root}{redirect_url}",
            swagger_js_url=f"{root}{STATIC_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{STATIC_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{STATIC_URL}/favicon.png")

    @app.get(redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()


# --- statuses every route may answer, besides its own ----------------------------------------------
def _calls(dependant: Dependant) -> Iterator[Any]:
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from _calls(dependency)


def common_responses(route: APIRoute) -> dict[int, dict[str, Any]]:
    """The statuses the portal's middleware and shared dependencies give a route, for its OpenAPI
    entry (FastAPI lists only the route's own): 400 (Host not allowed, hosts.py), 401 and 403
    (authentication and the CSRF check, auth.py), 413 (body size, bodylimit.py), 503 (database
    down, outages.py)."""
    from .auth import SAFE_METHODS, require_principal
    from .db.engine import get_session

    calls = set(_calls(route.dependant))
    out: dict[int, dict[str, Any]] = {
        400: {"description": "The Host header names a host the portal does not serve (PORTAL_ALLOWED_HOSTS)"}}
    if require_principal in calls:
        out[401] = {"description": "No valid `Authorization: Bearer <PORTAL_TOKEN>` and no hub login session"}
        if set(route.methods or ()) - SAFE_METHODS:
            out[403] = {"description": "CSRF check failed: a browser session must send its CSRF cookie's value "
                                       "in the X-CSRF-Token header"}
    if route.body_field is not None:
        out[413] = {"description": "Request body larger than PORTAL_MAX_REQUEST_BYTES"}
    if get_session in calls:
        out[503] = {"description": "The usage database (PostgreSQL) is unavailable (Retry-After given)"}
    return out


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    """Every APIRoute, also inside included routers (FastAPI 0.165 keeps an included router as one
    lazy entry holding the original router, whose routes it copies when first used)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif getattr(route, "original_router", None) is not None:
            yield from _api_routes(route.original_router.routes)


def document_common_statuses(app: FastAPI) -> None:
    """Add common_responses to every API route (a status the route documents itself keeps its own
    description, followed by the common one); call after the routers are included and before the
    OpenAPI document is first built."""
    for route in _api_routes(app.routes):
        if route.include_in_schema:
            responses = dict(route.responses)
            for code, response in common_responses(route).items():
                own = dict(responses.get(code) or responses.get(str(code)) or {})
                if own.get("description") and own["description"] != response["description"]:
                    own["description"] = f"{own['description']}; or: {response['description']}"
                else:
                    own.setdefault("description", response["description"])
                responses.pop(str(code), None)
                responses[code] = own
            route.responses = responses

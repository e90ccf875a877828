"""The API documentation page (Swagger UI at ``/docs``) served entirely by the portal: FastAPI's own
pages load their JavaScript and CSS from a CDN (cdn.jsdelivr.net), which an air-gapped site cannot
reach, so the page stays blank.  The assets come from the pinned ``fastapi-offline`` package
(its Swagger UI 5 bundle), a runtime dependency in requirements.lock and so in the offline bundle's
wheels; FastAPI's HTML helper renders the page, pointed at ``/static-docs``.

No ReDoc page: ReDoc 2's bundle always loads its menu logo from cdn.redoc.ly (redoc.standalone.js,
the "API docs by Redocly" footer), a request out of the site on every visit.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI, Request
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

"""The portal's few pages outside the web UI's templates (sign-in required, access refused, usage
database unavailable): one small shell, readable on a phone, loading nothing."""

from __future__ import annotations

import html

from fastapi.responses import HTMLResponse


def plain_page(title: str, body: str, status_code: int, *, headers: dict[str, str] | None = None,
               refresh_seconds: int | None = None) -> HTMLResponse:
    """A page titled `title` (escaped here) over `body`, HTML whose variable parts the caller escaped."""
    refresh = f"<meta http-equiv=refresh content={int(refresh_seconds)}>" if refresh_seconds else ""
    return HTMLResponse(
        "<!doctype html><html lang=en><meta charset=utf-8>"
        f"<meta name=viewport content='width=device-width, initial-scale=1'>{refresh}"
        f"<title>{html.escape(title)}</title>"
        "<body style='font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem'>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>", status_code=status_code, headers=headers)

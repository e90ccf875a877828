"""The Host names the portal answers to (``allowed_hosts``): a request naming another host gets 400
before any route runs. This stops DNS rebinding: a page on an attacker's domain that resolves to
127.0.0.1 reaches a loopback portal in the victim's browser with the attacker's host name, so it
can neither read the CSRF token nor stop pods.

Allowed: loopback (127.0.0.1, ::1, localhost), the bind address when it is a specific one, the host
of PORTAL_BASE_URL, and PORTAL_ALLOWED_HOSTS (comma-separated names, ``*.domain`` for its
subdomains, ``*`` for any)."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from .config import LOOPBACK_HOSTS, Settings


def allowed_hosts(settings: Settings) -> frozenset[str]:
    names = set(LOOPBACK_HOSTS)
    if settings.bind_host not in ("0.0.0.0", "::", ""):
        names.add(settings.bind_host.lower())
    if settings.base_url:
        host = urlsplit(settings.base_url).hostname
        if host:
            names.add(host.lower())
    names.update(h.strip().lower() for h in settings.allowed_hosts.split(",") if h.strip())
    return frozenset(names)


def host_name(header: str) -> str:
    """The host of a Host header, without its port; IPv6 literals without brackets."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else ""
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def host_allowed(host: str, allowed: frozenset[str]) -> bool:
    if not host:
        return False
    if "*" in allowed or host in allowed:
        return True
    return any(a.startswith("*.") and host.endswith(a[1:]) for a in allowed)


class HostCheckMiddleware:
    def __init__(self, app: ASGIApp, allowed: frozenset[str]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        header = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
        host = host_name(header)
        if host_allowed(host, self.allowed):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = json.dumps({"detail": [{"loc": ["header", "host"], "field": "host",
                                       "msg": f"host {host!r} is not one this portal serves (PORTAL_ALLOWED_HOSTS, "
                                              "PORTAL_BASE_URL)", "type": "host_not_allowed"}]}).encode()
        await send({"type": "http.response.start", "status": 400,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

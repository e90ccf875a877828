"""JupyterHub REST client (httpx) used to stop servers so the hub's own state stays right."""

from __future__ import annotations

from urllib.parse import quote

import asyncio

import httpx

from .config import Settings

# Bounded retry of a stop (stopping a server is idempotent for the hub: a repeated DELETE answers
# 202/204, or 400 once it is no longer running): transport errors (hub or proxy restarting, a
# timeout) and the statuses a restarting hub or its proxy answer.  At most ATTEMPTS attempts,
# RETRY_DELAYS apart, all within PORTAL_STOP_TIMEOUT (each attempt gets the time left).
ATTEMPTS = 3
RETRY_DELAYS = (0.5, 1.0)
RETRY_STATUSES = frozenset({429, 502, 503, 504})


class HubError(Exception):
    """The hub API could not stop the server (caller falls back to deleting the pod)."""


class HubClient:
    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        token = settings.hub_api_token.get_secret_value() if settings.hub_api_token else ""
        self.base = (settings.hub_api_url or "").rstrip("/")
        self.timeout = settings.stop_timeout
        self._client = httpx.AsyncClient(headers={"Authorization": f"token {token}"}, timeout=settings.stop_timeout,
                                         transport=transport)

    async def stop_server(self, username: str, server_name: str = "") -> int:
        """DELETE /users/{name}/server or /users/{name}/servers/{server_name}; returns the HTTP status.

        202 (stopping) and 204 (stopped) are success; 400 means "not running" for the hub, which
        is success too from the portal's point of view only when the pod is gone afterwards (the
        caller decides).  Transport errors and 429/502/503/504 are retried (ATTEMPTS in all, within
        the stop timeout); other statuses, and the last failure, raise HubError.
        """
        user = quote(username, safe="")
        if server_name:
            url = f"{self.base}/users/{user}/servers/{quote(server_name, safe='')}"
        else:
            url = f"{self.base}/users/{user}/server"
        reason = ""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        attempts = 0
        while attempts < ATTEMPTS:
            if attempts:
                delay = RETRY_DELAYS[min(attempts, len(RETRY_DELAYS)) - 1]
                if loop.time() + delay >= deadline:
                    break
                await asyncio.sleep(delay)
            attempts += 1
            try:
                response = await self._client.delete(url, timeout=max(0.1, deadline - loop.time()))
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code in (202, 204):
                return response.status_code
            reason = f"HTTP {response.status_code}: {response.text[:200]}"
            if response.status_code not in RETRY_STATUSES:
                raise HubError(reason)
        raise HubError(f"{reason} (after {attempts} attempt{'s' if attempts > 1 else ''} "
                       f"within {self.timeout:g} s)")

    async def close(self) -> None:
        await self._client.aclose()
